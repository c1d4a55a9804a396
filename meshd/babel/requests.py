"""Seqno Requests (RFC 8966 3.8): ours, their resends, and those we pass on.

We ask the neighbours that announce a key for a newer seqno of its originator when:

- the last feasible route of the key is gone and unfeasible ones remain: starvation
  (3.8.2.1), asked of every neighbour announcing the best of them;
- an unfeasible update came that would be better than what we have by more than the
  hysteresis, or that updates our selected route (3.8.2.2), asked of its sender.

A request of ours is resent after ``request_timeout``, doubling, until ``request_attempts``
have gone or a route at least that new is selected (:meth:`SeqnoRequests.answered`). A
request that reaches us and that we cannot answer is passed on (3.8.1.2,
:meth:`SeqnoRequests.forward`); answering it, or raising our own seqno, is the core's.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshd.babel.config import CoreConfig
from meshd.babel.expand import RequestSeqno, Route, seqno_request
from meshd.babel.numbers import INFINITY
from meshd.babel.outbox import Outbox
from meshd.babel.routes import NeighbourId, RouteEntry, RouteTable
from meshd.babel.sources import RouteKey, SourceTable, seqno_diff, seqno_newer, seqno_plus


@dataclass(slots=True)
class Pending:
    """A Seqno Request of ours waiting for its answer."""

    router_id: bytes
    seqno: int
    targets: tuple[NeighbourId, ...]
    hop_count: int
    attempts: int
    resend_at: float
    delay: float


class SeqnoRequests:
    """Our pending Seqno Requests (one per key) and the requests forwarded recently.

    It reads the core's route and source tables and queues into the outbox.
    """

    def __init__(
        self, config: CoreConfig, table: RouteTable, sources: SourceTable, outbox: Outbox
    ) -> None:
        self._config = config
        self._table = table
        self._sources = sources
        self._outbox = outbox
        self._pending: dict[RouteKey, Pending] = {}
        self._forwarded: dict[tuple[RouteKey, bytes, int], float] = {}

    def starving(self, key: RouteKey, now: float) -> None:
        """No feasible route is left: ask for a newer seqno from those with unfeasible ones."""
        unfeasible = [
            e for e in self._table.entries(key) if e.metric < INFINITY and not self._feasible(e)
        ]
        if not unfeasible:
            return
        best = min(unfeasible, key=lambda e: e.metric)
        distance = self._sources.distance(key, best.router_id)
        seqno = seqno_plus(distance.seqno) if distance is not None else best.seqno
        targets = tuple(e.neighbour for e in unfeasible if e.router_id == best.router_id)
        self._request(key, best.router_id, seqno, targets, self._config.hop_count, now)

    def unfeasible(
        self, key: RouteKey, route: Route, nid: NeighbourId, cost: int, now: float, *, force: bool
    ) -> None:
        """An unfeasible update came over a link of ``cost``: ask for a newer seqno if it
        would help (3.8.2.2), or whatever it would bring with ``force``."""
        assert route.router_id is not None
        distance = self._sources.distance(key, route.router_id)
        if distance is None or seqno_diff(distance.seqno, route.seqno) > 100:
            return  # no distance, or an originator that lost its seqno: let it time out
        selected = self._table.selected(key)
        metric = min(route.metric + cost, INFINITY)
        if force or selected is None or metric + self._config.hysteresis < selected.metric:
            seqno = seqno_plus(distance.seqno)
            self._request(key, route.router_id, seqno, (nid,), self._config.hop_count, now)

    def answered(self, key: RouteKey, chosen: RouteEntry) -> None:
        """Forget our request for a key once a route at least as new is selected."""
        request = self._pending.get(key)
        if request is None:
            return
        if chosen.router_id != request.router_id or not seqno_newer(request.seqno, chosen.seqno):
            del self._pending[key]

    def forward(
        self, nid: NeighbourId, request: RequestSeqno, selected: RouteEntry | None, now: float
    ) -> None:
        """Pass on a request from ``nid`` that we cannot answer, with hop count minus one.

        It goes to the selected route's neighbour, or else the best other neighbour
        announcing the key; never back to ``nid``, and not twice within a while.
        """
        if request.hop_count < 2:
            return
        key = (request.prefix, request.source)
        if selected is not None and selected.neighbour != nid:
            target: RouteEntry | None = selected
        else:
            others = [
                e for e in self._table.entries(key) if e.neighbour != nid and e.metric < INFINITY
            ]
            target = min(others, key=lambda e: e.metric) if others else None
        if target is None:
            return
        memo = (key, request.router_id, request.seqno)
        until = self._forwarded.get(memo)
        if until is not None and until > now:
            return  # forwarded very recently
        self._forwarded[memo] = now + self._config.request_timeout * 4
        tlv = seqno_request(
            request.prefix, request.seqno, request.hop_count - 1, request.router_id, request.source
        )
        self._outbox.queue(target.neighbour.interface, target.neighbour.address, now, tlv)

    def resend(self, now: float) -> None:
        """Send our unanswered requests again when due; give up after the last attempt."""
        for key, request in list(self._pending.items()):
            if request.resend_at > now:
                continue
            request.attempts -= 1
            if request.attempts <= 0:
                del self._pending[key]
                continue
            request.delay *= 2
            request.resend_at = now + request.delay
            self._send(key, request, now)

    def deadlines(self) -> list[float]:
        return [request.resend_at for request in self._pending.values()]

    def expire(self, now: float) -> None:
        """Forget the forwarded requests old enough to be forwarded again."""
        self._forwarded = {k: t for k, t in self._forwarded.items() if t > now}

    def _feasible(self, entry: RouteEntry) -> bool:
        return entry.own or self._sources.feasible(
            entry.key, entry.router_id, entry.seqno, entry.refmetric
        )

    def _request(
        self,
        key: RouteKey,
        router_id: bytes,
        seqno: int,
        targets: tuple[NeighbourId, ...],
        hop_count: int,
        now: float,
    ) -> None:
        pending = self._pending.get(key)
        if (
            pending is not None
            and pending.router_id == router_id
            and not seqno_newer(seqno, pending.seqno)
        ):
            return  # already asked
        request = Pending(
            router_id,
            seqno,
            targets,
            hop_count,
            self._config.request_attempts,
            now + self._config.request_timeout,
            self._config.request_timeout,
        )
        self._pending[key] = request
        self._send(key, request, now)

    def _send(self, key: RouteKey, request: Pending, now: float) -> None:
        prefix, source = key
        tlv = seqno_request(prefix, request.seqno, request.hop_count, request.router_id, source)
        for target in request.targets:
            self._outbox.queue(target.interface, target.address, now, tlv)
