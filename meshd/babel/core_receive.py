"""Receiving a datagram: admitting its sender, and answering Hellos, requests and AckReqs.

:class:`Receiving` is the part of :class:`meshd.babel.core.BabelCore` a datagram goes
through: :meth:`Receiving.receive` decodes it, admits an unknown sender on a multicast
interface within the neighbour budget, hears its Hellos and IHUs
(:mod:`meshd.babel.interfaces`), and hands each message to what it sets off: Updates and
retractions to :mod:`meshd.babel.selection`, Route Requests to :mod:`meshd.babel.updates`,
Seqno Requests answered here or forwarded by :mod:`meshd.babel.requests`.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshd.babel.codec import decode_packet_untrusted
from meshd.babel.core_state import CoreState
from meshd.babel.expand import (
    Message,
    RequestAllRoutes,
    RequestRoute,
    RequestSeqno,
    RetractAll,
    Route,
    expand,
)
from meshd.babel.interest import HOLDS
from meshd.babel.interfaces import Interface
from meshd.babel.neighbours import IPAddress, Neighbour
from meshd.babel.numbers import INFINITY
from meshd.babel.packet import Packet
from meshd.babel.routes import NeighbourId
from meshd.babel.sources import RouteKey, seqno_diff, seqno_newer, seqno_plus
from meshd.babel.tlv import Ack, AckReq, Hello
from meshd.errors import DecodeError

UPDATE_TABLES = 2
"""A neighbour's Updates are taken up to this many route budgets (``max_routes``) at once,
refilled at that many a update interval: a full table, and a dump it was asked for, with
room; past it they are dropped (counted: ``updates_over_budget``). A datagram of 5,000
Updates cost ~0.12 s of CPU to take in, and nothing bounded how many a neighbour sent."""
UPDATE_FLOOR = 256
"""The budget is this many Updates at least, whatever the route budget (triggered updates of
a small table)."""
QUICK_HELLOS = 4
SEQNO_AHEAD = 100  # a seqno request further ahead than this is not acted on (as babeld)
SEQNO_RISE_INTERVAL = 1.0  # s: our seqno rises at most this often for requests
"""Unicast Hellos a neighbour may get out of schedule between two scheduled ones."""


class Receiving(CoreState):
    """What a received datagram sets off; see the module documentation."""

    def receive(
        self, interface: str, source: IPAddress, packet: bytes | Packet, now: float
    ) -> None:
        """Handle one datagram (bytes, or an already decoded and verified packet).

        Malformed bytes are counted in :attr:`decode_errors` and dropped. On a multicast
        interface an unknown source becomes a neighbour while the interface is within its
        neighbour budget (``max_neighbours``); past it, the least recently heard neighbour
        without a two-way link (infinite cost) makes room and its routes go
        (:attr:`neighbours_evicted`); a neighbour with a two-way link is never displaced,
        and when every slot holds one the datagram is dropped (:attr:`neighbours_refused`).
        """
        self._now = now
        iface = self._interface(interface)
        if source.version == 6 and not (source.is_link_local or source.is_loopback):
            # RFC 8966 4: Babel speaks from link-local addresses; one from elsewhere is no
            # router on this link (babeld drops it too), and would become a neighbour whose
            # routes we install (a default route through a next hop of its choosing). The
            # loopback address can only be this host (a speaker beside us, in tests).
            self.not_link_local += 1
            return
        if not isinstance(packet, Packet):
            try:
                packet = decode_packet_untrusted(bytes(packet))
            except DecodeError:
                self.decode_errors += 1
                return
        neighbour = iface.neighbours.get(source)
        if neighbour is None:
            if not iface.config.multicast:
                self.dropped += 1
                return
            admitted = self._admit(iface, source, now)
            if admitted is None:
                return
            neighbour = admitted
        elif source in iface.unproven:
            del iface.unproven[source]  # heard again: the most recent now
            iface.unproven[source] = None
        messages = self._within_budget(iface, neighbour, list(expand(packet, source)), now)
        rxcost = neighbour.rxcost(iface.config.link)
        iface.hear(neighbour, messages, now)
        iface.note(neighbour)
        self._refresh_neighbour(iface, neighbour, now)
        self._answer_hello(iface, neighbour, messages, rxcost, now)
        nid = NeighbourId(interface, source)
        for message in messages:
            if isinstance(message, Route):
                self._selection.update(iface.config, neighbour, message, now)
            elif isinstance(message, RetractAll):
                self._selection.retract_all(nid, now)
            elif isinstance(message, RequestAllRoutes):
                self._answer_dump(iface, neighbour, now)
            elif isinstance(message, RequestRoute):
                key = (message.prefix, message.source)
                self._note_interest(iface, nid, key, now)
                self._updates.announce_to(iface, source, key, now, poison=True)
            elif isinstance(message, RequestSeqno):
                self._receive_seqno_request(nid, message, now)
            elif isinstance(message, AckReq):
                self._outbox.queue(interface, source, now, Ack(message.opaque))

    def _answer_hello(
        self,
        iface: Interface,
        neighbour: Neighbour,
        messages: Sequence[object],
        rxcost_before: int,
        now: float,
    ) -> None:
        """Bring a unicast link up in round trips, not Hello intervals.

        A link is up when each end has k of the other's last j Hellos and an IHU saying so
        (RFC 8966 A.2.1): with only scheduled Hellos that takes k - 1 intervals and an IHU
        more, 8 s at a 4 s Hello. On a unicast-peers interface, a Hello from a neighbour that
        does not hear us yet (no finite IHU from it), or one that makes our rxcost for it
        change, is answered at once with a unicast Hello and our IHU (a node may send a
        unicast Hello at any time, RFC 8966 3.4.1); the exchange stops once both ends' costs
        are finite and stable. At most ``QUICK_HELLOS`` such Hellos go to a neighbour between
        two scheduled ones (:attr:`quick_hellos_refused` counts the others), so a neighbour
        cannot make us send more than that, whatever it sends.
        """
        if iface.config.multicast or not iface.started:
            return
        if not any(isinstance(m, Hello) for m in messages):
            return
        changed = neighbour.rxcost(iface.config.link) != rxcost_before
        if neighbour.txcost < INFINITY and not changed:
            return
        if neighbour.quick_hellos >= QUICK_HELLOS:
            self.quick_hellos_refused += 1
            return
        neighbour.quick_hellos += 1
        tlvs = iface.unicast_hello(neighbour, now)
        self._outbox.queue(iface.config.name, neighbour.address, now, *tlvs)

    def _answer_dump(self, iface: Interface, neighbour: Neighbour, now: float) -> None:
        """A wildcard Route Request: a full dump, unicast, at most once per ``dump_interval``
        per neighbour (the others are counted in :attr:`dumps_refused`)."""
        last = neighbour.last_dump
        if last is not None and now - last < self.config.dump_interval:
            self.dumps_refused += 1
            return
        neighbour.last_dump = now
        self._updates.full(iface, neighbour.address, now)

    def _within_budget(
        self, iface: Interface, neighbour: Neighbour, messages: list[Message], now: float
    ) -> list[Message]:
        """A datagram's messages as they are taken in: of its Updates for one route, only
        the last (each replaces the one before, and a wildcard retraction all before it:
        the end is the same, without the selections in between), and of those only as many
        as the neighbour's budget allows (:data:`UPDATE_TABLES`), in order; the others are
        dropped and counted."""
        last: dict[RouteKey, int] = {}
        routes = 0
        for n, message in enumerate(messages):
            if isinstance(message, Route):
                routes += 1
                last[(message.prefix, message.source)] = n
            elif isinstance(message, RetractAll):
                last.clear()
        if not routes:
            return messages
        config = iface.config
        capacity = max(UPDATE_TABLES * config.max_routes, UPDATE_FLOOR)
        kept = sorted(last.values())
        allowed = neighbour.take_updates(
            len(kept), capacity, capacity / config.update_interval, now
        )
        self.updates_superseded += routes - len(kept)
        self.updates_over_budget += len(kept) - allowed
        taken = set(kept[:allowed])
        return [m for n, m in enumerate(messages) if n in taken or not isinstance(m, Route)]

    def _receive_seqno_request(self, nid: NeighbourId, request: RequestSeqno, now: float) -> None:
        """RFC 8966 3.8.1.2: answer, increase our own seqno, or forward.

        What a neighbour's requests can make us do is bounded: a request more than
        :data:`SEQNO_AHEAD` past the seqno it asks past is dropped (babeld: "hopelessly out
        of date"; it would have been forwarded, or raised our seqno, as often as sent); our
        seqno rises at most once a :data:`SEQNO_RISE_INTERVAL`, and the update that carries
        the rise goes to the one who asked (the others take it at their next update, the
        route they hold staying feasible): each rise went urgently, twice, to every
        neighbour, ~40,000 datagrams a second for a request every 25 ms at 1,000 members."""
        key = (request.prefix, request.source)
        iface = self._interfaces[nid.interface]
        if key in self._local:
            ours = request.router_id == self.router_id
            if ours and seqno_newer(request.seqno, self.seqno):
                raised = self._seqno_raised_at
                if seqno_diff(request.seqno, self.seqno) > SEQNO_AHEAD or (
                    raised is not None and now - raised < SEQNO_RISE_INTERVAL
                ):
                    self.seqno_requests_refused += 1
                    return
                self._seqno_raised_at = now
                self.seqno = seqno_plus(self.seqno)
            self._updates.announce_to(iface, nid.address, key, now, poison=False)
            return
        selected = self._table.selected(key)
        if selected is not None and selected.metric < INFINITY:
            other_origin = selected.router_id != request.router_id
            if other_origin or not seqno_newer(request.seqno, selected.seqno):
                self._updates.announce_to(iface, nid.address, key, now, poison=False)
                return
            if seqno_diff(request.seqno, selected.seqno) > SEQNO_AHEAD:
                self.seqno_requests_refused += 1
                return
        self._requests.forward(nid, request, selected, now)

    def _admit(self, iface: Interface, source: IPAddress, now: float) -> Neighbour | None:
        """A new speaker on a multicast interface, within the neighbour budget (O(1))."""
        if len(iface.neighbours) >= iface.config.max_neighbours:
            victim = next(iter(iface.unproven), None)
            if victim is None:
                self.neighbours_refused += 1
                return None
            del iface.unproven[victim]
            self.neighbours_evicted += 1
            self._drop_neighbour(iface.neighbours.pop(victim), now)
        neighbour = Neighbour(iface.config.name, source)
        iface.neighbours[source] = neighbour
        iface.unproven[source] = None
        return neighbour

    def _note_interest(self, iface: Interface, nid: NeighbourId, key: RouteKey, now: float) -> None:
        """A Route Request for a route announced on demand: it goes to ``nid`` for a while."""
        on_demand = self.config.on_demand
        if on_demand is None or iface.config.multicast or not on_demand(nid.interface, *key):
            return
        until = now + HOLDS * iface.config.update_interval
        self._interest.note(nid, key, until, now=now, limit=iface.config.max_routes)
