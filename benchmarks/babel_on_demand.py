"""Babel's cost per member on a full mesh, members' routes flooded against on demand.

The real Babel core on the simulator's links (meshd/sim/babel_net.py: 50 +- 20 ms one way,
1 % loss, 4 s Hellos, ``unicast-peers`` as on ``wg0``), every member a neighbour of every
other and every member a relay (the costliest case: what a LAN without NAT, or ``--relay
on`` everywhere, gives). Two designs, run back to back at each size with the same seed:

* **flooded** (the daemon before routes on demand): every member announces every route it
  selected to every neighbour;
* **on demand** (``CoreConfig.on_demand`` naming every other member's overlay /128, as
  ``BabelService._on_demand`` does): with every direct path working nobody asks, so a
  member announces its own /128 alone.

After 20 s of convergence the cost is taken over 64 s (four update intervals): Babel's UDP
payloads sent and received per member per second, and the routes each member holds.

    nice -n 10 .venv/bin/python -m benchmarks.babel_on_demand [--sizes 8 16 24] [--seed 1]

Results: printed, and saved to benchmarks/results/babel-on-demand.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from meshd.babel.config import CoreConfig
from meshd.babel.sources import IPNetwork
from meshd.sim.babel_net import INTERFACE, BabelNet, overlay
from meshd.sim.babel_relays import full_mesh_links, window_cost
from meshd.sim.params import Links

RESULTS = Path(__file__).resolve().parent / "results"
WAN = Links(latency=0.050, jitter=0.020, loss=0.01)
HELLO = 4.0
SETTLE = 20.0
WINDOW = 64.0


def on_demand(node: int) -> CoreConfig:
    own = overlay(node)

    def demand(interface: str, prefix: IPNetwork, source: IPNetwork | None) -> bool:
        return interface == INTERFACE and source is None and prefix != own

    return CoreConfig(on_demand=demand)


def run(members: int, seed: int, config: Callable[[int], CoreConfig] | None) -> dict[str, Any]:
    started = time.perf_counter()
    net = BabelNet(
        members, full_mesh_links(members), seed, wan=WAN, hello_interval=HELLO, config=config
    )
    net.run(SETTLE)
    before = net.counters()
    net.run(WINDOW)
    after = net.counters()
    everyone = list(range(members))
    cost = window_cost(before, after, everyone, WINDOW)
    routes = sum(len(net.nodes[i].core.routes()) for i in everyone) / members
    direct = all(
        net.nodes[i].core.route(overlay(j)) is not None for i in everyone for j in everyone
    )
    return {
        "members": members,
        "cost": asdict(cost),
        "routes_per_member": routes,
        "every_member_routed": direct,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 24])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "benchmark": "babel_on_demand",
        "commit": _commit(),
        "links": asdict(WAN),
        "hello_interval": HELLO,
        "window_s": WINDOW,
        "seed": args.seed,
        "load_average": os.getloadavg(),
        "rows": [],
    }
    for members in args.sizes:
        row: dict[str, Any] = {"members": members}
        for name, config in (("flooded", None), ("on_demand", on_demand)):
            row[name] = run(members, args.seed, config)
            c = row[name]["cost"]
            print(
                f"{members:>4} members, {name:>9}: {c['datagrams']:.1f} datagrams/s, "
                f"{c['bytes'] / 1000:.3f} kB/s per member, "
                f"{row[name]['routes_per_member']:.0f} routes each "
                f"(wall {row[name]['wall_s']} s)",
                flush=True,
            )
        result["rows"].append(row)
    result["end_load_average"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "babel-on-demand.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
