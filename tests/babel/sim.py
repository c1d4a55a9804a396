"""A deterministic network of Babel cores: fake clock, lossy links, no sockets.

Routers are numbered from 0; router ``i`` has router-id ``i + 1`` (8 bytes), the link-local
address ``fe80::<i + 1>`` and originates ``2001:db8:<i + 1>::/48``. Links join two routers
and can lose, duplicate, delay and reorder datagrams (reordering comes from a random delay
of up to ``jitter`` on top of ``delay``). Two ways of wiring:

- ``"wired"``: each link is a point-to-point interface ``to<j>`` on both ends, Hellos and
  Updates go to the multicast group;
- ``"unicast-peers"``: each router has one interface ``wg0`` and its link peers as
  neighbours, as on the WireGuard mesh.

The clock jumps from one event to the next (a datagram arriving, a core's timer), so idle
time costs nothing. After each event the optional ``check`` callback runs: the loop
detector of the tests hooks in there.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network

from meshd.babel.core import BabelCore, CoreConfig, InterfaceKind
from meshd.babel.neighbours import IPAddress
from meshd.babel.routes import Event, NeighbourId

INFINITY = 0xFFFF
HELD_AT_MOST = 128
"""Datagrams a held link keeps (wireguard-go stages up to 128 packets per peer)."""


class RoutingLoop(AssertionError):
    """Following next hops for one destination came back to a router already visited."""


def router_id(index: int) -> bytes:
    return (index + 1).to_bytes(8, "big")


def address(index: int) -> IPv6Address:
    return IPv6Address(f"fe80::{index + 1:x}")


def prefix(index: int) -> IPv6Network:
    return IPv6Network(f"2001:db8:{index + 1:x}::/48")


def index_of(addr: IPAddress) -> int:
    return int(addr) - int(IPv6Address("fe80::")) - 1


@dataclass
class Link:
    """Two routers joined, with the faults of the path between them."""

    a: int
    b: int
    loss: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.001
    jitter: float = 0.0
    up: bool = True
    held: list[tuple[int, str, IPv6Address, bytes]] | None = None
    """While held (not None), what is sent over the link waits here, the latest
    ``HELD_AT_MOST``, and goes out when it is released: WireGuard's staged packets, kept
    while a handshake cannot complete and sent once one does."""

    def other(self, end: int) -> int:
        return self.b if end == self.a else self.a


@dataclass(order=True)
class _Delivery:
    time: float
    order: int
    to: int = field(compare=False)
    interface: str = field(compare=False)
    source: IPv6Address = field(compare=False)
    payload: bytes = field(compare=False)


class Sim:
    """N Babel cores on a fake clock and a fake network."""

    def __init__(
        self,
        n: int,
        links: Iterable[tuple[int, int]],
        *,
        kind: InterfaceKind = "wired",
        hello_interval: float = 1.0,
        seed: int = 0,
        loss: float = 0.0,
        duplicate: float = 0.0,
        delay: float = 0.001,
        jitter: float = 0.0,
        config: Callable[[int], CoreConfig] | None = None,
        originate: bool = True,
        interface_options: dict[str, object] | None = None,
    ) -> None:
        self.n = n
        self.kind = kind
        self.now = 0.0
        self.rng = random.Random(seed)
        self.links: dict[frozenset[int], Link] = {}
        for a, b in links:
            self.links[frozenset((a, b))] = Link(a, b, loss, duplicate, delay, jitter)
        self.routers: list[BabelCore] = []
        self.events: list[list[Event]] = [[] for _ in range(n)]
        self.check: Callable[[Sim], None] | None = None
        self.stopped: set[int] = set()
        self.steps = 0
        self.datagrams = 0
        self._queue: list[_Delivery] = []
        self._order = itertools.count()
        options = interface_options or {}
        for i in range(n):
            core_random = random.Random(seed * 7919 + i).random
            base = config(i) if config is not None else CoreConfig()
            core = BabelCore(router_id(i), _with_random(base, core_random))
            if kind == "unicast-peers":
                core.add_interface(
                    "wg0",
                    kind=kind,
                    hello_interval=hello_interval,
                    link_local=address(i),
                    **options,  # type: ignore[arg-type]
                )
                for link in self.links.values():
                    if i in (link.a, link.b):
                        core.add_neighbour("wg0", address(link.other(i)))
            else:
                for link in self.links.values():
                    if i in (link.a, link.b):
                        core.add_interface(
                            f"to{link.other(i)}",
                            kind=kind,
                            hello_interval=hello_interval,
                            link_local=address(i),
                            **options,  # type: ignore[arg-type]
                        )
            if originate:
                core.originate(prefix(i))
            self.routers.append(core)
        self._timers: list[float | None] = [core.timer() for core in self.routers]

    # --- topology ---------------------------------------------------------------------------

    def link(self, a: int, b: int) -> Link:
        return self.links[frozenset((a, b))]

    def cut(self, a: int, b: int) -> None:
        self.link(a, b).up = False

    def restore(self, a: int, b: int) -> None:
        self.link(a, b).up = True

    def hold(self, a: int, b: int) -> None:
        """What is sent over the link waits until :meth:`release` (a WireGuard peer whose
        handshake cannot complete stages its packets)."""
        self.link(a, b).held = []

    def release(self, a: int, b: int) -> None:
        """``a``'s handshake with ``b`` completes: what ``a`` staged arrives at ``b`` after
        the link's delay, and what ``b`` staged a delay later (a WireGuard responder sends
        its first data once the initiator's has confirmed the session), each in order."""
        link = self.link(a, b)
        held, link.held = link.held or [], None
        for to, remote, source, payload in held:
            when = self.now + (1 if to == b else 2) * link.delay
            heapq.heappush(
                self._queue, _Delivery(when, next(self._order), to, remote, source, payload)
            )

    def distances(self, source: int) -> dict[int, int]:
        """Hop counts from ``source`` over the links that are up."""
        seen = {source: 0}
        frontier = [source]
        while frontier:
            nxt = []
            for node in frontier:
                for link in self.links.values():
                    if link.up and node in (link.a, link.b):
                        other = link.other(node)
                        if other not in seen:
                            seen[other] = seen[node] + 1
                            nxt.append(other)
            frontier = nxt
        return seen

    # --- running ----------------------------------------------------------------------------

    def stop(self, i: int, *, farewell: bool = True) -> None:
        """Router ``i`` stops: with its farewell (as the daemon's shell stops it), or
        silently (a crash, a power cut). It hears and sends nothing after."""
        if farewell:
            self._send(i, self.routers[i].farewell(self.now))
        self.stopped.add(i)
        self._timers[i] = None

    def _flush(self, i: int) -> None:
        core = self.routers[i]
        self._send(i, core.datagrams_to_send(self.now))
        while (event := core.next_event()) is not None:
            self.events[i].append(event)
        self._timers[i] = None if i in self.stopped else core.timer()

    def _send(self, i: int, datagrams: Iterable[tuple[str, IPAddress, bytes]]) -> None:
        for interface, destination, payload in datagrams:
            self.datagrams += 1
            if self.kind == "unicast-peers":
                key = frozenset((i, index_of(destination)))
                link = self.links.get(key)
                if link is None:
                    continue
                to, remote = index_of(destination), "wg0"
            else:
                to = int(interface.removeprefix("to"))
                link = self.link(i, to)
                remote = f"to{i}"
            copies = 2 if self.rng.random() < link.duplicate else 1
            for _ in range(copies):
                if not link.up or self.rng.random() < link.loss:
                    continue
                if link.held is not None:
                    link.held.append((to, remote, address(i), payload))
                    del link.held[:-HELD_AT_MOST]
                    continue
                when = self.now + link.delay + self.rng.random() * link.jitter
                heapq.heappush(
                    self._queue,
                    _Delivery(when, next(self._order), to, remote, address(i), payload),
                )

    def step(self, until: float) -> bool:
        """Process the next event if it happens by ``until``; False if there is none."""
        best_core, best_time = -1, float("inf")
        for i, deadline in enumerate(self._timers):
            if deadline is not None and deadline < best_time:
                best_core, best_time = i, deadline
        net_time = self._queue[0].time if self._queue else float("inf")
        if min(best_time, net_time) > until:
            return False
        if net_time < best_time:
            delivery = heapq.heappop(self._queue)
            self.now = max(self.now, delivery.time)
            link = self.links.get(frozenset((delivery.to, index_of(delivery.source))))
            if link is not None and link.up and delivery.to not in self.stopped:
                self.routers[delivery.to].receive(
                    delivery.interface, delivery.source, delivery.payload, self.now
                )
            self._flush(delivery.to)
        else:
            self.now = max(self.now, best_time)
            self.routers[best_core].handle_timer(self.now)
            self._flush(best_core)
        self.steps += 1
        if self.check is not None:
            self.check(self)
        return True

    def run(self, duration: float) -> None:
        """Run for ``duration`` simulated seconds."""
        until = self.now + duration
        while self.step(until):
            pass
        self.now = until

    def run_until(self, predicate: Callable[[Sim], bool], limit: float) -> float:
        """Run until ``predicate`` holds; return the simulated time it took (or raise)."""
        start = self.now
        until = start + limit
        while not predicate(self):
            if not self.step(until):
                raise AssertionError(f"not reached within {limit} s (at {self.now:.3f} s)")
        return self.now - start

    # --- what the routers believe -----------------------------------------------------------

    def next_hop(self, i: int, destination: int) -> int | None:
        """The router ``i`` forwards to for ``destination``'s prefix (None: no route)."""
        view = self.routers[i].route(prefix(destination))
        if view is None or view.neighbour is None:
            return None
        return self.neighbour_index(i, view.neighbour)

    def neighbour_index(self, i: int, neighbour: NeighbourId) -> int:
        return index_of(neighbour.address)

    def metric(self, i: int, destination: int) -> int:
        view = self.routers[i].route(prefix(destination))
        return INFINITY if view is None else view.metric

    def assert_loop_free(self) -> None:
        """Follow next hops for every destination from every router; raise on a cycle."""
        for destination in range(self.n):
            for start in range(self.n):
                seen = [start]
                here = start
                while here != destination:
                    nxt = self.next_hop(here, destination)
                    if nxt is None:
                        break
                    if nxt in seen:
                        path = " -> ".join(map(str, [*seen, nxt]))
                        raise RoutingLoop(f"loop towards {destination} at t={self.now:.3f}: {path}")
                    seen.append(nxt)
                    here = nxt

    def connected(self) -> bool:
        """Every router reaches every reachable prefix by following next hops (whatever the
        metrics, which RTT measurements make irregular)."""
        for i in range(self.n):
            hops = self.distances(i)
            for j in range(self.n):
                here, steps = i, 0
                while here != j and here is not None and steps <= self.n:
                    here, steps = self.next_hop(here, j), steps + 1  # type: ignore[assignment]
                if (here == j) != (j in hops):
                    return False
        return True

    def converged(self, cost: int = 96) -> bool:
        """Every router reaches every reachable prefix with a shortest-path metric."""
        for i in range(self.n):
            hops = self.distances(i)
            for j in range(self.n):
                if i == j:
                    continue
                metric = self.metric(i, j)
                if j not in hops:
                    if metric < INFINITY:
                        return False
                elif metric != hops[j] * cost:
                    return False
        return True


def _with_random(config: CoreConfig, source: Callable[[], float]) -> CoreConfig:
    from dataclasses import replace

    return replace(config, random=source)
