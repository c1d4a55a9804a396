"""The Babel routing core (RFC 8966): packets and time in, packets and events out.

:class:`BabelCore` owns no socket and reads no clock; every entry point that depends on time
takes ``now`` (seconds, any monotonic origin), and randomness (jitter) comes from the
``random`` function of :class:`CoreConfig`. The shell that drives it:

- feeds every datagram to :meth:`BabelCore.receive`;
- calls :meth:`BabelCore.handle_timer` when :meth:`BabelCore.timer` says;
- after either, sends what :meth:`BabelCore.datagrams_to_send` returns and applies the
  events of :meth:`BabelCore.next_event` (kernel routes, WireGuard allowed-ips).

Interfaces come in three kinds. ``wired`` and ``tunnel`` are ordinary Babel links: Hellos and
Updates go to the multicast group ff02::1:6, neighbours appear when they speak; ``wired``
uses split horizon, ``tunnel`` measures RTT. ``unicast-peers`` is the WireGuard mesh, where
multicast reaches one peer at most: neighbours are added and removed by the caller (from the
peer table), and every Hello (with its real interval), IHU and Update is unicast to each.

Here: the state, the entry points, what each received message sets off, and neighbours
coming and going. The protocol's rules live beside it:

- settings and hooks: :mod:`meshd.babel.config`;
- one interface, its Hellos and IHUs: :mod:`meshd.babel.interfaces`; each neighbour's
  Hello histories, link cost and RTT: :mod:`meshd.babel.neighbours`;
- Updates received, hold times, route selection and what a change sets off:
  :mod:`meshd.babel.selection`, over :mod:`meshd.babel.routes` (the table, ``choose``,
  the events) and :mod:`meshd.babel.sources` (feasibility);
- triggered, periodic and urgent updates, and what we announce: :mod:`meshd.babel.updates`;
- Seqno Requests, starvation recovery and forwarding: :mod:`meshd.babel.requests`;
- what waits per destination, packed into datagrams: :mod:`meshd.babel.outbox`;
- the snapshots ``meshd routes`` shows: :mod:`meshd.babel.views`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address

from meshd.babel.codec import decode_packet_untrusted
from meshd.babel.config import (
    DEFAULT_MAX_ROUTES,
    AcceptHook,
    AtRestHook,
    CoreConfig,
    InterfaceConfig,
    InterfaceKind,
    RedistributeHook,
    accept_all,
    no_jitter,
    redistribute_all,
)
from meshd.babel.expand import (
    RequestAllRoutes,
    RequestRoute,
    RequestSeqno,
    RetractAll,
    Route,
    expand,
    route_request,
)
from meshd.babel.interest import HOLDS, Interest
from meshd.babel.interfaces import MULTICAST_GROUP, SOON, Interface
from meshd.babel.martians import martian
from meshd.babel.neighbours import IPAddress, LinkParams, Neighbour
from meshd.babel.numbers import INFINITY
from meshd.babel.outbox import Outbox
from meshd.babel.packet import Packet
from meshd.babel.requests import SeqnoRequests
from meshd.babel.routes import (
    Event,
    NeighbourDown,
    NeighbourId,
    NeighbourUp,
    RouteEntry,
    RouteTable,
)
from meshd.babel.selection import RouteSelection
from meshd.babel.sources import IPNetwork, RouteKey, SourceTable, seqno_newer, seqno_plus
from meshd.babel.tlv import Ack, AckReq, Hello
from meshd.babel.updates import Updates
from meshd.babel.views import NeighbourView, RouteView, neighbour_view, own_route_view, route_view
from meshd.errors import DecodeError

__all__ = [
    "MULTICAST_GROUP",
    "AcceptHook",
    "AtRestHook",
    "BabelCore",
    "CoreConfig",
    "InterfaceConfig",
    "InterfaceKind",
    "NeighbourView",
    "RedistributeHook",
    "RouteView",
    "accept_all",
    "no_jitter",
    "redistribute_all",
]


QUICK_HELLOS = 4
"""Unicast Hellos a neighbour may get out of schedule between two scheduled ones."""


class BabelCore:
    """A Babel speaker without I/O. See the module documentation."""

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
        self.neighbours_evicted = 0
        """Neighbours without a two-way link displaced by a newcomer (a full interface)."""
        self.neighbours_refused = 0
        """Packets from unknown speakers on a full interface whose neighbours all have a
        two-way link (nothing may be displaced): dropped."""
        self.dumps_refused = 0
        self.quick_hellos_refused = 0
        """Wildcard Route Requests from a neighbour answered less than ``dump_interval``
        before: dropped."""
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

    # --- configuration ----------------------------------------------------------------------

    def add_interface(
        self,
        name: str,
        *,
        kind: InterfaceKind,
        hello_interval: float = 4.0,
        update_interval: float | None = None,
        link_local: IPv6Address | None = None,
        ipv4: IPv4Address | None = None,
        rxcost: int = 96,
        k: int = 2,
        j: int = 3,
        timestamps: bool | None = None,
        rtt_min: float = 0.010,
        rtt_max: float = 0.120,
        max_rtt_penalty: int | None = None,
        split_horizon: bool | None = None,
        mtu: int = 1400,
        max_neighbours: int = 64,
        max_routes: int = DEFAULT_MAX_ROUTES,
        rest_pace: int = 1,
    ) -> InterfaceConfig:
        """Start speaking Babel on an interface; the first Hello goes at the next timer.

        ``link_local`` and ``ipv4`` are our addresses there: IHUs for other addresses are
        ignored (when neither is given, every IHU counts), and without ``ipv4`` IPv4 routes
        are announced with our IPv6 address as next hop (RFC 9229, AE 4). Timestamps and an
        RTT penalty of 96 are on by default for ``tunnel`` and ``unicast-peers``; split
        horizon for ``wired``. ``max_neighbours``: the neighbour budget of a multicast
        interface (see :meth:`receive`). ``max_routes``: the route budget of each neighbour
        there (routes held from it; past it, new prefixes from it are dropped and counted).
        ``rest_pace``: the pace of the neighbours at rest (``CoreConfig.at_rest``) on a
        ``unicast-peers`` interface, 1 (off) elsewhere; pace times either interval must fit
        in 655.35 s.
        """
        if name in self._interfaces:
            raise ValueError(f"interface {name} already added")
        if not 0.01 <= hello_interval <= 655.35:
            raise ValueError(f"Hello interval {hello_interval} s outside 0.01..655.35")
        update = update_interval if update_interval is not None else 4 * hello_interval
        if not 0.01 <= update <= 655.35:
            raise ValueError(f"update interval {update} s outside 0.01..655.35")
        measured = kind != "wired"
        config = InterfaceConfig(
            name=name,
            kind=kind,
            hello_interval=hello_interval,
            update_interval=update,
            link=LinkParams(
                rxcost=rxcost,
                k=k,
                j=j,
                rtt_min=rtt_min,
                rtt_max=rtt_max,
                max_rtt_penalty=(96 if measured else 0)
                if max_rtt_penalty is None
                else max_rtt_penalty,
            ),
            timestamps=measured if timestamps is None else timestamps,
            split_horizon=(kind == "wired") if split_horizon is None else split_horizon,
            link_local=link_local,
            ipv4=ipv4,
            mtu=mtu,
            max_neighbours=max_neighbours,
            max_routes=max_routes,
            rest_pace=rest_pace,
        )
        if mtu < 512:
            raise ValueError(f"MTU {mtu} is too small for Babel")
        if max_neighbours < 1:
            raise ValueError(f"neighbour budget {max_neighbours} must be at least 1")
        if max_routes < 1:
            raise ValueError(f"route budget {max_routes} must be at least 1")
        self._interfaces[name] = Interface(config)
        return config

    def add_neighbour(self, interface: str, address: IPAddress) -> None:
        """Add a neighbour on a unicast-peers interface (a WireGuard peer's address).

        It is sent a Hello, an IHU and a wildcard Route Request at the next timer.
        """
        iface = self._interface(interface)
        if iface.config.multicast:
            raise ValueError(f"{interface} discovers its neighbours; only unicast-peers take them")
        if address not in iface.neighbours:
            iface.neighbours[address] = Neighbour(interface, address)
            self._greet.append(NeighbourId(interface, address))

    def remove_neighbour(self, interface: str, address: IPAddress, now: float) -> None:
        """Forget a neighbour (a removed or revoked peer): its routes go at once."""
        self._now = now
        iface = self._interface(interface)
        neighbour = iface.neighbours.pop(address, None)
        if neighbour is not None:
            self._drop_neighbour(neighbour, now)

    def request_routes(
        self, interface: str, address: IPAddress, keys: Sequence[RouteKey], now: float
    ) -> None:
        """Ask a neighbour for these routes (Route Requests, unicast, at once): its answer,
        and on an interface where it announces them on demand, its updates for a while."""
        self._now = now
        iface = self._interface(interface)
        if address not in iface.neighbours or not keys:
            return
        self._outbox.queue(interface, address, now, *(route_request(*key) for key in keys))

    def originate(
        self, prefix: IPNetwork, source_prefix: IPNetwork | None = None, metric: int = 0
    ) -> None:
        """Announce a prefix of ours (with RFC 9079 ``source_prefix``), at once."""
        if not 0 <= metric < INFINITY:
            raise ValueError(f"metric {metric} outside 0..65534")
        if martian(prefix) or martian(source_prefix):
            raise ValueError(f"{prefix} from {source_prefix} is a martian prefix")
        _check_source(prefix, source_prefix)
        key = (prefix, source_prefix)
        before = self._selection.current(key)
        self._local[key] = metric
        self._updates.clear_lost(key)
        self._selection.reselect(key, before, self._now)
        self._updates.announce(key, self._now, urgent=True)

    def withdraw(self, prefix: IPNetwork, source_prefix: IPNetwork | None = None) -> None:
        """Stop announcing a prefix of ours; a retraction goes at once."""
        key = (prefix, source_prefix)
        if self._local.pop(key, None) is None:
            return
        self._selection.reselect(key, None, self._now)
        if self._table.selected(key) is None:
            self._updates.mark_lost(key, self._now)
        self._updates.announce(key, self._now, urgent=True)

    def revalidate(self, now: float) -> None:
        """Ask the acceptance hook again about every route (a member was revoked)."""
        self._now = now
        self._selection.revalidate(now)

    # --- snapshots --------------------------------------------------------------------------

    def interfaces(self) -> list[InterfaceConfig]:
        return [iface.config for iface in self._interfaces.values()]

    def neighbours(self) -> list[NeighbourView]:
        """Every neighbour with its reachability, costs and RTT."""
        return [
            neighbour_view(iface.config, neighbour)
            for iface in self._interfaces.values()
            for neighbour in iface.neighbours.values()
        ]

    def resting(self, interface: str, address: IPAddress) -> bool:
        """Whether Hellos between us and a neighbour go at a rest pace, ours to it or its to
        us (it announces a longer Hello interval than ours): False for an unknown one."""
        iface = self._interfaces.get(interface)
        if iface is None or (neighbour := iface.neighbours.get(address)) is None:
            return False
        return neighbour.pace > 1 or neighbour.unicast.interval > iface.config.hello_interval

    def routes(self) -> list[RouteView]:
        """Every route we know: our own prefixes, then every neighbour's announcements."""
        views = [
            own_route_view(key, metric, self.router_id, self.seqno)
            for key, metric in self._local.items()
        ]
        views.extend(self._view(entry) for entry in self._table.all_entries())
        return views

    def route(self, prefix: IPNetwork, source_prefix: IPNetwork | None = None) -> RouteView | None:
        """The route in use for a key: ours, the selected one, or None."""
        key = (prefix, source_prefix)
        if key in self._local:
            return own_route_view(key, self._local[key], self.router_id, self.seqno)
        entry = self._table.selected(key)
        return self._view(entry) if entry is not None else None

    def _view(self, entry: RouteEntry) -> RouteView:
        selected = self._table.selected(entry.key) is entry
        return route_view(entry, selected=selected, feasible=self._selection.feasible(entry))

    def counters(self) -> dict[str, int]:
        """What the core refused or shed, and the neighbours we pace at rest, for
        ``meshd routes``."""
        return {
            "martians": self._selection.martians,
            "refused_routes": self._selection.refused,
            "routes_over_budget": self._selection.over_budget,
            "route_dumps_refused": self.dumps_refused,
            "quick_hellos_refused": self.quick_hellos_refused,
            "neighbours_evicted": self.neighbours_evicted,
            "neighbours_refused": self.neighbours_refused,
            "unknown_peer_packets": self.dropped,
            "route_interests": len(self._interest),
            "route_interests_refused": self._interest.refused,
            "neighbours_at_rest": sum(
                n.pace > 1 for i in self._interfaces.values() for n in i.neighbours.values()
            ),
        }

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    # --- time -------------------------------------------------------------------------------

    def timer(self) -> float | None:
        """When :meth:`handle_timer` (or :meth:`datagrams_to_send`) next has work."""
        times: list[float] = []
        if self._greet:
            times.append(SOON)
        for iface in self._interfaces.values():
            times.extend(iface.deadlines())
        expiry = self._table.next_expiry()
        if expiry is not None:
            times.append(expiry)
        times.extend(self._requests.deadlines())
        times.extend(self._outbox.deadlines())
        times.extend(self._updates.deadlines())
        if self._interfaces:
            times.append(self._next_gc)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Do everything that is due at ``now``."""
        self._now = now
        for iface in self._interfaces.values():
            self._tick_neighbours(iface, now)
        self._selection.expire(now)
        self._requests.resend(now)
        self._updates.resend(now)
        greet, self._greet = self._greet, []
        for neighbour in greet:
            self._greet_neighbour(neighbour, now, hello=True)
        for iface in self._interfaces.values():
            name = iface.config.name
            if iface.next_hello <= now:
                for destination, tlvs in iface.hellos(now, self.config.at_rest, self._interest):
                    self._outbox.queue(name, destination, now, *tlvs)
                iface.next_hello = now + iface.config.hello_interval
                if not iface.started:
                    iface.started = True
                    if iface.config.multicast:
                        self._outbox.queue(name, MULTICAST_GROUP, now, route_request(None))
            if iface.next_update <= now:
                self._updates.full(iface, None, now)
                jitter = 0.75 + 0.25 * self.config.random()
                iface.next_update = now + iface.config.update_interval * jitter
        if now >= self._next_gc:
            self._sources.expire(now)
            self._requests.expire(now)
            self._updates.expire(now)
            self._interest.expire(now)
            self._next_gc = now + 10.0

    def datagrams_to_send(self, now: float) -> list[tuple[str, IPAddress, bytes]]:
        """The datagrams due by ``now``: ``(interface, destination, payload)``."""
        self._now = now
        return self._updates.datagrams(now, self.seqno)

    # --- receiving --------------------------------------------------------------------------

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
        messages = list(expand(packet, source))
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

    def _receive_seqno_request(self, nid: NeighbourId, request: RequestSeqno, now: float) -> None:
        """RFC 8966 3.8.1.2: answer, increase our own seqno, or forward."""
        key = (request.prefix, request.source)
        iface = self._interfaces[nid.interface]
        if key in self._local:
            if request.router_id == self.router_id and seqno_newer(request.seqno, self.seqno):
                self.seqno = seqno_plus(self.seqno)
                self._updates.announce(key, now, urgent=True)
            else:
                self._updates.announce_to(iface, nid.address, key, now, poison=False)
            return
        selected = self._table.selected(key)
        if selected is not None and selected.metric < INFINITY:
            other_origin = selected.router_id != request.router_id
            if other_origin or not seqno_newer(request.seqno, selected.seqno):
                self._updates.announce_to(iface, nid.address, key, now, poison=False)
                return
        self._requests.forward(nid, request, selected, now)

    # --- neighbours -------------------------------------------------------------------------

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

    def _tick_neighbours(self, iface: Interface, now: float) -> None:
        """Count the missed Hellos and lapsed IHUs due by ``now``. On ``unicast-peers`` (a
        relay has thousands of neighbours) only those whose deadline passed: their cost
        changes then or on a datagram, never otherwise. A multicast interface (at most
        ``max_neighbours``) looks at each, and forgets one silent for good."""
        if not iface.config.multicast:
            for neighbour in iface.take_due(now):
                neighbour.tick(now)
                self._refresh_neighbour(iface, neighbour, now)
                iface.note(neighbour)
            return
        for neighbour in list(iface.neighbours.values()):
            deadline = neighbour.deadline()
            if deadline is not None and deadline <= now:
                neighbour.tick(now)
            self._refresh_neighbour(iface, neighbour, now)
            idle = neighbour.reach() == 0 and neighbour.txcost >= INFINITY
            if idle and neighbour.deadline() is None:
                del iface.neighbours[neighbour.address]
                iface.unproven.pop(neighbour.address, None)
                self._drop_neighbour(neighbour, now)
            else:
                iface.note(neighbour)

    def _refresh_neighbour(self, iface: Interface, neighbour: Neighbour, now: float) -> None:
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
        nid = NeighbourId(neighbour.interface, neighbour.address)
        if neighbour.cost < INFINITY:
            self._events.append(NeighbourDown(nid))
        self._selection.retract_all(nid, now)
        self._outbox.forget(nid.interface, nid.address)
        self._interest.forget(nid)

    def _note_interest(self, iface: Interface, nid: NeighbourId, key: RouteKey, now: float) -> None:
        """A Route Request for a route announced on demand: it goes to ``nid`` for a while."""
        on_demand = self.config.on_demand
        if on_demand is None or iface.config.multicast or not on_demand(nid.interface, *key):
            return
        until = now + HOLDS * iface.config.update_interval
        self._interest.note(nid, key, until, now=now, limit=iface.config.max_routes)

    def _greet_neighbour(self, nid: NeighbourId, now: float, *, hello: bool) -> None:
        """A new or returning neighbour: send it our table and ask for its own."""
        iface = self._interfaces.get(nid.interface)
        if iface is None or nid.address not in iface.neighbours:
            return
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


def _check_source(prefix: IPNetwork, source: IPNetwork | None) -> None:
    if source is None:
        return
    if source.version != prefix.version:
        raise ValueError(f"source {source} and prefix {prefix} are of different families")
    if source.prefixlen == 0:
        raise ValueError("a source prefix of length 0 is an ordinary route: pass None")
