"""Babel off the full mesh, in the simulator: a relay fails at 1,000 members, and the cost.

The real Babel core (meshd/babel/core.py) on every node that runs Babel in the design of
docs/performance.md ("Babel off the full mesh"): relays and the members behind symmetric NAT,
over the simulator's links (50 +- 20 ms one way, 1 % loss, UDP: a lost datagram is lost),
4 s Hellos (the daemon's default). meshd/sim/babel_relays.py has the scenario.

1. **reroute**: at 100, 300 and 1,000 members (10 % behind symmetric NAT, 4 relays), the
   relay carrying the most pairs fails; the time until every pair of NATed members that went
   through it is usable through another relay (both ends' next hops, mirrored); the loop
   check at every route change; pairs broken afterwards (a link that lost two Hellos in a
   row at 1 % loss is down for a Hello or two) counted apart.
2. **cost** per node (datagrams and bytes per second, sent and received, and the CPU spent
   inside the cores) over 64 s of steady state: the relayed design at those sizes, and
   today's full mesh (every member a neighbour of every other, every member relaying) at
   8, 16 and 24 members, where the real core still runs in minutes.
3. **model**: two constants (bytes of Hello and IHU per neighbour, bytes per route per
   update) fitted on every node of those runs, checked against each run, then applied
   where the real core is not run: the full mesh from 100 members, the relayed design at
   3,000 and 10,000.

    nice -n 10 .venv/bin/python -m benchmarks.sim_babel [--quick] [--plots]

Results in benchmarks/results/sim-babel.json (``--quick``: sim-babel-quick.json, 100 and
300 members only; ``--hello S``: another Hello interval, ``-helloS`` in the name); ``--plots``
writes docs/img/sim-babel-cost.png and
docs/img/sim-babel-reroute.png (matplotlib, a dev dependency).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from benchmarks.fixtures import (
    RESULTS,
    pyplot,
    save_figure,
    simulator_options,
    stamp,
    write_result,
)
from meshd.sim.babel_cost_model import (
    CostModel,
    fit_model,
    model_design,
    model_full_mesh,
    roles,
)
from meshd.sim.babel_net import BabelNet
from meshd.sim.babel_relays import (
    Cost,
    Design,
    full_mesh_links,
    relay_failure,
    window_cost,
)
from meshd.sim.params import Links

WAN = Links(latency=0.050, jitter=0.020, loss=0.01)
HELLO = 4.0
WINDOW = 64.0  # four update intervals


class CpuTally:
    """CPU seconds spent inside each core's entry points (receive, timers, sending)."""

    def __init__(self, net: BabelNet) -> None:
        self.cpu = [0.0] * len(net.nodes)
        for node in net.nodes:
            self._wrap(node.core, node.index)

    def _wrap(self, core: Any, index: int) -> None:
        cpu = self.cpu

        def timed(fn: Any) -> Any:
            def run(*args: Any) -> Any:
                started = time.process_time()
                try:
                    return fn(*args)
                finally:
                    cpu[index] += time.process_time() - started

            return run

        core.receive = timed(core.receive)
        core.handle_timer = timed(core.handle_timer)
        core.datagrams_to_send = timed(core.datagrams_to_send)


def _node_samples(
    before: Sequence[Any], after: Sequence[Any], nodes: Sequence[tuple[int, int, float]]
) -> list[tuple[int, float, Cost]]:
    """``(neighbours, routes_each, cost)`` for each ``(index, neighbours, routes_each)``."""
    return [(n, r, window_cost(list(before), list(after), [i], WINDOW)) for i, n, r in nodes]


def relayed_run(
    members: int, seed: int, nat_share: float, relays: int, hello: float = HELLO
) -> dict[str, Any]:
    design = Design(members, nat_share=nat_share, relays=relays)
    tally: dict[str, Any] = {}

    def probe(when: str, net: BabelNet) -> None:
        if "cpu" not in tally:
            tally["cpu"] = CpuTally(net)
        tally[when] = (list(tally["cpu"].cpu), net.counters())

    started = time.perf_counter()
    _net, result = relay_failure(
        design, seed, wan=WAN, hello_interval=hello, window=WINDOW, probe=probe
    )
    wall = time.perf_counter() - started
    cpu_start, counters_start = tally["start"]
    cpu_end, counters_end = tally["end"]
    role = roles(design)
    nodes = [
        (
            i,
            role["relay"][0] if design.is_relay(i) else role["nated"][0],
            role["relay"][1] if design.is_relay(i) else role["nated"][1],
        )
        for i in range(design.babel_nodes)
    ]
    cpu = [(cpu_end[i] - cpu_start[i]) / WINDOW for i in range(design.babel_nodes)]
    relay_cpu = statistics.mean(cpu[: design.relays])
    nated_cpu = statistics.mean(cpu[design.relays :])
    row: dict[str, Any] = {
        "members": members,
        "seed": seed,
        "nat_share": nat_share,
        "relays": relays,
        "nated": design.nated,
        "pairs": result.pairs,
        "converged_s": result.converged_at,
        "failed_relay": result.failed_relay,
        "affected_pairs": result.affected_pairs,
        "reroute_s": result.reroute,
        "reroute_first_s": result.reroute_first,
        "reroute_median_s": statistics.median(result.delays) if result.delays else None,
        "delays_s": list(result.delays),
        "settled_s": result.settled,
        "broken_unaffected": result.broken_unaffected,
        "broken_again": result.broken_again,
        "loop_checks": result.loop_checks,
        "loops": 0,  # relay_failure raises RoutingLoop at the first one
        "route_changes": result.route_changes,
        "digest": result.digest,
        "cost": {name: asdict(cost) for name, cost in result.costs},
        "cpu": {
            "relay": relay_cpu,
            "nated": nated_cpu,
            "member": sum(cpu) / members,
        },
        "wall_s": wall,
        "samples": [
            [n, r, asdict(c)] for n, r, c in _node_samples(counters_start, counters_end, nodes)
        ],
    }
    reroute = f"{result.reroute:.2f} s" if result.reroute is not None else "never"
    print(
        f"relayed {members:>6} (seed {seed}): {design.nated} NATed, {relays} relays, "
        f"{result.affected_pairs}/{result.pairs} pairs through relay {result.failed_relay}: "
        f"all usable again after {reroute} (first {result.reroute_first}), "
        f"{result.loop_checks} loop checks, no loop; broken later by lost Hellos: "
        f"{result.broken_unaffected} other pairs, {result.broken_again} rerouted ones; "
        f"per member {row['cost']['member']['bytes'] / 1000:.3f} kB/s, per relay "
        f"{row['cost']['relay']['bytes'] / 1000:.2f} kB/s; wall {wall:.0f} s",
        flush=True,
    )
    return row


def full_mesh_run(members: int, seed: int, hello: float = HELLO) -> dict[str, Any]:
    """Today's design: every member a Babel neighbour of every other, all relaying."""
    started = time.perf_counter()
    net = BabelNet(members, full_mesh_links(members), seed, wan=WAN, hello_interval=hello)
    tally = CpuTally(net)
    net.run(20.0)
    cpu_before, before = list(tally.cpu), net.counters()
    net.run(WINDOW)
    after = net.counters()
    everyone = list(range(members))
    cost = window_cost(before, after, everyone, WINDOW)
    cpu = sum(tally.cpu[i] - cpu_before[i] for i in everyone) / WINDOW / members
    routes = sum(len(net.fwd[i]) for i in everyone) / members
    row: dict[str, Any] = {
        "members": members,
        "seed": seed,
        "routes_per_node": routes,
        "cost": asdict(cost),
        "cpu": cpu,
        "wall_s": time.perf_counter() - started,
        "samples": [
            [n, r, asdict(c)]
            for n, r, c in _node_samples(
                before, after, [(i, members - 1, float(members - 1)) for i in everyone]
            )
        ],
    }
    print(
        f"full mesh {members:>4}: {cost.datagrams:.1f} datagrams/s, {cost.bytes / 1000:.2f} kB/s"
        f", CPU in the core {cpu * 100:.2f} % per node ({routes:.0f} routes each)",
        flush=True,
    )
    return row


def _model_rows(
    model: CostModel, sizes: Sequence[int], nat_share: float, relays: int
) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        design = Design(n, nat_share=nat_share, relays=relays)
        relayed = model_design(model, design)
        full = model_full_mesh(model, n)
        rows.append(
            {
                "members": n,
                "full_mesh": asdict(full),
                "relayed": {role: asdict(cost) for role, cost in relayed.items()},
            }
        )
        print(
            f"model {n:>6}: full mesh {full.bytes / 1000:,.1f} kB/s, "
            f"{full.datagrams:,.0f} datagrams/s per node; relayed: member "
            f"{relayed['member'].bytes / 1000:.3f} kB/s, NATed "
            f"{relayed['nated'].bytes / 1000:.2f} kB/s, relay {relayed['relay'].bytes / 1000:.1f}"
            f" kB/s ({relayed['relay'].datagrams:.0f} datagrams/s)",
            flush=True,
        )
    return rows


def _check(model: CostModel, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model against each real run: per node, mean of the run's nodes."""
    out = []
    for row in rows:
        measured_b = statistics.mean(s[2]["bytes"] for s in row["samples"])
        measured_d = statistics.mean(s[2]["datagrams"] for s in row["samples"])
        modelled = [model.node(s[0], s[1]) for s in row["samples"]]
        model_b = statistics.mean(c.bytes for c in modelled)
        model_d = statistics.mean(c.datagrams for c in modelled)
        kind = "relayed" if "relays" in row else "full mesh"
        out.append(
            {
                "run": f"{kind} {row['members']}",
                "bytes_measured": measured_b,
                "bytes_model": model_b,
                "datagrams_measured": measured_d,
                "datagrams_model": model_d,
            }
        )
        print(
            f"model check, {kind} {row['members']}: {measured_b / 1000:.3f} kB/s measured, "
            f"{model_b / 1000:.3f} modelled; {measured_d:.2f} datagrams/s measured, "
            f"{model_d:.2f} modelled (mean over its Babel nodes)"
        )
    return out


def plots(results: dict[str, Any]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rows = results["model"]
    sizes = [r["members"] for r in rows]
    ax.loglog(
        sizes,
        [r["full_mesh"]["bytes"] / 1000 for r in rows],
        "k--",
        label="full mesh, per member (model)",
    )
    ax.loglog(
        sizes,
        [r["relayed"]["relay"]["bytes"] / 1000 for r in rows],
        "r--",
        label="relayed: per relay (model)",
    )
    ax.loglog(
        sizes,
        [r["relayed"]["nated"]["bytes"] / 1000 for r in rows],
        "b--",
        label="relayed: per NATed member (model)",
    )
    ax.loglog(
        sizes,
        [r["relayed"]["member"]["bytes"] / 1000 for r in rows],
        "g--",
        label="relayed: mean over all members (model)",
    )
    full = results["full_mesh"]
    ax.loglog(
        [r["members"] for r in full],
        [r["cost"]["bytes"] / 1000 for r in full],
        "ko",
        label="full mesh, real core",
    )
    relayed = results["relayed"]
    for key, style in (("relay", "ro"), ("nated", "bo"), ("member", "go")):
        ax.loglog(
            [r["members"] for r in relayed],
            [r["cost"][key]["bytes"] / 1000 for r in relayed],
            style,
        )
    ax.set_xlabel("members")
    ax.set_ylabel("kB/s per node (sent + received)")
    ax.set_title("Babel's steady cost (10 % behind symmetric NAT, 4 relays)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    save_figure(fig, "sim-babel-cost.png")

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for row in relayed:
        delays = row["delays_s"]
        if delays:
            ys = [(i + 1) / len(delays) for i in range(len(delays))]
            ax.step(
                delays, ys, where="post", label=f"{row['members']:,} members, seed {row['seed']}"
            )
    ax.set_xlabel("s after the relay fails")
    ax.set_ylabel("share of its pairs usable again")
    ax.set_title("Reroute after a relay fails (4 s Hellos, 50 ± 20 ms, 1 % loss)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, "sim-babel-reroute.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    simulator_options(parser, "100 and 300 members only", "write docs/img/sim-babel-*.png")
    parser.add_argument("--seeds", type=int, default=2, help="seeds at 1,000 members")
    parser.add_argument("--nat-share", type=float, default=0.10)
    parser.add_argument("--relays", type=int, default=4)
    parser.add_argument(
        "--hello", type=float, default=HELLO, help="Hello interval, s (the daemon's: 4)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, Any] = {
        **stamp("sim_babel"),
        "load_average": os.getloadavg(),
        "links": asdict(WAN),
        "hello_interval": args.hello,
        "window_s": WINDOW,
        "nat_share": args.nat_share,
        "relays": args.relays,
    }
    runs = [(100, 1), (300, 1)]
    if not args.quick:
        runs += [(1000, seed) for seed in range(1, args.seeds + 1)]
    results["relayed"] = [
        relayed_run(n, s, args.nat_share, args.relays, args.hello) for n, s in runs
    ]
    results["full_mesh"] = [full_mesh_run(n, 1, args.hello) for n in (8, 16, 24)]
    samples = [
        (int(s[0]), float(s[1]), Cost(**s[2]))
        for row in (*results["relayed"], *results["full_mesh"])
        for s in row["samples"]
    ]
    model = fit_model(args.hello, samples)
    results["model_constants"] = asdict(model)
    print(
        f"model: {model.hello_bytes:.1f} bytes of Hello and IHU per neighbour per Hello "
        f"interval (both ways), {model.route_bytes:.1f} bytes per route per update, "
        f"{model.update_datagrams:.2f} x the update datagrams"
    )
    results["model_check"] = _check(model, [*results["relayed"], *results["full_mesh"]])
    results["model"] = _model_rows(
        model, (100, 300, 1000, 3000, 10000), args.nat_share, args.relays
    )
    results["end_load_average"] = os.getloadavg()
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["wall_s"] = time.perf_counter() - started
    name = "sim-babel-quick" if args.quick else "sim-babel"
    if args.hello != HELLO:
        name += f"-hello{args.hello:g}"
    name += ".json"
    write_result(RESULTS / name, results, indent=1)
    print(f"saved benchmarks/results/{name} ({results['wall_s']:.0f} s)")
    if args.plots:
        plots(results)
        print("plots in docs/img/sim-babel-*.png")


if __name__ == "__main__":
    main()
