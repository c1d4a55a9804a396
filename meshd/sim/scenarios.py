"""The scenarios the tests and benchmarks/sim.py run: a revocation, steady-state announcing,
a partition that heals, with nodes that go down and come back."""

from __future__ import annotations

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

    def publish(self, author: int, key: int, payload: bytes) -> None:
        if self.mode == "real":
            self.keys[record_id(payload)] = key
        self.sim.publish(author, payload, key)

    def revoke(self, author: int, member: int) -> int:
        key = record_key(REVOCATION, member)
        self.publish(author, key, self.network.revocation(member, self.sim.now))
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
) -> Run:
    """A connected mesh of ``size`` nodes, heartbeats running, ``WARM_UP`` seconds in.
    ``known``: members whose certificates every node holds at the start (real mode; the
    model needs none). ``announce``: every member announces every ``announce_interval``
    from a random phase on (in real mode every member's certificate is then known)."""
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
        for m in range(size):
            sim.at(sim.rng.random() * sim.gossip.announce_interval, partial(_announce, run, m, 1))
    sim.run(WARM_UP)
    return run


def _announce(run: Run, member: int, seq: int) -> None:
    sim = run.sim
    key = record_key(ANNOUNCEMENT, member, seq)
    real = run.mode == "real"
    payload = run.network.announcement(member, sim.now) if real else _ANNOUNCEMENT_BYTES
    run.publish(member, key, payload)
    sim.at(sim.now + sim.gossip.announce_interval, partial(_announce, run, member, seq + 1))


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
    """Per node and per second, over the measured window."""

    messages: float  # RPCs sent and received
    bytes: float  # sent and received
    cpu: float  # seconds of CPU per second (a share of one core)
    by_kind: dict[str, float]  # RPCs sent per node per second, by kind
    announcements: float  # records per second in the whole mesh


def steady(
    size: int,
    seed: int,
    *,
    links: Links | None = None,
    costs: Costs | None = None,
    window: float = 20.0,
    thin: float = 1.0,
) -> Steady:
    """Every member announces every ``announce_interval`` (random phase), flooded to all.

    ``thin`` < 1 has only that share of the members announce (for 10,000 nodes, where the full
    rate is too many events to simulate); message counts, bytes and CPU of MSG and IWANT RPCs
    are then divided by ``thin``, and IHAVE bytes recomputed for the full rate's ids per
    heartbeat window (an IHAVE goes out at each heartbeat that has ids either way).
    """
    run = build(size, seed, links=links, costs=costs, trace=False)
    sim = run.sim
    interval = sim.gossip.announce_interval
    announcers = sorted(sim.rng.sample(range(size), max(1, round(size * thin))))
    scale = size / len(announcers)
    seqs = dict.fromkeys(announcers, 0)

    def announce(member: int) -> None:
        seqs[member] += 1
        key = record_key(ANNOUNCEMENT, member, seqs[member])
        sim.publish(member, _ANNOUNCEMENT_BYTES, key)
        sim.at(sim.now + interval, lambda: announce(member))

    for m in announcers:
        sim.at(sim.now + sim.rng.random() * interval, partial(announce, m))
    sim.run(sim.now + interval)  # every member has announced once
    before = _totals(sim)
    start = sim.now
    sim.run(start + window)
    after = _totals(sim)
    d = {k: after[k] - before[k] for k in after}
    span = window * size
    msg_rpcs = d["sent_msg"] + d["sent_iwant"]
    ihave_rpcs = d["sent_ihave"]
    other_rpcs = d["sent_other"]
    rate = len(announcers) * scale / interval
    ids_per_ihave = rate * sim.gossip.heartbeat * sim.gossip.gossip_window
    ihave_bytes = ihave_rpcs * (sim.sizes.rpc_overhead + ids_per_ihave * sim.sizes.message_id)
    if thin == 1.0:
        ihave_bytes = d["bytes_ihave"]
    sent_rpcs = msg_rpcs * scale + ihave_rpcs + other_rpcs
    sent_bytes = (d["bytes_msg"] + d["bytes_iwant"]) * scale + ihave_bytes + d["bytes_other"]
    costs = sim.costs
    validations = rate * window * size  # each record is validated once by every node
    cpu = sent_rpcs * (costs.rpc_in + costs.rpc_out) + validations * costs.validate
    return Steady(
        messages=2 * sent_rpcs / span,
        bytes=2 * sent_bytes / span,
        cpu=cpu / span,
        by_kind={
            "MSG": d["sent_msg"] * scale / span,
            "IWANT": d["sent_iwant"] * scale / span,
            "IHAVE": ihave_rpcs / span,
            "other": other_rpcs / span,
        },
        announcements=rate,
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
