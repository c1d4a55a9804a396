"""The mesh at 1,000 and 10,000 members in the simulator (meshd/sim), calibrated on real daemons.

Steps, all in one run (figures printed, then saved to benchmarks/results/sim.json):

1. **costs**: the CPU a daemon spends per gossip RPC and per record. Per record: the
   validator's work measured here, in-process, with the real cores (decode, signature check,
   merge, the store's committed transaction; a revocation and an announcement, 48 members).
   Per RPC: docs/gossip.md's measurement of py-libp2p (27 ms of CPU per published message,
   16 hosts together, each dialling 4, D 6/4/12, 150 messages 20 ms apart), divided by the
   RPCs the simulator counts for that same experiment.
2. **calibration**: the revocation benchmark (benchmarks/revocation.py, 16 and 48 daemons
   on one 2-core machine, loopback) replayed: the same sizes, all nodes sharing 2 cores,
   loopback links, every member announcing every 30 s, the real membership and sync cores.
   Compared with benchmarks/results/revocation.json's ``from_origin`` (founder's Revoked
   event to the last daemon's), median, p90 and max over rounds.
3. **model check**: the same revocations with the real cores and with the model.
4. **figures** at 1,000 and 10,000 nodes, 50 +- 20 ms links, 1 % loss, one core per node:
   time until 99 %, 99.9 % and 100 % of the nodes hold a revocation; the steady state of
   announcing every 30 s (messages, bytes, CPU per node); a 30 % partition healing.

    nice -n 10 .venv/bin/python -m benchmarks.sim [--quick] [--plots]

``--plots`` writes docs/img/sim-*.png (needs matplotlib, a dev dependency; the simulator
itself never imports it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.fixtures import (
    RESULTS,
    pyplot,
    save_figure,
    simulator_options,
    stamp,
    summary,
    write_result,
)
from meshd.gossip.sync import (
    Message,
    SyncSession,
    decode_message_untrusted,
    encode_message,
    net_change,
)
from meshd.membership import Membership
from meshd.node.store import Store
from meshd.sim.engine import Sim
from meshd.sim.nodes import ModelNode
from meshd.sim.params import Costs, Gossip, Links
from meshd.sim.records import T0, SimNetwork
from meshd.sim.scenarios import Load, partition, revocation, steady

LOOPBACK = Links(latency=0.00005, jitter=0.00002, floor=0.00001)
WAN = Links(latency=0.050, jitter=0.020, loss=0.01)
DOCS_CPU_PER_MESSAGE = 0.027  # docs/gossip.md: all 16 hosts together, per published message
# The announcement load before and after announcing on change: every member every 30 s (the
# old default, and what the real daemons of benchmarks/results/revocation.json ran with), and
# the new defaults (a refresh every two hours) with 1 % of the members changing something a minute.
OLD_LOAD = Load(30.0)
CHANGES = 0.01 / 60.0
NEW_LOAD = Load(Gossip().announce_interval, CHANGES)


# --- 1. costs ---------------------------------------------------------------------------------


def _timed(reps: int, fn: Any) -> float:
    start = time.process_time()
    for i in range(reps):
        fn(i)
    return (time.process_time() - start) / reps


def record_costs() -> dict[str, float]:
    """CPU seconds per record for the daemon's validator (merge and store), in-process."""
    net = SimNetwork(random.Random(1))
    state = Membership(net.anchor)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "meshd.db")
        for m in range(48):
            store.apply([state.ingest_untrusted(net.certificate(m), T0)])
        anns = [net.announcement(i % 48, 100 + i // 48) for i in range(480)]
        revs = [net.revocation(m, 200) for m in range(8, 48)]

        def ingest(raw: bytes, now: int) -> None:
            outcome = state.ingest_untrusted(raw, now)
            change = net_change(state, [outcome])
            if change is not None:
                store.apply([change])

        announcement = _timed(len(anns), lambda i: ingest(anns[i], T0 + 110))
        revocation_cost = _timed(len(revs), lambda i: ingest(revs[i], T0 + 210))
    a, b = Membership(net.anchor), Membership(net.anchor)
    for m in range(48):
        a.ingest_untrusted(net.certificate(m), T0)
        b.ingest_untrusted(net.certificate(m), T0)
    messages = 0

    def converse(_: int) -> None:
        nonlocal messages
        left, right = SyncSession(a), SyncSession(b)
        message: Message | None = left.start()
        sides = (right, left)
        turn = 0
        while message is not None:
            step = sides[turn % 2].receive(decode_message_untrusted(encode_message(message)))
            messages += 1
            message = step.reply
            turn += 1

    per_conversation = _timed(200, converse)
    return {
        "announcement": announcement,
        "revocation": revocation_cost,
        "sync_message": per_conversation * 200 / messages,
    }


def _publish(sim: Sim, k: int) -> None:
    sim.publish(0, bytes(400), (1 << 48) | k)


def rpc_cost() -> tuple[float, float]:
    """CPU per RPC (each side): docs/gossip.md's 27 ms per message over the RPCs the simulator
    counts in that experiment. Returns (cost, RPCs sent per message)."""
    gossip = replace(Gossip(), connect_degree=4)
    counts = []
    for seed in range(5):
        sim = Sim(16, seed, links=LOOPBACK, gossip=gossip, trace=False)
        for node in sim.nodes:
            node.membership = ModelNode(node.index, {0: 231, 1: 400, 2: 175})
        sim.connect_all()
        sim.start()
        sim.run(5.0)
        before = sum(n.rpcs_out for n in sim.nodes)
        for k in range(150):
            sim.at(5.0 + 0.02 * k, partial(_publish, sim, k + 1))
        sim.run(5.0 + 0.02 * 150 + 2.0)
        counts.append((sum(n.rpcs_out for n in sim.nodes) - before) / 150)
    per_message = statistics.mean(counts)
    return DOCS_CPU_PER_MESSAGE / (2 * per_message), per_message


# --- 2. calibration ---------------------------------------------------------------------------


def _loopback_rounds(size: int, costs: Costs, rounds: int, first_seed: int) -> list[float]:
    """The revocation benchmark's rounds in the simulator: founder -> last node, per round."""
    out = []
    for seed in range(first_seed, first_seed + rounds):
        _, delays = revocation(
            size,
            seed,
            mode="real",
            links=LOOPBACK,
            costs=replace(costs, cores=2),
            announce=True,
            load=OLD_LOAD,
            horizon=20.0,
            trace=False,
        )
        assert len(delays) == size - 1
        out.append(delays[-1])
    return out


def fit(costs: Costs, size: int, target: float, what: str) -> float:
    """The cost whose simulated median at ``size`` is ``target`` (bisection on a log scale;
    the other costs stay as they are): ``what`` is "rpc" (per RPC, each side) or
    "revocation" (per revocation, on top of the validator's measured cost)."""
    lo, hi = 0.00005, 0.05
    for _ in range(14):
        mid = math.sqrt(lo * hi)
        if what == "rpc":
            trial = replace(costs, rpc_in=mid, rpc_out=mid)
        else:
            trial = replace(costs, revocation=mid)
        if statistics.median(_loopback_rounds(size, trial, 10, 2000)) < target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def calibration(costs: Costs, rounds: int, label: str) -> dict[str, Any]:
    real = json.loads((RESULTS / "revocation.json").read_text())
    out: dict[str, Any] = {"real_when": real["when"], "costs": asdict(costs), "sizes": []}
    for entry in real["sizes"]:
        size = entry["size"]
        measured = entry["meshd"]["from_origin_s"]
        simulated = _loopback_rounds(size, costs, rounds, 1000)
        row = {
            "size": size,
            "real": summary(measured),
            "real_rounds": measured,
            "sim": summary(simulated),
            "sim_rounds": simulated,
        }
        row["ratio"] = {k: row["sim"][k] / row["real"][k] for k in ("median", "p90", "max")}
        out["sizes"].append(row)
        print(
            f"calibration ({label}) {size:>3}: real median {row['real']['median'] * 1000:6.1f} ms, "
            f"p90 {row['real']['p90'] * 1000:6.1f}, max {row['real']['max'] * 1000:6.1f} | "
            f"sim median {row['sim']['median'] * 1000:6.1f} ms, "
            f"p90 {row['sim']['p90'] * 1000:6.1f}, max {row['sim']['max'] * 1000:6.1f}"
        )
    return out


# --- 3. the model against the real cores ------------------------------------------------------


def model_check(costs: Costs, size: int, seeds: int) -> dict[str, Any]:
    rows = []
    for seed in range(seeds):
        started = time.perf_counter()
        _, real = revocation(size, seed, mode="real", links=WAN, costs=costs, trace=False)
        real_s = time.perf_counter() - started
        _, model = revocation(size, seed, mode="model", links=WAN, costs=costs, trace=False)
        rows.append({"seed": seed, "same": real == model, "real_wall_s": real_s, "max": real[-1]})
    _, real_heal, _ = partition(200, 1, mode="real", links=WAN, costs=costs, duration=30.0)
    _, model_heal, _ = partition(200, 1, mode="model", links=WAN, costs=costs, duration=30.0)
    print(
        f"model check: revocation at {size}, {sum(r['same'] for r in rows)}/{seeds} runs give "
        f"the same delays at every node; partition heal at 200: real {real_heal}, "
        f"model {model_heal}"
    )
    return {
        "size": size,
        "revocation": rows,
        "partition_200": {"real": real_heal, "model": model_heal},
    }


# --- 4. figures -------------------------------------------------------------------------------


TIMES = ("t99", "t999", "t100")


def reach(delays: Sequence[float], others: int, share: float) -> float | None:
    """Time until ``share`` of the ``others`` nodes hold the record."""
    needed = math.ceil(share * others)
    return delays[needed - 1] if len(delays) >= needed else None


def revocation_figures(size: int, seeds: int, costs: Costs) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    pooled: list[float] = []
    for seed in range(seeds):
        started = time.perf_counter()
        run, delays = revocation(size, seed, links=WAN, costs=costs, horizon=30.0, trace=False)
        runs.append(
            {
                "seed": seed,
                "t99": reach(delays, size - 1, 0.99),
                "t999": reach(delays, size - 1, 0.999),
                "t100": reach(delays, size - 1, 1.0),
                "events": run.sim.events,
                "wall_s": time.perf_counter() - started,
            }
        )
        pooled.extend(delays)
    out = {
        "size": size,
        "runs": runs,
        **{k: statistics.median(r[k] for r in runs if r[k] is not None) for k in TIMES},
        "cdf": _cdf(pooled),
    }
    print(
        f"revocation {size:>5}: 99 % {out['t99']:.3f} s, 99.9 % {out['t999']:.3f} s, "
        f"100 % {out['t100']:.3f} s (median of {seeds} runs)"
    )
    return out


def _cdf(values: Sequence[float], points: int = 200) -> list[tuple[float, float]]:
    ordered = sorted(values)
    step = max(1, len(ordered) // points)
    return [(ordered[i], (i + 1) / len(ordered)) for i in range(0, len(ordered), step)] + [
        (ordered[-1], 1.0)
    ]


def loaded_revocation(size: int, costs: Costs, load: Load = OLD_LOAD) -> dict[str, Any]:
    """The revocation while every member announces at ``load``'s rates (the steady load)."""
    started = time.perf_counter()
    _, delays = revocation(
        size, 0, links=WAN, costs=costs, announce=True, load=load, horizon=10.0, trace=False
    )
    out = {
        "size": size,
        "load": asdict(load),
        "announcements_per_s": load.rate(size),
        "t99": reach(delays, size - 1, 0.99),
        "t999": reach(delays, size - 1, 0.999),
        "t100": reach(delays, size - 1, 1.0),
        "wall_s": time.perf_counter() - started,
    }
    print(f"revocation {size:>5} under the announcement load {load}: {out}")
    return out


def steady_figures(
    size: int, costs: Costs, thin: float, window: float, load: Load = OLD_LOAD
) -> dict[str, Any]:
    started = time.perf_counter()
    result = steady(size, 0, links=WAN, costs=costs, window=window, thin=thin, load=load)
    out = {"size": size, "thin": thin, "window_s": window, "load": asdict(load), **asdict(result)}
    out["wall_s"] = time.perf_counter() - started
    print(
        f"steady {size:>5} ({load}, thin {thin}, {result.published} floods): "
        f"{result.messages:8.1f} msg/s, {result.bytes / 1000:8.2f} kB/s, "
        f"CPU {result.cpu * 100:6.2f} % of a core per node"
    )
    return out


# Announcing on change: (members, thin, window): enough floods (~40) at every size.
NEW_STEADY_RUNS = [(100, 50.0, 20.0), (300, 15.0, 20.0), (1000, 5.0, 20.0), (3000, 2.0, 15.0)]
NEW_STEADY_LARGE = [(10000, 1.0, 10.0)]


def new_design(costs_a: Costs, costs_b: Costs, quick: bool) -> dict[str, Any]:
    """The steady state and a loaded revocation with announcements on change (NEW_LOAD)."""
    runs = NEW_STEADY_RUNS + ([] if quick else NEW_STEADY_LARGE)
    rows = [steady_figures(n, costs_a, thin, w, NEW_LOAD) for n, thin, w in runs]
    for row in rows:
        row["cpu_b"] = cpu_at(row, costs_b)
    sizes = [1000] if quick else [1000, 10000]
    return {
        "load": asdict(NEW_LOAD),
        "steady": rows,
        "revocation_loaded": [loaded_revocation(n, costs_a, NEW_LOAD) for n in sizes],
        "revocation_loaded_b": [loaded_revocation(1000, costs_b, NEW_LOAD)],
    }


def cpu_at(row: dict[str, Any], costs: Costs) -> float:
    """A steady row's CPU share at other costs (RPCs each side, one validation per record)."""
    return float(row["messages"] * costs.rpc_in + row["announcements"] * costs.validate)


def partition_figures(size: int, costs: Costs, duration: float) -> dict[str, Any]:
    started = time.perf_counter()
    _, heal, per_node = partition(size, 0, links=WAN, costs=costs, duration=duration)
    out = {
        "size": size,
        "share": 0.3,
        "duration_s": duration,
        "converged_after_heal_s": heal,
        "median_after_heal_s": statistics.median(per_node) if per_node else None,
        "wall_s": time.perf_counter() - started,
    }
    print(f"partition {size} for {duration:.0f} s: every node agrees {heal} s after the heal")
    return out


def _instrument(core: Any, tally: dict[str, Any]) -> None:
    """Count the bytes a Babel core sends and the CPU spent inside its entry points."""
    receive, handle_timer, datagrams = core.receive, core.handle_timer, core.datagrams_to_send

    def timed(fn: Any) -> Any:
        def run(*args: Any) -> Any:
            started = time.process_time()
            try:
                return fn(*args)
            finally:
                tally["cpu"] += time.process_time() - started

        return run

    def sending(now: float) -> Any:
        out = timed(datagrams)(now)
        tally["bytes"] += sum(len(payload) for _, _, payload in out)
        return out

    core.receive = timed(receive)
    core.handle_timer = timed(handle_timer)
    core.datagrams_to_send = sending


def babel_full_mesh(sizes: Sequence[int]) -> dict[str, Any]:
    """The real Babel core on a full mesh of WireGuard peers (every member a neighbour of
    every other), driven by tests/babel/sim.py on a fake clock (50 ms links, the core's
    default 4 s Hello interval): datagrams, bytes and the CPU spent inside the cores (receive,
    timers, sending) per node per second,
    after a minute of convergence. 1,000 and 10,000 are extrapolated from the two largest
    sizes (a power law), not run: the cost grows faster than N^2 in all."""
    import itertools

    from tests.babel.sim import Sim as BabelSim

    rows = []
    for n in sizes:
        links = list(itertools.combinations(range(n), 2))
        sim = BabelSim(n, links, kind="unicast-peers", seed=1, delay=0.05)
        tally = {"bytes": 0, "cpu": 0.0}  # datagram bytes sent; CPU inside the cores
        for core in sim.routers:
            _instrument(core, tally)
        sim.run(60.0)
        datagrams, sent_bytes, cpu = sim.datagrams, tally["bytes"], tally["cpu"]
        sim.run(60.0)
        row = {
            "size": n,
            "datagrams": (sim.datagrams - datagrams) / 60.0 / n,
            "bytes": (tally["bytes"] - sent_bytes) / 60.0 / n,
            "cpu": (tally["cpu"] - cpu) / 60.0 / n,
        }
        rows.append(row)
        print(
            f"babel full mesh {n:>3}: {row['datagrams']:.1f} datagrams/s, "
            f"{row['bytes'] / 1000:.2f} kB/s, CPU {row['cpu'] * 100:.2f} % of a core per node"
        )
    a, b = rows[-2], rows[-1]
    out: dict[str, Any] = {"measured": rows, "extrapolated": []}
    for n in (1000, 10000):
        guess: dict[str, float] = {"size": n}
        for key in ("datagrams", "bytes", "cpu"):
            slope = math.log(b[key] / a[key]) / math.log(b["size"] / a["size"])
            guess[key] = b[key] * (n / b["size"]) ** slope
            guess[f"{key}_exponent"] = slope
        out["extrapolated"].append(guess)
        print(f"babel full mesh {n} (extrapolated): {guess}")
    return out


# --- plots ------------------------------------------------------------------------------------


def plots(results: dict[str, Any]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for fig_row in results["revocation"]:
        xs = [x for x, _ in fig_row["cdf"]]
        shares = [y for _, y in fig_row["cdf"]]
        ax.plot([x * 1000 for x in xs], shares, label=f"{fig_row['size']:,} nodes")
    ax.set_xlabel("ms after the revocation is published")
    ax.set_ylabel("share of nodes holding it")
    ax.set_title("Revocation spread (50 ± 20 ms links, 1 % loss)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, "sim-revocation-cdf.png")

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    pairs = zip(results["calibration"]["sizes"], results["calibration_b"]["sizes"], strict=True)
    for ax, (row, row_b) in zip(axes, pairs, strict=True):
        for values, label in (
            (row["real_rounds"], "real daemons"),
            (row["sim_rounds"], "simulator, A"),
            (row_b["sim_rounds"], "simulator, B"),
        ):
            values = sorted(values)
            ys = [(i + 1) / len(values) for i in range(len(values))]
            ax.step([v * 1000 for v in values], ys, where="post", label=label)
        ax.set_title(f"{row['size']} daemons, 2 cores, loopback")
        ax.set_xlabel("ms, founder -> last daemon")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of rounds")
    axes[0].legend()
    save_figure(fig, "sim-calibration.png")

    steady_plot(results["steady"], results.get("new_design", {}).get("steady", []))


def _most_announcers(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    best: dict[int, dict[str, Any]] = {}
    for r in rows:  # per size, the run with the most announcers
        if r["size"] not in best or r["thin"] > best[r["size"]]["thin"]:
            best[r["size"]] = r
    return [best[n] for n in sorted(best)]


def steady_plot(old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, scale, what in (
        (axes[0], "bytes", 1e-3, "kB/s per node (sent + received)"),
        (axes[1], "cpu", 100.0, "% of a core per node"),
    ):
        for rows, style, label in (
            (_most_announcers(old), "--", "every 30 s"),
            (_most_announcers(new), "-", "on change (2 h refresh, 1 %/min changes)"),
        ):
            if not rows:
                continue
            sizes = [r["size"] for r in rows]
            if key == "cpu":
                ax.loglog(sizes, [r["cpu"] * scale for r in rows], "o" + style, label=f"{label}, A")
                ax.loglog(
                    sizes, [r["cpu_b"] * scale for r in rows], "s" + style, label=f"{label}, B"
                )
            else:
                ax.loglog(sizes, [r[key] * scale for r in rows], "o" + style, label=label)
        targets = (10.0, 50.0) if key == "bytes" else (2.0, 5.0)
        ax.plot([1000, 10000], targets, "k*", markersize=12, label="target (issue 14)")
        ax.set_xlabel("members")
        ax.set_title(what)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("Steady state against N: announcing every 30 s, and on change")
    save_figure(fig, "sim-steady.png")


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    simulator_options(parser, "fewer rounds, no 10,000", "write docs/img/sim-*.png")
    parser.add_argument("--rounds", type=int, default=30, help="calibration rounds per size")
    parser.add_argument(
        "--steady",
        action="store_true",
        help="only the steady state, every 30 s and on change, at the costs A and B fitted in "
        "results/sim.json (results/sim-steady.json; --plots: docs/img/sim-steady.png)",
    )
    parser.add_argument(
        "--reuse-old",
        type=Path,
        default=None,
        help="with --steady: take the rows of the old load (every 30 s) from this results file",
    )
    args = parser.parse_args()
    quick = args.quick
    started = time.perf_counter()
    if args.steady:
        steady_only(quick, args.plots, args.reuse_old)
        return

    per_record = record_costs()
    per_rpc, rpcs_per_message = rpc_cost()
    costs = Costs(
        rpc_in=per_rpc,
        rpc_out=per_rpc,
        validate=max(per_record["announcement"], per_record["revocation"]),
        sync_message=per_record["sync_message"],
    )
    print(
        f"costs: {per_rpc * 1000:.3f} ms per RPC side ({rpcs_per_message:.1f} RPCs per message "
        f"at 16 hosts), validator {per_record['announcement'] * 1000:.3f} ms per announcement, "
        f"{per_record['revocation'] * 1000:.3f} ms per revocation, "
        f"{per_record['sync_message'] * 1000:.3f} ms per sync message"
    )
    results: dict[str, Any] = {
        **stamp("sim"),
        "links": asdict(WAN),
        "costs": {
            **asdict(costs),
            "per_record": per_record,
            "rpcs_per_message_16": rpcs_per_message,
        },
        "gossip": asdict(Gossip()),
    }
    results["calibration_docs_costs"] = calibration(costs, 10, "docs/gossip.md's RPC cost")
    real = json.loads((RESULTS / "revocation.json").read_text())
    median_16 = next(
        statistics.median(e["meshd"]["from_origin_s"]) for e in real["sizes"] if e["size"] == 16
    )
    rounds = 10 if quick else args.rounds
    fitted_rpc = fit(costs, 16, median_16, "rpc")
    costs_a = replace(costs, rpc_in=fitted_rpc, rpc_out=fitted_rpc)
    print(f"A: fitted on the real median at 16 daemons: {fitted_rpc * 1000:.3f} ms per RPC side")
    results["calibration"] = calibration(costs_a, rounds, "A")
    fitted_rev = fit(costs, 16, median_16, "revocation")
    costs_b = replace(costs, revocation=fitted_rev)
    print(f"B: fitted on the real median at 16 daemons: {fitted_rev * 1000:.3f} ms per revocation")
    results["calibration_b"] = calibration(costs_b, rounds, "B")
    results["costs"]["a"] = asdict(costs_a)
    results["costs"]["b"] = asdict(costs_b)
    costs = costs_a
    results["model_check"] = model_check(costs, 300 if quick else 1000, 2 if quick else 3)
    sizes = [1000] if quick else [1000, 10000]
    results["revocation"] = [
        revocation_figures(n, (3 if quick else 5) if n <= 1000 else 2, costs) for n in sizes
    ]
    results["revocation_b"] = [revocation_figures(1000, 3, costs_b)]
    results["revocation_loaded"] = loaded_revocation(1000, costs)
    results["revocation_loaded_b"] = loaded_revocation(1000, costs_b)
    steady_runs = [(100, 1.0, 10.0), (300, 1.0, 10.0), (1000, 0.1, 10.0), (3000, 0.03, 10.0)]
    if not quick:
        steady_runs += [(1000, 1.0, 5.0), (10000, 0.01, 10.0)]
    results["steady"] = [steady_figures(n, costs, thin, w) for n, thin, w in steady_runs]
    for row in results["steady"]:
        row["cpu_b"] = cpu_at(row, costs_b)
    results["new_design"] = new_design(costs, costs_b, quick)
    results["steady_no_announcements"] = [
        steady_figures(n, costs, 0.0, 20.0) for n in ([1000] if quick else [1000, 10000])
    ]
    results["partition"] = [
        partition_figures(1000, costs, duration)
        for duration in ((10.0, 60.0) if not quick else (10.0,))
    ]
    results["babel_full_mesh"] = babel_full_mesh((8, 16) if quick else (8, 16, 32))
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["wall_s"] = time.perf_counter() - started
    name = "sim-quick.json" if quick else "sim.json"
    write_result(RESULTS / name, results)
    print(f"saved benchmarks/results/{name} ({results['wall_s']:.0f} s)")
    if args.plots:
        plots(results)
        print("plots in docs/img/sim-*.png")


def steady_only(quick: bool, plot: bool, reuse: Path | None) -> None:
    """The steady state before and after announcing on change, at the fitted costs of the
    last full run (results/sim.json: fitting them again takes most of a full run). ``reuse``:
    a previous results file whose rows for the old load (every 30 s) are taken as they are
    (the simulator is deterministic: the same code gives the same figures)."""
    started = time.perf_counter()
    load_before = list(os.getloadavg())
    fitted = json.loads((RESULTS / "sim.json").read_text())["costs"]
    costs_a, costs_b = Costs(**fitted["a"]), Costs(**fitted["b"])
    if reuse is not None:
        previous = json.loads(reuse.read_text())
        old, old_loaded = previous["steady"], previous["revocation_loaded_old"]
    else:
        old_runs = [(100, 1.0, 10.0), (300, 1.0, 10.0), (1000, 0.1, 10.0), (3000, 0.03, 10.0)]
        if not quick:
            old_runs.append((10000, 0.01, 10.0))
        old = [steady_figures(n, costs_a, thin, w, OLD_LOAD) for n, thin, w in old_runs]
        for row in old:
            row["cpu_b"] = cpu_at(row, costs_b)
        old_loaded = loaded_revocation(1000, costs_a, OLD_LOAD)
    results: dict[str, Any] = {
        **stamp("sim --steady"),
        "links": asdict(WAN),
        "costs": {"a": asdict(costs_a), "b": asdict(costs_b), "from": "results/sim.json"},
        "gossip": asdict(Gossip()),
        "old_load": asdict(OLD_LOAD),
        "steady": old,
        "old_rows_from": str(reuse) if reuse is not None else None,
        "new_design": new_design(costs_a, costs_b, quick),
        "revocation_loaded_old": old_loaded,
    }
    results["load_average"] = {"start": load_before, "end": list(os.getloadavg())}
    results["wall_s"] = time.perf_counter() - started
    name = "sim-steady-quick.json" if quick else "sim-steady.json"
    write_result(RESULTS / name, results)
    print(f"saved benchmarks/results/{name} ({results['wall_s']:.0f} s)")
    if plot:
        steady_plot(old, results["new_design"]["steady"])
        print("plot in docs/img/sim-steady.png")


if __name__ == "__main__":
    main()
