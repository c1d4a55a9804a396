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

What the core does, and where the rules live:

- neighbours, Hello histories, link cost and RTT: :mod:`meshd.babel.neighbours`;
- the source table and the feasibility condition: :mod:`meshd.babel.sources`;
- the route table, selection with hysteresis and the events: :mod:`meshd.babel.routes`;
- here: packet handling, triggered and periodic updates, Route and Seqno Requests,
  starvation recovery, retractions and expiry, and packing messages into datagrams.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from typing import Final, Literal

from meshd.babel.codec import HEADER, decode_packet_untrusted, encode_packet, encode_tlv
from meshd.babel.expand import (
    RequestAllRoutes,
    RequestRoute,
    RequestSeqno,
    RetractAll,
    Route,
    build_updates,
    expand,
    ihu,
    route_request,
    seqno_request,
)
from meshd.babel.neighbours import IPAddress, LinkParams, Neighbour, timestamp
from meshd.babel.routes import (
    Event,
    NeighbourDown,
    NeighbourId,
    NeighbourUp,
    RouteChanged,
    RouteEntry,
    RouteInstalled,
    RouteRetracted,
    RouteTable,
    choose,
)
from meshd.babel.sources import (
    IPNetwork,
    RouteKey,
    SourceTable,
    seqno_diff,
    seqno_newer,
    seqno_plus,
)
from meshd.babel.tlv import (
    HELLO_UNICAST,
    INFINITY,
    Ack,
    AckReq,
    Hello,
    HelloTimestamp,
    Ihu,
    IhuTimestamp,
    Packet,
    Tlv,
)
from meshd.errors import DecodeError

MULTICAST_GROUP: Final = IPv6Address("ff02::1:6")
"""Babel's link-local multicast group (RFC 8966 5)."""

InterfaceKind = Literal["wired", "tunnel", "unicast-peers"]
AcceptHook = Callable[[bytes, IPNetwork, IPNetwork | None], bool]
"""``accept(router_id, prefix, source)``: may this originator announce this route?"""
RedistributeHook = Callable[[str, IPNetwork, IPNetwork | None], bool]
"""``redistribute(interface, prefix, source)``: may we announce this route there?"""

_SOON: Final = float("-inf")
"""A deadline that is already due, whatever the time."""


def accept_all(router_id: bytes, prefix: IPNetwork, source: IPNetwork | None) -> bool:
    """The default route-acceptance hook: every route is welcome."""
    return True


def redistribute_all(interface: str, prefix: IPNetwork, source: IPNetwork | None) -> bool:
    """The default redistribution filter: every route goes everywhere."""
    return True


def no_jitter() -> float:
    """The default random source: always the middle, so runs are reproducible."""
    return 0.5


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Settings of a :class:`BabelCore` that do not belong to one interface."""

    hysteresis: int = 48
    """A better route replaces the selected one only when better by more than this."""
    hop_count: int = 64
    """Hop count of the Seqno Requests we originate."""
    request_timeout: float = 0.5
    """First resend delay of an unanswered Seqno Request; it doubles at each resend."""
    request_attempts: int = 4
    resend_delay: float = 1.0
    """Urgent updates (retractions, originator switches) are sent again after this."""
    urgent_jitter: float = 0.02
    """Triggered messages wait up to this long, so that several share a packet."""
    triggered_threshold: int = 64
    """A change of metric this large (same originator and seqno) triggers an update."""
    source_gc: float = 180.0
    accept: AcceptHook = accept_all
    accept_on: frozenset[str] | None = None
    """Interfaces whose Updates go through ``accept`` (None: all of them). On a gateway
    only the mesh is checked; routes from a site's Babel routers are taken as they come."""
    redistribute: RedistributeHook = redistribute_all
    random: Callable[[], float] = no_jitter
    """Uniform in [0, 1): e.g. ``random.Random().random``."""

    def __post_init__(self) -> None:
        if not 0 <= self.hysteresis < INFINITY:
            raise ValueError(f"hysteresis {self.hysteresis} outside 0..65534")
        if not 1 <= self.hop_count <= 255:
            raise ValueError(f"hop count {self.hop_count} outside 1..255")


@dataclass(frozen=True, slots=True)
class InterfaceConfig:
    """One interface, as :meth:`BabelCore.add_interface` settles it."""

    name: str
    kind: InterfaceKind
    hello_interval: float
    update_interval: float
    link: LinkParams
    timestamps: bool
    split_horizon: bool
    link_local: IPv6Address | None
    ipv4: IPv4Address | None
    mtu: int

    @property
    def multicast(self) -> bool:
        return self.kind != "unicast-peers"


@dataclass(frozen=True, slots=True)
class RouteView:
    """One route as ``meshd routes`` shows it; ``neighbour`` is None for our own prefixes."""

    prefix: IPNetwork
    source: IPNetwork | None
    router_id: bytes
    seqno: int
    metric: int
    refmetric: int
    next_hop: IPAddress | None
    neighbour: NeighbourId | None
    selected: bool
    feasible: bool
    expires: float | None


@dataclass(frozen=True, slots=True)
class NeighbourView:
    """One neighbour as ``meshd routes`` shows it (``reach`` as babeld prints it)."""

    neighbour: NeighbourId
    reach: int
    rxcost: int
    txcost: int
    cost: int
    rtt: float | None


@dataclass(slots=True)
class _Interface:
    config: InterfaceConfig
    neighbours: dict[IPAddress, Neighbour] = field(default_factory=dict)
    hello_seqno: int = 0
    next_hello: float = _SOON
    next_update: float = _SOON
    started: bool = False


@dataclass(slots=True)
class _Outgoing:
    """What waits to go to one destination: TLVs, and route keys to announce when sent.

    A key maps to True when, if we have nothing to announce there (no route, filter, split
    horizon), a retraction is to be sent instead.
    """

    deadline: float
    tlvs: list[Tlv] = field(default_factory=list)
    routes: dict[RouteKey, bool] = field(default_factory=dict)


@dataclass(slots=True)
class _Request:
    """A Seqno Request of ours waiting for its answer."""

    router_id: bytes
    seqno: int
    targets: tuple[NeighbourId, ...]
    hop_count: int
    attempts: int
    resend_at: float
    delay: float


_Selection = tuple[NeighbourId, IPAddress, bytes, int, int] | None
"""What the events and triggered updates compare: neighbour, next hop, id, seqno, metric."""


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
        self.dropped = 0
        """Packets from addresses that are not neighbours on a unicast-peers interface."""
        self._interfaces: dict[str, _Interface] = {}
        self._local: dict[RouteKey, int] = {}
        self._table = RouteTable()
        self._sources = SourceTable(self.config.source_gc)
        self._outbox: dict[tuple[str, IPAddress], _Outgoing] = {}
        self._events: deque[Event] = deque()
        self._requests: dict[RouteKey, _Request] = {}
        self._forwarded: dict[tuple[RouteKey, bytes, int], float] = {}
        self._lost: dict[RouteKey, float] = {}
        self._resends: list[tuple[float, int, RouteKey]] = []
        self._greet: list[NeighbourId] = []
        self._counter = itertools.count()
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
    ) -> InterfaceConfig:
        """Start speaking Babel on an interface; the first Hello goes at the next timer.

        ``link_local`` and ``ipv4`` are our addresses there: IHUs for other addresses are
        ignored (when neither is given, every IHU counts), and without ``ipv4`` IPv4 routes
        are announced with our IPv6 address as next hop (RFC 9229, AE 4). Timestamps and an
        RTT penalty of 96 are on by default for ``tunnel`` and ``unicast-peers``; split
        horizon for ``wired``.
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
        )
        if mtu < 512:
            raise ValueError(f"MTU {mtu} is too small for Babel")
        self._interfaces[name] = _Interface(config)
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

    def originate(
        self, prefix: IPNetwork, source_prefix: IPNetwork | None = None, metric: int = 0
    ) -> None:
        """Announce a prefix of ours (with RFC 9079 ``source_prefix``), at once."""
        if not 0 <= metric < INFINITY:
            raise ValueError(f"metric {metric} outside 0..65534")
        _check_source(prefix, source_prefix)
        key = (prefix, source_prefix)
        before = self._selection(key)
        self._local[key] = metric
        self._lost.pop(key, None)
        self._reselect(key, before, self._now)
        self._announce(key, self._now, urgent=True)

    def withdraw(self, prefix: IPNetwork, source_prefix: IPNetwork | None = None) -> None:
        """Stop announcing a prefix of ours; a retraction goes at once."""
        key = (prefix, source_prefix)
        if self._local.pop(key, None) is None:
            return
        self._reselect(key, None, self._now)
        if self._table.selected(key) is None:
            self._mark_lost(key, self._now)
        self._announce(key, self._now, urgent=True)

    def revalidate(self, now: float) -> None:
        """Ask the acceptance hook again about every route (a member was revoked)."""
        self._now = now
        for entry in list(self._table.all_entries()):
            if not self._accepts(entry.neighbour.interface, entry.router_id, entry.key):
                before = self._selection(entry.key)
                self._table.remove(entry.key, entry.neighbour)
                self._reselect(entry.key, before, now)

    # --- snapshots --------------------------------------------------------------------------

    def interfaces(self) -> list[InterfaceConfig]:
        return [iface.config for iface in self._interfaces.values()]

    def neighbours(self) -> list[NeighbourView]:
        """Every neighbour with its reachability, costs and RTT."""
        views = []
        for iface in self._interfaces.values():
            for neighbour in iface.neighbours.values():
                views.append(
                    NeighbourView(
                        NeighbourId(iface.config.name, neighbour.address),
                        reach=neighbour.reach(),
                        rxcost=neighbour.rxcost(iface.config.link),
                        txcost=neighbour.txcost,
                        cost=neighbour.cost,
                        rtt=neighbour.rtt,
                    )
                )
        return views

    def routes(self) -> list[RouteView]:
        """Every route we know: our own prefixes, then every neighbour's announcements."""
        views = [
            RouteView(
                prefix,
                source,
                self.router_id,
                self.seqno,
                metric,
                metric,
                None,
                None,
                True,
                True,
                None,
            )
            for (prefix, source), metric in self._local.items()
        ]
        views.extend(self._view(entry) for entry in self._table.all_entries())
        return views

    def route(self, prefix: IPNetwork, source_prefix: IPNetwork | None = None) -> RouteView | None:
        """The route in use for a key: ours, the selected one, or None."""
        key = (prefix, source_prefix)
        if key in self._local:
            metric = self._local[key]
            return RouteView(
                prefix,
                source_prefix,
                self.router_id,
                self.seqno,
                metric,
                metric,
                None,
                None,
                True,
                True,
                None,
            )
        entry = self._table.selected(key)
        return self._view(entry) if entry is not None else None

    def _view(self, entry: RouteEntry) -> RouteView:
        return RouteView(
            entry.prefix,
            entry.source,
            entry.router_id,
            entry.seqno,
            entry.metric,
            entry.refmetric,
            entry.next_hop,
            entry.neighbour,
            self._table.selected(entry.key) is entry,
            self._feasible(entry),
            entry.expires,
        )

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    # --- time -------------------------------------------------------------------------------

    def timer(self) -> float | None:
        """When :meth:`handle_timer` (or :meth:`datagrams_to_send`) next has work."""
        times: list[float] = []
        if self._greet:
            times.append(_SOON)
        for iface in self._interfaces.values():
            times.append(iface.next_hello)
            times.append(iface.next_update)
            for neighbour in iface.neighbours.values():
                deadline = neighbour.deadline()
                if deadline is not None:
                    times.append(deadline)
        expiry = self._table.next_expiry()
        if expiry is not None:
            times.append(expiry)
        times.extend(request.resend_at for request in self._requests.values())
        times.extend(outgoing.deadline for outgoing in self._outbox.values())
        if self._resends:
            times.append(self._resends[0][0])
        if self._interfaces:
            times.append(self._next_gc)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Do everything that is due at ``now``."""
        self._now = now
        for iface in self._interfaces.values():
            self._tick_neighbours(iface, now)
        for entry in self._table.pop_expired(now):
            self._retract(entry.key, entry.neighbour, now)
        self._resend_requests(now)
        while self._resends and self._resends[0][0] <= now:
            _, _, key = heapq.heappop(self._resends)
            self._announce(key, now, urgent=False)
        greet, self._greet = self._greet, []
        for neighbour in greet:
            self._greet_neighbour(neighbour, now, hello=True)
        for iface in self._interfaces.values():
            if iface.next_hello <= now:
                self._send_hellos(iface, now)
                iface.next_hello = now + iface.config.hello_interval
                if not iface.started:
                    iface.started = True
                    if iface.config.multicast:
                        self._queue_tlv(
                            iface.config.name, MULTICAST_GROUP, route_request(None), now
                        )
            if iface.next_update <= now:
                self._full_update(iface, None, now)
                jitter = 0.75 + 0.25 * self.config.random()
                iface.next_update = now + iface.config.update_interval * jitter
        if now >= self._next_gc:
            self._sources.expire(now)
            self._forwarded = {k: t for k, t in self._forwarded.items() if t > now}
            self._lost = {k: t for k, t in self._lost.items() if t > now}
            self._next_gc = now + 10.0

    # --- receiving --------------------------------------------------------------------------

    def receive(
        self, interface: str, source: IPAddress, packet: bytes | Packet, now: float
    ) -> None:
        """Handle one datagram (bytes, or an already decoded and verified packet).

        Malformed bytes are counted in :attr:`decode_errors` and dropped.
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
            neighbour = Neighbour(interface, source)
            iface.neighbours[source] = neighbour
        messages = list(expand(packet, source))
        transmit = self._receive_hellos(iface, neighbour, messages, now)
        for message in messages:
            if isinstance(message, Ihu) and self._for_us(iface, message):
                neighbour.receive_ihu(message.rxcost, message.interval / 100, now)
                stamps = message.timestamps
                if stamps is not None and transmit is not None:
                    neighbour.rtt_sample(
                        stamps.origin, stamps.receive, transmit, now, iface.config.link
                    )
        self._refresh_neighbour(iface, neighbour, now)
        nid = NeighbourId(interface, source)
        for message in messages:
            if isinstance(message, Route):
                self._receive_route(iface, neighbour, message, now)
            elif isinstance(message, RetractAll):
                for key in self._table.keys_via(nid):
                    self._retract(key, nid, now)
            elif isinstance(message, RequestAllRoutes):
                self._full_update(iface, source, now)
            elif isinstance(message, RequestRoute):
                self._announce_to(iface, source, (message.prefix, message.source), now, poison=True)
            elif isinstance(message, RequestSeqno):
                self._receive_seqno_request(nid, message, now)
            elif isinstance(message, AckReq):
                self._queue_tlv(interface, source, Ack(message.opaque), now)

    def _receive_hellos(
        self, iface: _Interface, neighbour: Neighbour, messages: Sequence[object], now: float
    ) -> int | None:
        """Record the packet's Hellos; return the transmit timestamp of a timestamped one."""
        transmit = None
        for message in messages:
            if not isinstance(message, Hello):
                continue
            history = neighbour.unicast if message.unicast else neighbour.multicast
            history.receive(message.seqno, message.interval / 100, now)
            stamp = message.timestamp
            if stamp is not None and iface.config.timestamps:
                neighbour.receive_hello_timestamp(stamp, now)
                transmit = stamp
        return transmit

    def _for_us(self, iface: _Interface, message: Ihu) -> bool:
        ours = [a for a in (iface.config.link_local, iface.config.ipv4) if a is not None]
        return message.address is None or not ours or message.address in ours

    def _receive_route(
        self, iface: _Interface, neighbour: Neighbour, route: Route, now: float
    ) -> None:
        nid = NeighbourId(iface.config.name, neighbour.address)
        key = (route.prefix, route.source)
        if route.router_id == self.router_id:
            return  # our own routes coming back
        if route.retraction or route.router_id is None or route.next_hop is None:
            self._retract(key, nid, now)
            return
        if not self._accepts(iface.config.name, route.router_id, key):
            self._retract(key, nid, now)
            return
        interval = route.interval / 100 or iface.config.update_interval
        expires = now + 3.5 * interval
        feasible = self._sources.feasible(key, route.router_id, route.seqno, route.metric)
        entry = self._table.entry(key, nid)
        before = self._selection(key)
        selected = self._table.selected(key)
        same_origin = entry is not None and entry.router_id == route.router_id
        if not feasible and same_origin and selected is entry:
            # RFC 8966 3.5.4: an unfeasible update of the selected route from the same
            # originator is ignored (it would break the feasibility of what we use); ask
            # for a newer seqno so that the worse metric can be taken.
            self._unfeasible(key, route, nid, now, force=True)
            return
        fresh = RouteEntry(
            prefix=route.prefix,
            source=route.source,
            neighbour=nid,
            router_id=route.router_id,
            seqno=route.seqno,
            refmetric=route.metric,
            next_hop=route.next_hop,
            interval=interval,
            expires=expires,
            cost=neighbour.cost,
        )
        if entry is not None and self._table.selected(key) is entry:
            # Update in place so that the selection keeps pointing at it.
            for name in ("router_id", "seqno", "refmetric", "next_hop", "interval", "expires"):
                setattr(entry, name, getattr(fresh, name))
            entry.cost = neighbour.cost
            self._table.put(entry)
        else:
            self._table.put(fresh)
        if not feasible:
            self._unfeasible(key, route, nid, now, force=False)
        self._reselect(key, before, now)

    def _retract(self, key: RouteKey, nid: NeighbourId, now: float) -> None:
        before = self._selection(key)
        if self._table.remove(key, nid) is not None:
            self._reselect(key, before, now)

    def _accepts(self, interface: str, router_id: bytes, key: RouteKey) -> bool:
        checked = self.config.accept_on
        if checked is not None and interface not in checked:
            return True
        return self.config.accept(router_id, key[0], key[1])

    # --- neighbours -------------------------------------------------------------------------

    def _tick_neighbours(self, iface: _Interface, now: float) -> None:
        for neighbour in list(iface.neighbours.values()):
            deadline = neighbour.deadline()
            if deadline is not None and deadline <= now:
                neighbour.tick(now)
            self._refresh_neighbour(iface, neighbour, now)
            idle = neighbour.reach() == 0 and neighbour.txcost >= INFINITY
            if iface.config.multicast and idle and neighbour.deadline() is None:
                del iface.neighbours[neighbour.address]
                self._drop_neighbour(neighbour, now)

    def _refresh_neighbour(self, iface: _Interface, neighbour: Neighbour, now: float) -> None:
        was = neighbour.cost
        if not neighbour.update_cost(iface.config.link):
            return
        nid = NeighbourId(iface.config.name, neighbour.address)
        if was >= INFINITY:
            self._events.append(NeighbourUp(nid, neighbour.cost))
            self._greet_neighbour(nid, now, hello=False)
        elif neighbour.cost >= INFINITY:
            self._events.append(NeighbourDown(nid))
        for key in self._table.keys_via(nid):
            entry = self._table.entry(key, nid)
            if entry is None:
                continue
            before = self._selection(key)
            entry.cost = neighbour.cost
            self._reselect(key, before, now)

    def _drop_neighbour(self, neighbour: Neighbour, now: float) -> None:
        nid = NeighbourId(neighbour.interface, neighbour.address)
        if neighbour.cost < INFINITY:
            self._events.append(NeighbourDown(nid))
        for key in self._table.keys_via(nid):
            self._retract(key, nid, now)
        for destination in [d for d in self._outbox if d == (nid.interface, nid.address)]:
            del self._outbox[destination]

    def _greet_neighbour(self, nid: NeighbourId, now: float, *, hello: bool) -> None:
        """A new or returning neighbour: send it our table and ask for its own."""
        iface = self._interfaces.get(nid.interface)
        if iface is None or nid.address not in iface.neighbours:
            return
        if hello and iface.started and not iface.config.multicast:
            self._send_unicast_hello(iface, iface.neighbours[nid.address], now)
        self._queue_tlv(nid.interface, nid.address, route_request(None), now)
        self._full_update(iface, nid.address, now)

    # --- selection --------------------------------------------------------------------------

    def _feasible(self, entry: RouteEntry) -> bool:
        return self._sources.feasible(entry.key, entry.router_id, entry.seqno, entry.refmetric)

    def _selection(self, key: RouteKey) -> _Selection:
        entry = self._table.selected(key)
        return _selection_of(entry) if entry is not None else None

    def _reselect(self, key: RouteKey, before: _Selection, now: float) -> None:
        """Choose the route of a key again; report it and send what the change calls for."""
        current = self._table.selected(key)
        if key in self._local:
            chosen = None
        else:
            chosen = choose(
                self._table.entries(key), current, self._feasible, self.config.hysteresis
            )
        self._table.set_selected(key, chosen)
        prefix, source = key
        if chosen is not None:
            after = _selection_of(chosen)
            neighbour, next_hop, router_id, _, metric = after
            self._lost.pop(key, None)
            if before is None:
                self._events.append(
                    RouteInstalled(prefix, source, next_hop, neighbour, metric, router_id)
                )
                self._announce(key, now, urgent=True)
            elif before != after:
                if before[:2] != after[:2] or before[2] != router_id or before[4] != metric:
                    self._events.append(
                        RouteChanged(prefix, source, next_hop, neighbour, metric, router_id)
                    )
                self._triggered(key, before, after, now)
            self._answer_requests(key, chosen, now)
        else:
            if before is not None:
                self._events.append(RouteRetracted(prefix, source))
                if key not in self._local:
                    self._mark_lost(key, now)
                    self._announce(key, now, urgent=True)
            if key not in self._local:
                self._starving(key, now)

    def _triggered(
        self,
        key: RouteKey,
        before: tuple[NeighbourId, IPAddress, bytes, int, int],
        after: tuple[NeighbourId, IPAddress, bytes, int, int],
        now: float,
    ) -> None:
        """Send a triggered update for a change of the selected route, if it matters."""
        if before[2] != after[2]:
            self._announce(key, now, urgent=True)  # new originator: resent, as babeld does
        elif (
            before[0] != after[0]  # split horizon: the old next hop has not heard of it
            or before[3] != after[3]
            or abs(before[4] - after[4]) >= self.config.triggered_threshold
        ):
            self._announce(key, now, urgent=False)

    def _mark_lost(self, key: RouteKey, now: float) -> None:
        hold = max((i.config.update_interval for i in self._interfaces.values()), default=4.0)
        self._lost[key] = now + 2 * hold

    # --- requests ---------------------------------------------------------------------------

    def _starving(self, key: RouteKey, now: float) -> None:
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
        self._request(key, best.router_id, seqno, targets, self.config.hop_count, now)

    def _unfeasible(
        self, key: RouteKey, route: Route, nid: NeighbourId, now: float, *, force: bool
    ) -> None:
        """An unfeasible update came: if it would help, ask for a newer seqno (3.8.2.2)."""
        assert route.router_id is not None
        distance = self._sources.distance(key, route.router_id)
        if distance is None or seqno_diff(distance.seqno, route.seqno) > 100:
            return  # no distance, or an originator that lost its seqno: let it time out
        selected = self._table.selected(key)
        neighbour = self._neighbour(nid)
        cost = neighbour.cost if neighbour is not None else INFINITY
        metric = min(route.metric + cost, INFINITY)
        if force or selected is None or metric + self.config.hysteresis < selected.metric:
            seqno = seqno_plus(distance.seqno)
            self._request(key, route.router_id, seqno, (nid,), self.config.hop_count, now)

    def _request(
        self,
        key: RouteKey,
        router_id: bytes,
        seqno: int,
        targets: tuple[NeighbourId, ...],
        hop_count: int,
        now: float,
    ) -> None:
        pending = self._requests.get(key)
        if (
            pending is not None
            and pending.router_id == router_id
            and not seqno_newer(seqno, pending.seqno)
        ):
            return  # already asked
        request = _Request(
            router_id,
            seqno,
            targets,
            hop_count,
            self.config.request_attempts,
            now + self.config.request_timeout,
            self.config.request_timeout,
        )
        self._requests[key] = request
        self._send_request(key, request, now)

    def _send_request(self, key: RouteKey, request: _Request, now: float) -> None:
        prefix, source = key
        tlv = seqno_request(prefix, request.seqno, request.hop_count, request.router_id, source)
        for target in request.targets:
            self._queue_tlv(target.interface, target.address, tlv, now)

    def _resend_requests(self, now: float) -> None:
        for key, request in list(self._requests.items()):
            if request.resend_at > now:
                continue
            request.attempts -= 1
            if request.attempts <= 0:
                del self._requests[key]
                continue
            request.delay *= 2
            request.resend_at = now + request.delay
            self._send_request(key, request, now)

    def _answer_requests(self, key: RouteKey, chosen: RouteEntry, now: float) -> None:
        """Forget our request for a key once a route at least as new is selected."""
        request = self._requests.get(key)
        if request is None:
            return
        if chosen.router_id != request.router_id or not seqno_newer(request.seqno, chosen.seqno):
            del self._requests[key]

    def _receive_seqno_request(self, nid: NeighbourId, request: RequestSeqno, now: float) -> None:
        """RFC 8966 3.8.1.2: answer, increase our own seqno, or forward."""
        key = (request.prefix, request.source)
        iface = self._interfaces[nid.interface]
        if key in self._local:
            if request.router_id == self.router_id and seqno_newer(request.seqno, self.seqno):
                self.seqno = seqno_plus(self.seqno)
                self._announce(key, now, urgent=True)
            else:
                self._announce_to(iface, nid.address, key, now, poison=False)
            return
        selected = self._table.selected(key)
        usable = selected is not None and selected.metric < INFINITY
        if usable and selected is not None:
            other_origin = selected.router_id != request.router_id
            if other_origin or not seqno_newer(request.seqno, selected.seqno):
                self._announce_to(iface, nid.address, key, now, poison=False)
                return
        if request.hop_count < 2:
            return
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
        if self._forwarded.get(memo, _SOON) > now:
            return  # forwarded very recently
        self._forwarded[memo] = now + self.config.request_timeout * 4
        tlv = seqno_request(
            request.prefix, request.seqno, request.hop_count - 1, request.router_id, request.source
        )
        self._queue_tlv(target.neighbour.interface, target.neighbour.address, tlv, now)

    # --- sending ----------------------------------------------------------------------------

    def _send_hellos(self, iface: _Interface, now: float) -> None:
        if iface.config.multicast:
            iface.hello_seqno = seqno_plus(iface.hello_seqno)
            hello = self._hello(iface, iface.hello_seqno, 0, now)
            ihus = [self._ihu(iface, n, now) for n in iface.neighbours.values()]
            self._queue_tlv(iface.config.name, MULTICAST_GROUP, hello, now, *ihus)
        else:
            for neighbour in iface.neighbours.values():
                self._send_unicast_hello(iface, neighbour, now)

    def _send_unicast_hello(self, iface: _Interface, neighbour: Neighbour, now: float) -> None:
        neighbour.hello_seqno = seqno_plus(neighbour.hello_seqno)
        hello = self._hello(iface, neighbour.hello_seqno, HELLO_UNICAST, now)
        ihu_tlv = self._ihu(iface, neighbour, now)
        self._queue_tlv(iface.config.name, neighbour.address, hello, now, ihu_tlv)

    def _hello(self, iface: _Interface, seqno: int, flags: int, now: float) -> Hello:
        subs = (HelloTimestamp(timestamp(now)),) if iface.config.timestamps else ()
        return Hello(seqno, _centiseconds(iface.config.hello_interval), flags, subs)

    def _ihu(self, iface: _Interface, neighbour: Neighbour, now: float) -> Ihu:
        config = iface.config
        tlv = ihu(
            neighbour.rxcost(config.link), _centiseconds(config.hello_interval), neighbour.address
        )
        recent = now - neighbour.hello_received_at <= 3 * config.hello_interval
        if config.timestamps and recent and neighbour.hello_origin is not None:
            assert neighbour.hello_receive is not None
            stamps = IhuTimestamp(neighbour.hello_origin, neighbour.hello_receive)
            tlv = dataclasses.replace(tlv, sub_tlvs=(stamps,))
        return tlv

    def _targets(self, iface: _Interface) -> list[IPAddress]:
        if iface.config.multicast:
            return [MULTICAST_GROUP]
        return list(iface.neighbours)

    def _outgoing(self, interface: str, destination: IPAddress, deadline: float) -> _Outgoing:
        outgoing = self._outbox.get((interface, destination))
        if outgoing is None:
            outgoing = self._outbox[(interface, destination)] = _Outgoing(deadline)
        outgoing.deadline = min(outgoing.deadline, deadline)
        return outgoing

    def _queue_tlv(
        self, interface: str, destination: IPAddress, tlv: Tlv, now: float, *more: Tlv
    ) -> None:
        outgoing = self._outgoing(interface, destination, now)
        outgoing.tlvs.append(tlv)
        outgoing.tlvs.extend(more)

    def _full_update(self, iface: _Interface, destination: IPAddress | None, now: float) -> None:
        """Every route we have (and the retractions still worth repeating) to one target."""
        keys = list(self._local) + self._table.selected_keys()
        keys.extend(key for key, until in self._lost.items() if until > now)
        deadline = now + self.config.urgent_jitter * self.config.random()
        for target in [destination] if destination is not None else self._targets(iface):
            outgoing = self._outgoing(iface.config.name, target, deadline)
            for key in keys:
                outgoing.routes.setdefault(key, key in self._lost)

    def _announce(self, key: RouteKey, now: float, *, urgent: bool) -> None:
        """A triggered update of one key on every interface; urgent ones are sent twice."""
        deadline = now + self.config.urgent_jitter * self.config.random()
        for iface in self._interfaces.values():
            for target in self._targets(iface):
                self._outgoing(iface.config.name, target, deadline).routes[key] = True
        if urgent:
            resend = now + self.config.resend_delay
            heapq.heappush(self._resends, (resend, next(self._counter), key))

    def _announce_to(
        self, iface: _Interface, destination: IPAddress, key: RouteKey, now: float, *, poison: bool
    ) -> None:
        deadline = now + self.config.urgent_jitter * self.config.random()
        outgoing = self._outgoing(iface.config.name, destination, deadline)
        outgoing.routes[key] = outgoing.routes.get(key, False) or poison

    def datagrams_to_send(self, now: float) -> list[tuple[str, IPAddress, bytes]]:
        """The datagrams due by ``now``: ``(interface, destination, payload)``."""
        self._now = now
        due = [name for name, outgoing in self._outbox.items() if outgoing.deadline <= now]
        datagrams: list[tuple[str, IPAddress, bytes]] = []
        for name in due:
            outgoing = self._outbox.pop(name)
            interface, destination = name
            iface = self._interfaces.get(interface)
            if iface is None:
                continue
            routes = [
                r
                for key, poison in outgoing.routes.items()
                if (r := self._announcement(iface, key, poison, destination, now)) is not None
            ]
            for payload in _pack(outgoing.tlvs, routes, iface.config):
                datagrams.append((interface, destination, payload))
        return datagrams

    def _announcement(
        self, iface: _Interface, key: RouteKey, poison: bool, destination: IPAddress, now: float
    ) -> Route | None:
        """What we announce for a key on an interface right now (None: nothing)."""
        prefix, source = key
        interval = _centiseconds(iface.config.update_interval)
        next_hop: IPAddress | None = iface.config.ipv4 if isinstance(prefix, IPv4Network) else None
        retraction = Route(prefix, self.seqno, INFINITY, interval, None, None, source)
        if not self.config.redistribute(iface.config.name, prefix, source):
            return retraction if poison else None
        if key in self._local:
            router_id, seqno, metric = self.router_id, self.seqno, self._local[key]
        else:
            entry = self._table.selected(key)
            if entry is None or entry.metric >= INFINITY:
                return retraction if poison else None
            same_link = entry.neighbour.interface == iface.config.name
            if iface.config.split_horizon and same_link:
                return retraction if poison else None
            if not iface.config.multicast and same_link and entry.neighbour.address == destination:
                return retraction if poison else None  # split horizon per peer
            router_id, seqno, metric = entry.router_id, entry.seqno, entry.metric
        self._sources.announced(key, router_id, seqno, metric, now)
        return Route(prefix, seqno, metric, interval, router_id, next_hop, source)

    def _interface(self, name: str) -> _Interface:
        iface = self._interfaces.get(name)
        if iface is None:
            raise ValueError(f"unknown interface {name}")
        return iface

    def _neighbour(self, nid: NeighbourId) -> Neighbour | None:
        iface = self._interfaces.get(nid.interface)
        return iface.neighbours.get(nid.address) if iface is not None else None


def _selection_of(entry: RouteEntry) -> tuple[NeighbourId, IPAddress, bytes, int, int]:
    return (entry.neighbour, entry.next_hop, entry.router_id, entry.seqno, entry.metric)


def _centiseconds(seconds: float) -> int:
    return min(max(round(seconds * 100), 1), 0xFFFF)


def _check_source(prefix: IPNetwork, source: IPNetwork | None) -> None:
    if source is None:
        return
    if source.version != prefix.version:
        raise ValueError(f"source {source} and prefix {prefix} are of different families")
    if source.prefixlen == 0:
        raise ValueError("a source prefix of length 0 is an ordinary route: pass None")


def _size(tlvs: list[Tlv]) -> int:
    return sum(len(encode_tlv(tlv)) for tlv in tlvs)


def _pack(tlvs: list[Tlv], routes: list[Route], config: InterfaceConfig) -> Iterator[bytes]:
    """Pack TLVs, then Updates for ``routes``, into datagrams of at most ``config.mtu``."""
    budget = config.mtu - HEADER.size
    body: list[Tlv] = []
    size = 0
    for tlv in tlvs:
        length = len(encode_tlv(tlv))
        if body and size + length > budget:
            yield encode_packet(Packet(tuple(body)))
            body, size = [], 0
        body.append(tlv)
        size += length
    remaining = sorted(
        routes,
        key=lambda r: (r.prefix.version, r.prefix.network_address.packed, r.prefix.prefixlen),
    )
    via_ipv6 = config.ipv4 is None
    guess = 32
    while remaining:
        count, chunk, length = _fit(remaining, budget - size, guess, via_ipv6=via_ipv6)
        if count == 0:
            if body:
                yield encode_packet(Packet(tuple(body)))
                body, size = [], 0
                continue
            count, chunk = 1, build_updates(remaining[:1], ipv4_via_ipv6=via_ipv6)
            length = _size(chunk)  # alone and still too big: sent anyway, the MTU decides
        body.extend(chunk)
        size += length
        remaining = remaining[count:]
        guess = count
        if remaining:
            yield encode_packet(Packet(tuple(body)))
            body, size = [], 0
    if body:
        yield encode_packet(Packet(tuple(body)))


def _fit(
    routes: list[Route], budget: int, guess: int, *, via_ipv6: bool
) -> tuple[int, list[Tlv], int]:
    """How many routes from the head of ``routes`` fit in ``budget`` bytes of Updates.

    Returns the count, their TLVs and their size (0, [], 0 if not even one fits). Prefix
    compression makes sizes not quite additive, so counts are tried: doubling from
    ``guess`` (what fitted the previous packet) until one does not fit, then bisecting.
    Each try costs one ``build_updates`` of at most a packet's worth of routes.
    """
    fits, best, best_size = 0, [], 0
    too_many = len(routes) + 1
    count = max(1, min(guess, len(routes)))
    while True:
        chunk = build_updates(routes[:count], ipv4_via_ipv6=via_ipv6)
        length = _size(chunk)
        if length <= budget:
            fits, best, best_size = count, chunk, length
        else:
            too_many = count
        if too_many - fits <= 1:
            return fits, best, best_size
        growing = too_many > len(routes)
        count = min(2 * count, len(routes)) if growing else (fits + too_many) // 2
