"""Real Babel cores (:class:`meshd.babel.core.BabelCore`) on the simulator's links.

Each node is one core with one ``unicast-peers`` interface ``wg0``, as on the WireGuard mesh;
its neighbours are the nodes it has a Babel link to (:class:`BabelNet` takes the links).
Datagrams cross a link with a one-way latency drawn from the simulator's normal law
(:class:`meshd.sim.params.Links`: mean, sd, floor) and are lost with its loss rate: Babel
rides on UDP inside WireGuard, so a lost datagram is lost (no TCP retransmission here).
A node that fails stops sending, receiving and running its timers; a cut link drops
everything both ways. The daemon removes a neighbour only on a membership change, so a
failure is noticed by Babel alone (missed Hellos, lapsed IHUs).

Time jumps from event to event: a heap of deliveries and core timers, ordered by time and
then by a counter, so ties break the same way every run. One ``random.Random(seed)`` draws
the latencies and losses; each core gets its own seeded jitter source. The SHA-256 of the
trace (every delivery and every route event) is :attr:`BabelNet.digest`.

Every route event a core emits (installed, changed, retracted) updates the forwarding table
:attr:`BabelNet.fwd` (what the shell would install: prefix -> next hop) and is handed to
:attr:`BabelNet.on_route`, where the loop check of :mod:`meshd.sim.babel_relays` runs, at the
instant of the change, before anything else happens.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv6Address, IPv6Network

from meshd.babel.core import BabelCore, CoreConfig
from meshd.babel.neighbours import IPAddress
from meshd.babel.routes import RouteChanged, RouteInstalled, RouteRetracted
from meshd.babel.sources import IPNetwork
from meshd.sim.params import Links

INTERFACE = "wg0"
_DELIVER = 0
_TIMER = 1
_LINK_LOCAL = int(IPv6Address("fe80::"))
_OVERLAY = int(IPv6Address("fd5a:5a5a:5a5a::"))
_MEMBERS: dict[IPNetwork, int] = {}


def _digest(what: bytes, node: int) -> bytes:
    return hashlib.sha256(b"meshd-sim:%s:%d" % (what, node)).digest()[:8]


def router_id(node: int) -> bytes:
    """Like the daemon's (SHA-256 of the member's key): unrelated to its overlay address,
    so every Update carries a Router-Id, as on the mesh."""
    return _digest(b"router-id", node)


def link_local(node: int) -> IPv6Address:
    """A member's address on the mesh interface (the daemon derives it from its key)."""
    return IPv6Address(_LINK_LOCAL + node + 1)


def node_of(address: IPAddress) -> int:
    return int(address) - _LINK_LOCAL - 1


def overlay(node: int) -> IPv6Network:
    """A member's overlay /128, the route Babel carries for it: the network's /48, subnet
    0 and a 64-bit interface id from its key, as meshd.addressing makes it."""
    prefix = IPv6Network((_OVERLAY + int.from_bytes(_digest(b"overlay", node), "big"), 128))
    _MEMBERS[prefix] = node
    return prefix


def member_of(prefix: IPNetwork) -> int:
    return _MEMBERS[prefix]


@dataclass(slots=True)
class Counters:
    """What one node sent and received on the mesh interface."""

    sent: int = 0
    received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def copy(self) -> Counters:
        return Counters(self.sent, self.received, self.bytes_sent, self.bytes_received)


@dataclass(slots=True)
class BabelNode:
    index: int
    core: BabelCore
    neighbours: list[int]
    up: bool = True
    timer_version: int = 0
    counters: Counters = field(default_factory=Counters)


RouteHook = Callable[["BabelNet", int, int, int | None], None]
"""``on_route(net, node, destination, next_hop)``: a node's installed next hop for a
destination's overlay /128 changed (None: no route any more)."""


class BabelNet:
    """Babel cores joined by simulated links; ``links`` are pairs of node indexes."""

    def __init__(
        self,
        size: int,
        links: Iterable[tuple[int, int]],
        seed: int,
        *,
        wan: Links | None = None,
        hello_interval: float = 4.0,
        config: Callable[[int], CoreConfig] | None = None,
        originate: Callable[[int], bool] | None = None,
        rest_pace: int = 1,
    ) -> None:
        self.rng = random.Random(seed)  # noqa: S311 (a reproducible run, not secrets)
        self.wan = wan or Links()
        self.now = 0.0
        self.links = {(min(a, b), max(a, b)) for a, b in links if a != b}
        self.cut: set[tuple[int, int]] = set()
        peers: list[list[int]] = [[] for _ in range(size)]
        for a, b in sorted(self.links):
            peers[a].append(b)
            peers[b].append(a)
        self.nodes: list[BabelNode] = []
        for i in range(size):
            base = config(i) if config is not None else CoreConfig()
            jitter = random.Random(seed * 7919 + i).random  # noqa: S311
            core = BabelCore(router_id(i), replace(base, random=jitter))
            core.add_interface(
                INTERFACE,
                kind="unicast-peers",
                hello_interval=hello_interval,
                link_local=link_local(i),
                rest_pace=rest_pace,
            )
            for j in peers[i]:
                core.add_neighbour(INTERFACE, link_local(j))
            if originate is None or originate(i):
                core.originate(overlay(i))
            self.nodes.append(BabelNode(i, core, peers[i]))
        self.fwd: list[dict[int, int]] = [{} for _ in range(size)]
        """Per node, destination -> next hop, from the route events (the installed routes)."""
        self.route_changes = 0
        self.on_route: RouteHook | None = None
        self._queue: list[tuple[float, int, int, int, int, bytes]] = []
        self._order = itertools.count()
        self._trace = hashlib.sha256()
        self.steps = 0
        for node in self.nodes:
            self._arm(node)

    # --- the trace ----------------------------------------------------------------------------

    @property
    def digest(self) -> str:
        return self._trace.hexdigest()

    def _note(self, *values: object) -> None:
        self._trace.update(repr(values).encode())

    # --- faults -------------------------------------------------------------------------------

    def fail(self, node: int) -> None:
        """The node stops: no datagram in or out, no timer, its routes gone from the
        forwarding plane (it forwards nothing any more)."""
        self.nodes[node].up = False
        self._note("fail", node, round(self.now, 9))
        for destination in sorted(self.fwd[node]):
            self._set(node, destination, None)

    def cut_link(self, a: int, b: int) -> None:
        self.cut.add((min(a, b), max(a, b)))

    def link_up(self, a: int, b: int) -> bool:
        key = (min(a, b), max(a, b))
        return key in self.links and key not in self.cut

    # --- running ------------------------------------------------------------------------------

    def _arm(self, node: BabelNode) -> None:
        deadline = node.core.timer()
        node.timer_version += 1
        if deadline is not None and node.up:
            heapq.heappush(
                self._queue,
                (
                    max(deadline, self.now),
                    next(self._order),
                    _TIMER,
                    node.index,
                    node.timer_version,
                    b"",
                ),
            )

    def _flush(self, node: BabelNode) -> None:
        core, i = node.core, node.index
        for _interface, destination, payload in core.datagrams_to_send(self.now):
            to = node_of(destination)
            node.counters.sent += 1
            node.counters.bytes_sent += len(payload)
            if not self.link_up(i, to) or self.rng.random() < self.wan.loss:
                continue
            delay = max(self.wan.floor, self.rng.gauss(self.wan.latency, self.wan.jitter))
            heapq.heappush(
                self._queue, (self.now + delay, next(self._order), _DELIVER, to, i, payload)
            )
        while (event := core.next_event()) is not None:
            if isinstance(event, RouteInstalled | RouteChanged):
                self._set(i, member_of(event.prefix), node_of(event.neighbour.address))
            elif isinstance(event, RouteRetracted):
                self._set(i, member_of(event.prefix), None)
        self._arm(node)

    def _set(self, node: int, destination: int, next_hop: int | None) -> None:
        table = self.fwd[node]
        if table.get(destination) == next_hop:
            return
        if next_hop is None:
            del table[destination]
        else:
            table[destination] = next_hop
        self.route_changes += 1
        self._note("route", node, destination, next_hop, round(self.now, 9))
        if self.on_route is not None:
            self.on_route(self, node, destination, next_hop)

    def step(self, until: float) -> bool:
        """Handle the next event if it falls by ``until``; False if there is none."""
        while self._queue:
            when, _, kind, index, arg, payload = self._queue[0]
            if when > until:
                return False
            heapq.heappop(self._queue)
            node = self.nodes[index]
            if kind == _TIMER and (arg != node.timer_version or not node.up):
                continue  # a stale timer, or a failed node's
            self.now = max(self.now, when)
            self.steps += 1
            if kind == _TIMER:
                node.core.handle_timer(self.now)
            else:
                if not node.up or not self.link_up(index, arg):
                    continue
                node.counters.received += 1
                node.counters.bytes_received += len(payload)
                self._note("rx", index, arg, len(payload), round(self.now, 9))
                node.core.receive(INTERFACE, link_local(arg), payload, self.now)
            self._flush(node)
            return True
        return False

    def act(self, node: int, action: Callable[[BabelCore, float], None]) -> None:
        """Run ``action(core, now)`` on an up node now (e.g. a Route Request the daemon
        would send), and send what it queued."""
        target = self.nodes[node]
        if target.up:
            action(target.core, self.now)
            self._flush(target)

    def run(self, duration: float) -> None:
        until = self.now + duration
        while self.step(until):
            pass
        self.now = until

    def run_until(self, done: Callable[[BabelNet], bool], limit: float) -> float | None:
        """Run until ``done`` holds (checked after every event); the simulated time it took,
        or None if ``limit`` seconds passed first."""
        start = self.now
        until = start + limit
        while not done(self):
            if not self.step(until):
                self.now = until
                return None
        return self.now - start

    def counters(self) -> list[Counters]:
        return [node.counters.copy() for node in self.nodes]
