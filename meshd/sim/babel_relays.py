"""Babel off the full mesh: relays, a relay failing, and no routing loop at any instant.

The design measured here (docs/performance.md, "Babel off the full mesh"): members with a
direct WireGuard path to each other need no Babel route between them (the overlay /128 sits
on the member's own peer). Babel runs only where a direct path is missing: its neighbours
are the relays (and gateways), and the members that lack a direct path to some others.
Modelled mesh: of ``members``, the first ``relays`` are public relays (``--relay``), the next
``nat_share`` of the members sit behind symmetric NAT, and every other pair has a direct
path. Two members behind symmetric NAT reach each other only through a relay, so:

- the Babel links are relay-relay and relay-NATed member (each NATed member is a Babel
  neighbour of every relay; the relays of each other);
- every relay and NATed member originates its overlay /128; a relay announces what it
  selected, a NATed member only its own /128 (the daemon's ``_redistribute``: a member that
  does not relay is never a next hop);
- a route to a member's /128 through a relay is chosen by the pair's relay rank (the
  daemon's ``relay_rank`` hook: the same relay at both ends, for WireGuard's receive
  filter), here SHA-256 of the two members' and the relay's numbers;
- the other members (public, or behind NATs that punch) run no Babel on the mesh at all.

A pair is *usable* when both ends' installed next hops lead to the other end through nodes
that are up, and the two paths mirror each other hop by hop (every hop's WireGuard peer holds
the sender's /128, so the receive filter passes the packet). The loop check runs at every
route change (:attr:`meshd.sim.babel_net.BabelNet.on_route`): it follows the next hops from
the node whose route changed towards that destination, and a node visited twice is a
routing loop (a new cycle in the next-hop graph of one destination must pass through the
one next hop that changed, so this sees every loop at the instant it forms).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from meshd.babel.config import RelayRank
from meshd.babel.core import CoreConfig
from meshd.babel.neighbours import IPAddress
from meshd.babel.sources import IPNetwork
from meshd.sim.babel_net import BabelNet, Counters, member_of, node_of, overlay
from meshd.sim.params import Links


class RoutingLoop(AssertionError):
    """Following installed next hops towards one destination came back to a node."""


@dataclass(frozen=True, slots=True)
class Design:
    """A mesh of ``members``: ``relays`` public relays and ``nat_share`` of the members
    behind symmetric NAT (at least 2); the rest have direct paths and run no Babel."""

    members: int
    nat_share: float = 0.10
    relays: int = 4

    @property
    def nated(self) -> int:
        return max(2, round(self.members * self.nat_share))

    @property
    def babel_nodes(self) -> int:
        return self.relays + self.nated

    def is_relay(self, node: int) -> bool:
        return node < self.relays

    def links(self) -> list[tuple[int, int]]:
        r, n = self.relays, self.babel_nodes
        out = [(a, b) for a in range(r) for b in range(a + 1, r)]
        out += [(a, b) for a in range(r) for b in range(r, n)]
        return out

    def pairs(self) -> list[tuple[int, int]]:
        """Every pair of NATed members (no direct path: Babel's business)."""
        first, n = self.relays, self.babel_nodes
        return [(a, b) for a in range(first, n) for b in range(a + 1, n)]


def pair_rank(own: int, other: int, relay: int) -> bytes:
    """The relay's rank for the pair, the same at both ends (as meshd.mesh.relay_pair)."""
    low, high = sorted((own, other))
    return hashlib.sha256(b"%d:%d:%d" % (low, high, relay)).digest()


def core_config(design: Design, node: int) -> CoreConfig:
    """The daemon's hooks for one node: relays carry routes, others only their own /128;
    routes through a relay are ranked per pair."""
    own = overlay(node)

    def redistribute(interface: str, prefix: IPNetwork, source: IPNetwork | None) -> bool:
        return design.is_relay(node) or (prefix == own and source is None)

    return CoreConfig(redistribute=redistribute, relay_rank=ranked(node, design.is_relay))


def ranked(node: int, is_relay: Callable[[int], bool]) -> RelayRank:
    """The daemon's ``relay_rank`` hook for one node: a route to another member's /128
    through a relay (``is_relay``) ranked by :func:`pair_rank`, alike at both ends."""

    def relay_rank(
        prefix: IPNetwork, source: IPNetwork | None, interface: str, neighbour: IPAddress
    ) -> bytes | None:
        relay, other = node_of(neighbour), member_of(prefix)
        if source is not None or relay == other or not is_relay(relay):
            return None
        return pair_rank(node, other, relay)

    return relay_rank


def full_mesh_links(size: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(size) for b in range(a + 1, size)]


# --- following next hops ---------------------------------------------------------------------


def direct(design: Design | None, a: int, b: int) -> bool:
    """Whether a and b have a direct WireGuard path (only NATed pairs lack one)."""
    return design is None or design.is_relay(a) or design.is_relay(b)


def path(net: BabelNet, design: Design | None, a: int, b: int) -> list[int] | None:
    """The nodes a packet from a to b crosses (a and b included), following installed next
    hops and, where a node has no Babel route, its direct path; None when it is dropped."""
    hops, here = [a], a
    while here != b:
        if not net.nodes[here].up:
            return None
        nxt = net.fwd[here].get(b)
        if nxt is None:
            if not direct(design, here, b):
                return None
            nxt = b
        if nxt in hops:
            raise RoutingLoop(f"loop towards {b} at t={net.now:.3f}: {[*hops, nxt]}")
        hops.append(nxt)
        here = nxt
    return hops if net.nodes[b].up else None


def usable(net: BabelNet, design: Design | None, a: int, b: int) -> bool:
    """Both directions deliver, along mirrored paths (WireGuard's receive filter)."""
    there, back = path(net, design, a, b), path(net, design, b, a)
    return there is not None and back is not None and there == back[::-1]


def check_loop(net: BabelNet, node: int, destination: int) -> None:
    """Follow installed next hops from ``node`` towards ``destination``; raise on a cycle."""
    seen, here = {node}, node
    while here != destination:
        nxt = net.fwd[here].get(destination)
        if nxt is None:
            return
        if nxt in seen:
            raise RoutingLoop(f"loop towards {destination} at t={net.now:.3f} through {here}")
        seen.add(nxt)
        here = nxt


def assert_loop_free(net: BabelNet) -> None:
    """Every node towards every destination (the whole next-hop graph)."""
    for node in range(len(net.nodes)):
        for destination in sorted(net.fwd[node]):
            check_loop(net, node, destination)


# --- the relay failure -----------------------------------------------------------------------


@dataclass
class PairWatch:
    """The usability of every NATed pair, kept current at every route change, with the
    loop check at the same instant."""

    design: Design
    state: dict[tuple[int, int], bool] = field(default_factory=dict)
    changed_at: dict[tuple[int, int], float] = field(default_factory=dict)
    loop_checks: int = 0
    affected: set[tuple[int, int]] = field(default_factory=set)
    recovered: dict[tuple[int, int], float] = field(default_factory=dict)
    """Affected pairs: when each was first usable again after the failure."""
    watching: bool = False
    unusable: int = 0
    broken_unaffected: int = 0
    """Pairs that did not go through the failed relay and broke after the failure."""
    broken_again: int = 0
    """Affected pairs that broke again after they were rerouted."""

    def start(self, net: BabelNet) -> None:
        for pair in self.design.pairs():
            self.state[pair] = ok = usable(net, self.design, *pair)
            self.unusable += not ok
        net.on_route = self.on_route

    def watch(self, affected: set[tuple[int, int]]) -> None:
        self.affected = affected
        self.watching = True

    @property
    def pending(self) -> int:
        """Affected pairs not usable again yet."""
        return len(self.affected) - len(self.recovered)

    def on_route(self, net: BabelNet, node: int, destination: int, next_hop: int | None) -> None:
        self.loop_checks += 1
        check_loop(net, node, destination)
        if destination < self.design.relays:
            return  # a route to a relay: relays are reached directly anyway
        if self.design.is_relay(node):
            first = self.design.relays
            others = range(first, self.design.babel_nodes)
            pairs = [(min(x, destination), max(x, destination)) for x in others if x != destination]
        else:
            pairs = [(min(node, destination), max(node, destination))]
        for pair in pairs:
            now = usable(net, self.design, *pair)
            if now == self.state[pair]:
                continue
            self.state[pair] = now
            self.changed_at[pair] = net.now
            self.unusable += -1 if now else 1
            if not self.watching:
                continue
            if pair in self.affected:
                if now:
                    self.recovered.setdefault(pair, net.now)
                elif pair in self.recovered:
                    self.broken_again += 1
            elif not now:
                self.broken_unaffected += 1

    def all_usable(self) -> bool:
        return self.unusable == 0


@dataclass(frozen=True, slots=True)
class FailureResult:
    design: Design
    seed: int
    converged_at: float
    failed_relay: int
    failed_at: float
    affected_pairs: int
    pairs: int
    reroute: float | None
    """Seconds from the failure until every affected pair was usable again, through
    another relay (None: not within the limit)."""
    reroute_first: float | None
    """Seconds until the first affected pair was usable again."""
    settled: float | None
    """Seconds until the last change of any pair's usability before the end of the run
    (None: some pair was not usable at the end)."""
    broken_unaffected: int
    broken_again: int
    loop_checks: int
    route_changes: int
    digest: str
    delays: tuple[float, ...] = ()
    """Per affected pair, seconds from the failure until it was usable again."""
    costs: tuple[tuple[str, Cost], ...] = ()
    """Per role (``relay``, ``nated``, and ``member``: every member, those that run no
    Babel included), over ``window`` seconds of steady state before the failure."""


def build(design: Design, seed: int, wan: Links, hello_interval: float) -> BabelNet:
    return BabelNet(
        design.babel_nodes,
        design.links(),
        seed,
        wan=wan,
        hello_interval=hello_interval,
        config=lambda i: core_config(design, i),
    )


def converge(net: BabelNet, watch: PairWatch, limit: float) -> float:
    """Run until every NATed pair is usable; the simulated time it took."""
    took = net.run_until(lambda _: watch.all_usable(), limit)
    if took is None:
        missing = sum(1 for ok in watch.state.values() if not ok)
        raise AssertionError(f"{missing} pairs not usable after {limit} s")
    return took


def relay_failure(
    design: Design,
    seed: int,
    *,
    wan: Links | None = None,
    hello_interval: float = 4.0,
    warmup: float = 20.0,
    limit: float = 120.0,
    settle: float = 30.0,
    window: float = 0.0,
    probe: Callable[[str, BabelNet], None] | None = None,
) -> tuple[BabelNet, FailureResult]:
    """Converge, run ``warmup`` more seconds, measure the cost over ``window`` seconds (when
    given; ``probe(\"start\" or \"end\", net)`` is called at its ends), fail the relay that
    carries the most pairs at a random phase of the Hello interval, and time until every
    pair that went through it is usable through another relay; then ``settle`` seconds more
    (with 1 % loss, a link now and then loses two Hellos in a row and is down for a Hello
    or two: the pairs through it break meanwhile, counted apart).

    Raises :class:`RoutingLoop` at the first loop, whenever it forms.
    """
    wan = wan or Links(latency=0.050, jitter=0.020, loss=0.01)
    net = build(design, seed, wan, hello_interval)
    watch = PairWatch(design)
    watch.start(net)
    converged = converge(net, watch, limit)
    net.run(warmup)
    costs: list[tuple[str, Cost]] = []
    if window > 0:
        if probe is not None:
            probe("start", net)
        before = net.counters()
        net.run(window)
        after = net.counters()
        if probe is not None:
            probe("end", net)
        relays = list(range(design.relays))
        nated = list(range(design.relays, design.babel_nodes))
        everyone = window_cost(before, after, relays + nated, window)
        share = design.babel_nodes / design.members
        costs = [
            ("relay", window_cost(before, after, relays, window)),
            ("nated", window_cost(before, after, nated, window)),
            ("member", Cost(everyone.datagrams * share, everyone.bytes * share)),
        ]
    phase = random.Random(seed).random() * hello_interval  # noqa: S311
    net.run(phase)
    load = [0] * design.relays
    for a, b in design.pairs():
        hop = net.fwd[a].get(b)
        if hop is not None and design.is_relay(hop):
            load[hop] += 1
    failed = max(range(design.relays), key=lambda r: (load[r], -r))
    watch.watch(
        {(a, b) for a, b in design.pairs() if failed in (net.fwd[a].get(b), net.fwd[b].get(a))}
    )
    failed_at = net.now
    net.fail(failed)
    net.run_until(lambda _: watch.pending == 0, limit)
    delays = sorted(when - failed_at for when in watch.recovered.values())
    net.run(settle)
    settled = None
    if watch.all_usable():
        settled = max((t for t in watch.changed_at.values() if t >= failed_at), default=failed_at)
        settled -= failed_at
    assert_loop_free(net)
    return net, FailureResult(
        design=design,
        seed=seed,
        converged_at=converged,
        failed_relay=failed,
        failed_at=failed_at,
        affected_pairs=len(watch.affected),
        pairs=len(watch.state),
        reroute=delays[-1] if delays and not watch.pending else None,
        reroute_first=delays[0] if delays else None,
        settled=settled,
        broken_unaffected=watch.broken_unaffected,
        broken_again=watch.broken_again,
        loop_checks=watch.loop_checks,
        route_changes=net.route_changes,
        digest=net.digest,
        delays=tuple(delays),
        costs=tuple(costs),
    )


# --- cost per node ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cost:
    """Per node per second, sent and received together (Babel's UDP payloads)."""

    datagrams: float
    bytes: float


def window_cost(
    before: list[Counters], after: list[Counters], nodes: list[int], seconds: float
) -> Cost:
    if not nodes:
        return Cost(0.0, 0.0)
    datagrams = sum(
        after[i].sent + after[i].received - before[i].sent - before[i].received for i in nodes
    )
    octets = sum(
        after[i].bytes_sent
        + after[i].bytes_received
        - before[i].bytes_sent
        - before[i].bytes_received
        for i in nodes
    )
    return Cost(datagrams / seconds / len(nodes), octets / seconds / len(nodes))
