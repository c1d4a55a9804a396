"""The state of the Babel core, and neighbours coming and going.

:class:`CoreState` is the base of :class:`meshd.babel.core.BabelCore`: it owns every table
and the collaborators (:mod:`meshd.babel.selection`, :mod:`meshd.babel.updates`,
:mod:`meshd.babel.requests`, :mod:`meshd.babel.outbox`), hands each the tables it reads, and
keeps the counters ``meshd routes`` shows. Beside it, what both a datagram
(:mod:`meshd.babel.core_receive`) and a timer (:mod:`meshd.babel.core_timers`) set off when a
neighbour's cost changes, and when a neighbour is greeted or forgotten.
"""

from __future__ import annotations

from collections import deque

from meshd.babel.config import CoreConfig
from meshd.babel.expand import route_request, wildcard_retraction
from meshd.babel.interest import Interest
from meshd.babel.interfaces import Interface
from meshd.babel.neighbours import Neighbour
from meshd.babel.numbers import INFINITY
from meshd.babel.outbox import Outbox
from meshd.babel.requests import SeqnoRequests
from meshd.babel.routes import Event, NeighbourDown, NeighbourId, NeighbourUp, RouteTable
from meshd.babel.selection import RouteSelection
from meshd.babel.sources import RouteKey, SourceTable
from meshd.babel.updates import Updates


class CoreState:
    """The tables, collaborators and counters of a Babel speaker; see the module
    documentation."""

    def __init__(self, router_id: bytes, config: CoreConfig | None = None) -> None:
        if len(router_id) != 8 or router_id in (bytes(8), b"\xff" * 8):
            raise ValueError("router-id must be 8 bytes, neither all zeros nor all ones")
        self.router_id = router_id
        self.config = config or CoreConfig()
        self.seqno = 0
        """Our own seqno, carried by every route we originate (RFC 8966 3.2.4)."""
        self.decode_errors = 0
        """Datagrams that did not parse."""
        self.dropped = 0
        """Packets from addresses that are not neighbours on a unicast-peers interface."""
        self.not_link_local = 0
        """Packets from an IPv6 source that is not link-local: dropped."""
        self.neighbours_evicted = 0
        """Neighbours without a two-way link displaced by a newcomer (a full interface)."""
        self.neighbours_refused = 0
        """Packets from unknown speakers on a full interface whose neighbours all have a
        two-way link (nothing may be displaced): dropped."""
        self.dumps_refused = 0
        """Wildcard Route Requests from a neighbour answered less than ``dump_interval``
        before: dropped."""
        self.quick_hellos_refused = 0
        """Hellos that would have been answered out of schedule past ``QUICK_HELLOS``
        (:mod:`meshd.babel.core_receive`): not answered."""
        self.seqno_requests_refused = 0
        """Seqno Requests more than ``SEQNO_AHEAD`` ahead of the seqno they ask past (what
        babeld calls hopelessly out of date), or asking for a rise of our seqno within
        ``SEQNO_RISE_INTERVAL`` of the last: not acted on (:mod:`meshd.babel.core_receive`)."""
        self.updates_over_budget = 0
        """Updates dropped: their neighbour's budget was spent (``UPDATE_TABLES``)."""
        self.updates_superseded = 0
        """Updates not taken in: a later one in the same datagram replaced them."""
        self._seqno_raised_at: float | None = None  # when a request last raised our seqno
        self._interfaces: dict[str, Interface] = {}
        self._local: dict[RouteKey, int] = {}
        self._table = RouteTable()
        self._sources = SourceTable(self.config.source_gc)
        self._outbox = Outbox()
        self._events: deque[Event] = deque()
        self._interest = Interest()
        self._updates = Updates(
            router_id,
            self.config,
            self._interfaces,
            self._local,
            self._table,
            self._sources,
            self._outbox,
            self._interest,
        )
        self._requests = SeqnoRequests(self.config, self._table, self._sources, self._outbox)
        self._selection = RouteSelection(
            router_id,
            self.config,
            self._local,
            self._table,
            self._sources,
            self._events,
            self._updates,
            self._requests,
        )
        self._greet: list[NeighbourId] = []
        self._now = 0.0
        self._next_gc = 0.0

    # --- neighbours coming and going --------------------------------------------------------

    def _refresh_neighbour(self, iface: Interface, neighbour: Neighbour, now: float) -> None:
        """A neighbour's cost may have changed: up, down, or its routes' metrics."""
        was = neighbour.cost
        if not neighbour.update_cost(iface.config.link, now):
            return
        nid = NeighbourId(iface.config.name, neighbour.address)
        if was >= INFINITY:
            iface.unproven.pop(neighbour.address, None)
            self._events.append(NeighbourUp(nid, neighbour.cost))
            self._greet_neighbour(nid, now, hello=False)
        elif neighbour.cost >= INFINITY:
            if iface.config.multicast:
                iface.unproven[neighbour.address] = None
            self._events.append(NeighbourDown(nid))
        self._selection.set_cost(nid, neighbour.cost, now)

    def _drop_neighbour(self, neighbour: Neighbour, now: float) -> None:
        """A neighbour forgotten (already out of its interface): its routes and state go."""
        nid = NeighbourId(neighbour.interface, neighbour.address)
        if neighbour.cost < INFINITY:
            self._events.append(NeighbourDown(nid))
        self._selection.retract_all(nid, now)
        self._outbox.forget(nid.interface, nid.address)
        self._interest.forget(nid)

    def _greet_neighbour(
        self, nid: NeighbourId, now: float, *, hello: bool, first: bool = False
    ) -> None:
        """A new or returning neighbour: send it our table and ask for its own.

        ``first``: one just added on a unicast-peers interface (:meth:`add_neighbour`). Soon
        after our start (:attr:`Interface.retract_until`) its greeting begins with a
        wildcard retraction, as babeld's first packet: what it still holds from an earlier
        run of ours (a prefix we no longer originate, a crash that said no goodbye) goes
        then, before the full update that follows, not at its hold time."""
        iface = self._interfaces.get(nid.interface)
        if iface is None or nid.address not in iface.neighbours:
            return
        if first and not iface.config.multicast and now < iface.retract_until:
            gone = wildcard_retraction(iface.update_interval(nid.address))
            self._outbox.queue(nid.interface, nid.address, now, gone)
        if hello and iface.started and not iface.config.multicast:
            tlvs = iface.unicast_hello(iface.neighbours[nid.address], now)
            self._outbox.queue(nid.interface, nid.address, now, *tlvs)
        self._outbox.queue(nid.interface, nid.address, now, route_request(None))
        self._updates.full(iface, nid.address, now)

    def _interface(self, name: str) -> Interface:
        iface = self._interfaces.get(name)
        if iface is None:
            raise ValueError(f"unknown interface {name}")
        return iface
