"""The Babel route table, route selection and the events a core reports (RFC 8966 3.2.6, 3.6).

The table holds, per route key ``(prefix, source prefix)``, one entry per neighbour that
announced the key: the originator's router-id, the seqno and metric it announced (the
*refmetric*), the next hop, and when the entry expires. An entry's metric is its refmetric
plus the cost of the link to the neighbour, capped at infinity.

Selection (:func:`choose`) considers only entries with a finite metric that are feasible
against our source table. Among those it takes the smallest metric, but keeps the current
route unless another one is better by more than ``hysteresis``: small fluctuations of
RTT-based costs then do not make routes flap. An exact tie goes to the lowest neighbour
(interface, then address), even over the selected route, so that the choice does not depend
on which announcement came first. A route heard from its originator itself (where the
``carries`` hook vouches for it: on the mesh) comes before all of them while it is finite.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from meshd.babel.numbers import INFINITY
from meshd.babel.sources import IPNetwork, RouteKey

IPAddress = IPv4Address | IPv6Address


HEAP_SLACK = 4
"""A deadline heap is rebuilt from what it times once it holds this many entries a timed
one (the obsolete ones otherwise leave only as they surface)."""
HEAP_FLOOR = 64


@dataclass(frozen=True, slots=True)
class NeighbourId:
    """A neighbour: an address seen (or configured) on one of our interfaces."""

    interface: str
    address: IPAddress


def _check_metric(metric: int) -> None:
    if not 0 <= metric <= INFINITY:
        raise ValueError(f"metric {metric} outside 0..65535")


def _check_router_id(router_id: bytes) -> None:
    if len(router_id) != 8:
        raise ValueError(f"router-id must be 8 bytes, not {len(router_id)}")


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteInstalled:
    """We now have a route for a key we had none for."""

    prefix: IPNetwork
    source: IPNetwork | None
    next_hop: IPAddress
    neighbour: NeighbourId
    metric: int
    router_id: bytes

    def __post_init__(self) -> None:
        _check_metric(self.metric)
        _check_router_id(self.router_id)


@dataclass(frozen=True, slots=True)
class RouteChanged:
    """The selected route of a key moved (next hop, neighbour, originator) or its metric did."""

    prefix: IPNetwork
    source: IPNetwork | None
    next_hop: IPAddress
    neighbour: NeighbourId
    metric: int
    router_id: bytes

    def __post_init__(self) -> None:
        _check_metric(self.metric)
        _check_router_id(self.router_id)


@dataclass(frozen=True, slots=True)
class RouteRetracted:
    """We no longer have any route for a key."""

    prefix: IPNetwork
    source: IPNetwork | None


@dataclass(frozen=True, slots=True)
class NeighbourUp:
    """A neighbour became usable: both directions work; ``cost`` is the link cost."""

    neighbour: NeighbourId
    cost: int

    def __post_init__(self) -> None:
        if not 0 < self.cost < INFINITY:
            raise ValueError(f"a neighbour that is up has a finite cost, not {self.cost}")


@dataclass(frozen=True, slots=True)
class NeighbourDown:
    """A neighbour became unusable (lost Hellos or IHUs) or was removed."""

    neighbour: NeighbourId


Event = RouteInstalled | RouteChanged | RouteRetracted | NeighbourUp | NeighbourDown


# --- the table ------------------------------------------------------------------------------


@dataclass(slots=True)
class RouteEntry:
    """One neighbour's announcement of one key, as we keep it."""

    prefix: IPNetwork
    source: IPNetwork | None
    neighbour: NeighbourId
    router_id: bytes
    seqno: int
    refmetric: int
    next_hop: IPAddress
    interval: float
    """The announced update interval, in seconds."""
    expires: float
    cost: int
    """The cost of the link to :attr:`neighbour` when last computed."""
    own: bool = False
    """Heard from its originator itself (``Carrier.OWN``): always feasible, and chosen over
    every carried route while its metric is finite."""

    @property
    def key(self) -> RouteKey:
        return (self.prefix, self.source)

    @property
    def metric(self) -> int:
        if self.refmetric >= INFINITY or self.cost >= INFINITY:
            return INFINITY
        return min(self.refmetric + self.cost, INFINITY)


def _order(entry: RouteEntry) -> tuple[int, str, int, int]:
    address = entry.neighbour.address
    return (entry.metric, entry.neighbour.interface, address.version, int(address))


def choose(
    entries: Iterable[RouteEntry],
    current: RouteEntry | None,
    is_feasible: Callable[[RouteEntry], bool],
    hysteresis: int,
    relay_rank: Callable[[RouteEntry], bytes | None] | None = None,
) -> RouteEntry | None:
    """The entry to select: the best feasible finite one, with hysteresis for ``current``.

    With ``relay_rank``: when the best one goes through a ranked neighbour (a relay between
    two members), the ranked entry of lowest rank, whatever the metrics and whatever was
    selected. Both ends of a pair rank the relays alike, so they use the same one, which
    WireGuard's receive filter needs; metrics and hysteresis, which differ per end, would
    let each end keep its own. Any feasible route keeps Babel loop-free (RFC 8966 3.5.1).

    Before all that, a finite route heard from its originator itself (``own``) is chosen
    over every carried one: a carrier can claim any seqno and metric, and took a member's
    traffic from its own direct path with them. Such a route cannot loop (its next hop is
    the destination), so it needs no feasibility.
    """
    finite = [entry for entry in entries if entry.metric < INFINITY]
    own = [entry for entry in finite if entry.own]
    if own:
        return min(own, key=_order)
    candidates = [entry for entry in finite if is_feasible(entry)]
    if not candidates:
        return None
    best = min(candidates, key=_order)
    if relay_rank is not None and relay_rank(best) is not None:
        ranked = [(rank, entry) for entry in candidates if (rank := relay_rank(entry)) is not None]
        return min(ranked, key=lambda pair: (pair[0], _order(pair[1])))[1]
    keep = current is not None and any(entry is current for entry in candidates)
    if keep and current is not None and best.metric < current.metric <= best.metric + hysteresis:
        return current
    # An exact tie goes to the lowest neighbour, whatever was selected: two members then
    # pick the same relay for each other, which WireGuard's receive filter needs.
    return best


@dataclass(slots=True)
class RouteTable:
    """Entries by key and neighbour, the selected entry of each key, expiry order."""

    _routes: dict[RouteKey, dict[NeighbourId, RouteEntry]] = field(default_factory=dict)
    _selected: dict[RouteKey, RouteEntry] = field(default_factory=dict)
    _by_neighbour: dict[NeighbourId, dict[RouteKey, None]] = field(default_factory=dict)
    """Keys per neighbour, in insertion order (a dict, not a set: a key's hash holds
    ``hash(None)``, which differs between processes, and the order sets what follows)."""
    _expiry: list[tuple[float, int, RouteKey, NeighbourId]] = field(default_factory=list)
    """Expiries in order; one an update, an entry's old ones dropped as they surface, and the
    whole rebuilt from the entries once it holds :data:`HEAP_SLACK` times as many (a
    neighbour repeating one Update 5,000 times a datagram, each with a long interval, left
    200,000 of them behind its 2 routes)."""
    _counter: Iterator[int] = field(default_factory=itertools.count)
    _count: int = 0

    def __len__(self) -> int:
        return self._count

    def keys(self) -> list[RouteKey]:
        return list(self._routes)

    def entries(self, key: RouteKey) -> list[RouteEntry]:
        return list(self._routes.get(key, {}).values())

    def entry(self, key: RouteKey, neighbour: NeighbourId) -> RouteEntry | None:
        return self._routes.get(key, {}).get(neighbour)

    def all_entries(self) -> Iterator[RouteEntry]:
        for entries in self._routes.values():
            yield from entries.values()

    def keys_via(self, neighbour: NeighbourId) -> list[RouteKey]:
        return list(self._by_neighbour.get(neighbour, ()))

    def count_via(self, neighbour: NeighbourId) -> int:
        """How many entries a neighbour holds (O(1))."""
        return len(self._by_neighbour.get(neighbour, ()))

    def put(self, entry: RouteEntry) -> None:
        """Insert or replace an entry and (re)arm its expiry."""
        key = entry.key
        entries = self._routes.setdefault(key, {})
        self._count += entry.neighbour not in entries
        entries[entry.neighbour] = entry
        self._by_neighbour.setdefault(entry.neighbour, {})[key] = None
        heapq.heappush(self._expiry, (entry.expires, next(self._counter), key, entry.neighbour))
        if len(self._expiry) > HEAP_SLACK * max(HEAP_FLOOR, self._count):
            self._expiry = [
                (e.expires, next(self._counter), e.key, e.neighbour) for e in self.all_entries()
            ]
            heapq.heapify(self._expiry)

    def remove(self, key: RouteKey, neighbour: NeighbourId) -> RouteEntry | None:
        entries = self._routes.get(key)
        if entries is None or neighbour not in entries:
            return None
        entry = entries.pop(neighbour)
        self._count -= 1
        if not entries:
            del self._routes[key]
        keys = self._by_neighbour.get(neighbour)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self._by_neighbour[neighbour]
        if self._selected.get(key) is entry:
            del self._selected[key]
        return entry

    def selected(self, key: RouteKey) -> RouteEntry | None:
        return self._selected.get(key)

    def selected_keys(self) -> list[RouteKey]:
        return list(self._selected)

    def set_selected(self, key: RouteKey, entry: RouteEntry | None) -> None:
        if entry is None:
            self._selected.pop(key, None)
        else:
            self._selected[key] = entry

    def _clean(self) -> None:
        while self._expiry:
            expires, _, key, neighbour = self._expiry[0]
            entry = self.entry(key, neighbour)
            if entry is not None and entry.expires == expires:
                return
            heapq.heappop(self._expiry)

    def next_expiry(self) -> float | None:
        """When the next entry expires."""
        self._clean()
        return self._expiry[0][0] if self._expiry else None

    def pop_expired(self, now: float) -> list[RouteEntry]:
        """The entries whose hold time has run out; the caller removes them."""
        expired: list[RouteEntry] = []
        while True:
            self._clean()
            if not self._expiry or self._expiry[0][0] > now:
                return expired
            _, _, key, neighbour = heapq.heappop(self._expiry)
            entry = self.entry(key, neighbour)
            if entry is not None:
                expired.append(entry)
