"""The scenarios the tests and benchmarks/sim.py run: a revocation, steady-state announcing,
a partition that heals, with nodes that go down and come back."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

from meshd.membership import Membership
from meshd.records import record_id
from meshd.sim.engine import IHAVE, IWANT, MSG, Sim
from meshd.sim.nodes import (
    ANNOUNCEMENT,
    CERTIFICATE,
    REVOCATION,
    ModelNode,
    RealNode,
    record_key,
)
from meshd.sim.params import Costs, Gossip, Links
from meshd.sim.records import T0, SimNetwork

Mode = Literal["real", "model"]
WARM_UP = 5.0  # heartbeats form the meshes before anything is published


@dataclass
class Run:
    sim: Sim
    network: SimNetwork
    mode: Mode
    keys: dict[bytes, int]

    def applied(self, key: int) -> list[float | None]:
        """When each node took the record in (None: not yet)."""
        out: list[float | None] = []
        for node in self.sim.nodes:
            layer = node.membership
            assert isinstance(layer, RealNode | ModelNode)
            out.append(layer.applied.get(key))
        return out

    def publish(self, author: int, key: int, payload: bytes, extra: float = 0.0) -> None:
        if self.mode == "real":
            self.keys[record_id(payload)] = key
        self.sim.publish(author, payload, key, extra)

    def revoke(self, author: int, member: int) -> int:
        key = record_key(REVOCATION, member)
        raw = self.network.revocation(member, self.sim.now)
        self.publish(author, key, raw, self.sim.costs.revocation)
        return key


def build(
    size: int,
    seed: int,
    *,
    mode: Mode = "model",
    links: Links | None = None,
    costs: Costs | None = None,
    gossip: Gossip | None = None,
    known: Sequence[int] = (),
    trace: bool = True,
    announce: bool = False,
    load: Load | None = None,
) -> Run:
    """A connected mesh of ``size`` nodes, heartbeats running, ``WARM_UP`` seconds in.
    ``known``: members whose certificates every node holds at the start (real mode; the
    model needs none). ``announce``: every member announces at the rates of ``load`` (the
    daemon's defaults when None: a refresh every ``announce_interval`` and no changes) from
    a random phase on (in real mode every member's certificate is then known)."""
    if announce and mode == "real":
        known = range(size)
    sim = Sim(size, seed, links=links, costs=costs, gossip=gossip, trace=trace)
    # Simulation keys from the seed (reproducible runs; nothing here is a secret).
    network = SimNetwork(random.Random(sim.rng.getrandbits(64)))  # noqa: S311
    keys: dict[bytes, int] = {}
    certs = [network.certificate(m) for m in known]
    for m, raw in zip(known, certs, strict=True):
        keys[record_id(raw)] = record_key(CERTIFICATE, m)
    sizes = {
        CERTIFICATE: len(network.certificate(0)),
        ANNOUNCEMENT: len(network.announcement(0, 0.0)),
        REVOCATION: len(network.revocation(0, 0.0)),
    }
    for node in sim.nodes:
        if mode == "real":
            state = Membership(network.anchor)
            for raw in certs:
                state.ingest_untrusted(raw, T0)
            node.membership = RealNode(node.index, state, keys)
        else:
            model = ModelNode(node.index, sizes)
            for m in known:
                model.admit(record_key(CERTIFICATE, m), 0.0)
            node.membership = model
    sim.connect_all()
    sim.start()
    run = Run(sim, network, mode, keys)
    if announce:
        load = load or Load(sim.gossip.announce_interval)
        seqs = [0] * size
        for m in range(size):
            sim.at(sim.rng.random() * load.refresh, partial(_refresh, run, m, seqs, load))
        if load.changes:
            sim.at(sim.rng.expovariate(load.changes * size), partial(_change, run, seqs, load))
    sim.run(WARM_UP)
    return run


@dataclass(frozen=True)
class Load:
    """What members announce: each a refresh every ``refresh`` seconds (at its own phase),
    and real changes (new endpoints, addresses, prefixes) at ``changes`` per member per
    second, at random (a Poisson process over the whole mesh: 1 % of the members a minute is
    ``0.01 / 60``)."""

    refresh: float
    changes: float = 0.0

    def rate(self, size: int) -> float:
        """Announcements per second in a mesh of ``size`` members."""
        return size * (1.0 / self.refresh + self.changes)


def _announce(run: Run, member: int, seqs: list[int]) -> None:
    sim = run.sim
    seqs[member] += 1
    key = record_key(ANNOUNCEMENT, member, seqs[member])
    real = run.mode == "real"
    payload = run.network.announcement(member, sim.now) if real else _ANNOUNCEMENT_BYTES
    run.publish(member, key, payload)


def _refresh(run: Run, member: int, seqs: list[int], load: Load) -> None:
    _announce(run, member, seqs)
    run.sim.at(run.sim.now + load.refresh, partial(_refresh, run, member, seqs, load))


def _change(run: Run, seqs: list[int], load: Load) -> None:
    sim = run.sim
    _announce(run, sim.rng.randrange(len(seqs)), seqs)
    sim.at(
        sim.now + sim.rng.expovariate(load.changes * len(seqs)), partial(_change, run, seqs, load)
    )


def spread(times: Sequence[float | None], since: float, skip: Sequence[int] = ()) -> list[float]:
    """Delays after ``since`` of the nodes that took a record in (nodes in ``skip`` aside);
    nodes that did not are left out (compare the length with the node count)."""
    left = set(skip)
    return sorted(t - since for i, t in enumerate(times) if i not in left and t is not None)


def revocation(
    size: int,
    seed: int,
    *,
    mode: Mode = "model",
    links: Links | None = None,
    costs: Costs | None = None,
    horizon: float = 30.0,
    down: int = 0,
    trace: bool = True,
    announce: bool = False,
    load: Load | None = None,
) -> tuple[Run, list[float]]:
    """Node 0 revokes member ``size - 1``; ``down`` random other nodes are down when it
    happens and come back 10 s later. Returns the run and the delays of every node but the
    revoked one (sorted; shorter than ``size - 1`` if some never took it in)."""
    target = size - 1
    run = build(
        size,
        seed,
        mode=mode,
        links=links,
        costs=costs,
        known=(target,),
        trace=trace,
        announce=announce,
        load=load,
    )
    sim = run.sim
    away = sim.rng.sample(range(1, target), down) if down else []
    for i in away:
        sim.stop_node(i)
    t0 = sim.now
    key = run.revoke(0, target)
    for i in away:
        sim.at(t0 + 10.0, partial(sim.start_node, i))
    sim.run(t0 + horizon)
    return run, spread(run.applied(key), t0, skip=(target,))


@dataclass(frozen=True)
class Steady:
    """Per node and per second, every member announcing at the load's rates."""

    messages: float  # gossip RPCs sent and received
    bytes: float  # sent and received
    cpu: float  # seconds of CPU per second (a share of one core), at the run's costs
    by_kind: dict[str, float]  # RPCs sent per node per second, by kind
    announcements: float  # records per second in the whole mesh (each validated by every node)
    rpcs_per_announcement: float  # MSG and IWANT RPCs one announcement costs the mesh, per node
    published: int = 0  # announcements simulated (the figures scale their cost to the rate)


def steady(
    size: int,
    seed: int,
    *,
    links: Links | None = None,
    costs: Costs | None = None,
    window: float = 20.0,
    thin: float = 1.0,
    load: Load | None = None,
) -> Steady:
    """Every member announces at ``load``'s rates (the daemon's defaults when None: a refresh
    every ``announce_interval``), flooded to all.

    The announcements published within ``window`` are counted, each to the end of its flood:
    their MSG and IWANT RPCs, per announcement, times the full rate (``Load.rate``; the cost
    of one announcement does not depend on the others: linear, so ``thin`` < 1 can have only
    that share of the announcements made, for 10,000 nodes, with the same result; ``thin`` >
    1 makes more, so that a low rate still gives enough floods to average over). An IHAVE goes
    at every heartbeat that has ids of the last ``gossip_window`` heartbeats (rate x window of
    them on average; none at all with probability exp(-that)) to max(6, 25 %) of a node's
    peers outside its mesh: counted from the mesh as it stands. GRAFT, PRUNE and sync are
    counted as they happen within the window. ``thin`` = 0: nobody announces; what is left is
    the heartbeats and the periodic sync.
    """
    run = build(size, seed, links=links, costs=costs, trace=False)
    sim = run.sim
    g = sim.gossip
    load = load or Load(g.announce_interval)
    rate = load.rate(size) if thin else 0.0
    start = sim.now
    end = start + window
    published = 0
    seqs = [0] * size

    def announce() -> None:
        nonlocal published
        if sim.now >= end:
            return
        published += 1
        member = sim.rng.randrange(size)
        seqs[member] += 1
        sim.publish(member, _ANNOUNCEMENT_BYTES, record_key(ANNOUNCEMENT, member, seqs[member]))
        sim.at(sim.now + sim.rng.expovariate(rate * thin), announce)

    if rate:
        sim.at(start + sim.rng.expovariate(rate * thin), announce)
    before = _totals(sim)
    sim.run(end)
    during = _totals(sim)
    sim.run(end + 5.0)  # the last floods end
    after = _totals(sim)
    span = window * size
    flooded = after["sent_msg"] + after["sent_iwant"] - before["sent_msg"] - before["sent_iwant"]
    flooded_bytes = (
        after["bytes_msg"] + after["bytes_iwant"] - before["bytes_msg"] - before["bytes_iwant"]
    )
    per_announcement = flooded / published / size if published else 0.0
    bytes_per_announcement = flooded_bytes / published / size if published else 0.0
    ihave_rpcs = 0.0  # per node per second
    ihave_bytes = 0.0
    if rate:
        ids = rate * g.heartbeat * g.gossip_window  # ids in the window, on average
        busy = 1.0 - math.exp(-ids)  # the share of heartbeats with any
        for node in sim.nodes:
            pool = sum(1 for p in node.peers if p not in node.mesh)
            ihave_rpcs += min(max(g.gossip_lazy, int(pool * g.gossip_factor)), pool)
        ihave_rpcs *= busy / (size * g.heartbeat)
        ihave_bytes = ihave_rpcs * (sim.sizes.rpc_overhead + ids / busy * sim.sizes.message_id)
    other = (during["sent_other"] - before["sent_other"]) / span
    other_bytes = (during["bytes_other"] - before["bytes_other"]) / span
    sent = per_announcement * rate + ihave_rpcs + other
    sent_bytes = bytes_per_announcement * rate + ihave_bytes + other_bytes
    c = sim.costs
    cpu = sent * (c.rpc_in + c.rpc_out) + rate * c.validate
    return Steady(
        messages=2 * sent,
        bytes=2 * sent_bytes,
        cpu=cpu,
        by_kind={"MSG+IWANT": per_announcement * rate, "IHAVE": ihave_rpcs, "other": other},
        announcements=rate,
        rpcs_per_announcement=per_announcement,
        published=published,
    )


_ANNOUNCEMENT_BYTES = bytes(173)  # the size of a real announcement with one endpoint and address


def _totals(sim: Sim) -> dict[str, float]:
    out = dict.fromkeys(
        (
            "sent_msg",
            "sent_iwant",
            "sent_ihave",
            "sent_other",
            "bytes_msg",
            "bytes_iwant",
            "bytes_ihave",
            "bytes_other",
        ),
        0.0,
    )
    names = {MSG: "msg", IWANT: "iwant", IHAVE: "ihave"}
    for kind, (count, size) in sorted(sim.sent.items()):
        name = names.get(kind, "other")
        out[f"sent_{name}"] += count
        out[f"bytes_{name}"] += size
    return out


def partition(
    size: int,
    seed: int,
    *,
    mode: Mode = "model",
    links: Links | None = None,
    costs: Costs | None = None,
    share: float = 0.3,
    duration: float = 60.0,
    horizon: float = 120.0,
) -> tuple[Run, float | None, list[float]]:
    """``share`` of the nodes are cut off from the rest for ``duration`` seconds; on each
    side a member is revoked meanwhile. Returns the run, the time after the heal until every
    node holds both revocations (None: not within ``horizon``), and the per-node delays."""
    order = list(range(size))
    known = (size - 1, size - 2)
    run = build(size, seed, mode=mode, links=links, costs=costs, known=known)
    sim = run.sim
    sim.rng.shuffle(order)
    group = sorted(order[: round(size * share)])
    start = sim.now
    heal = start + duration
    sim.partition(start, heal, group)
    inside = [i for i in group if i not in known]
    outside = [i for i in range(size) if i not in group and i not in known]
    sim.run(start + 1.0)
    keys = [run.revoke(inside[0], known[0]), run.revoke(outside[0], known[1])]
    sim.run(heal + horizon)
    per_node: list[float] = []
    for i in range(size):
        if i in known:
            continue
        times = [run.applied(k)[i] for k in keys]
        if any(t is None for t in times):
            return run, None, []
        per_node.append(max(t for t in times if t is not None) - heal)
    per_node.sort()
    return run, max(0.0, per_node[-1]), per_node
