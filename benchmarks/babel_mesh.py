"""Babel's own traffic on the WireGuard mesh, per member, in a lab of real daemons.

Lab (root): ``--hosts`` members on one LAN, the last ``--relays`` of them ``--relay on``
and the others ``--relay off`` (by default all relay: a LAN with no NAT is what ``--relay
auto`` also makes relays of, and up to 8 of them are the mesh's relays, the costliest
case), Babel at ``--hello`` seconds (full updates every 4 Hellos). Once every pair has
shaken hands and every pair talks, the shell's counters (``meshd routes --json``:
datagrams and payload bytes sent and received) are read on every member, again after
``--window`` seconds, and the difference is the cost per member per second. The route
table's size and the neighbours are recorded with it, and the WireGuard interface's own
bytes (``wg show dump``: everything the tunnels carried, Babel, WireGuard's keepalives
and handshakes, on the wire as WireGuard counts it), so that what a member without Babel
to the others spends instead is counted too.

Then UDP between h1 and h2 is dropped in the lab's router (as tests/lab_mesh/test_root_relay
does), and the time until the two ping each other again through a relay is taken, with the
cost over a second window while they are relayed.

    .venv/bin/python -m benchmarks.babel_mesh [--hosts 8] [--relays 8] [--reference] \
        [--hello 1] [--window 40] [--label X]

``--reference`` runs the same lab first with every member relaying (every member a Babel
neighbour of every other, as before the mesh's relays), so both are measured side by side
in one run.

Results: printed, and saved to benchmarks/results/babel-mesh[-LABEL].json. Payload bytes are
Babel's alone; on the wire each datagram adds 40 (IPv6) + 8 (UDP) + 32 (WireGuard) bytes and
the underlay's IP and UDP headers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import meshd
from meshd.lab import Lab
from meshd.lab.demo import LabMesh, wait_for

RESULTS = Path(__file__).resolve().parent / "results"
COUNTERS = ("sent", "received", "sent_bytes", "received_bytes", "wg_tx_bytes", "wg_rx_bytes")


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def snapshot(mesh: LabMesh, hosts: list[str]) -> dict[str, dict[str, Any]]:
    """Each member's counters, table size and neighbours, with the time of reading."""
    out: dict[str, dict[str, Any]] = {}
    for host in hosts:
        view = mesh.node(host).ask("routes")
        counters = dict(view.get("counters", {}))
        peers = mesh.wg_peers(host).values()
        counters["wg_tx_bytes"] = sum(p.tx_bytes for p in peers)
        counters["wg_rx_bytes"] = sum(p.rx_bytes for p in peers)
        out[host] = {
            "at": time.monotonic(),
            **{name: int(counters.get(name, 0)) for name in COUNTERS},
            "routes": len(view.get("routes", [])),
            "neighbours": len(view.get("neighbours", [])),
        }
    return out


def cost(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], relays: list[str]
) -> dict[str, Any]:
    """Per member per second, and the mean, median and max over members: over all of them,
    over the members that do not relay (``plain``) and over the relays."""
    per: dict[str, dict[str, float]] = {}
    for host, b in before.items():
        a = after[host]
        span = a["at"] - b["at"]
        per[host] = {name: (a[name] - b[name]) / span for name in COUNTERS}
        per[host]["routes"] = a["routes"]
        per[host]["neighbours"] = a["neighbours"]
    groups = {
        "all": list(per),
        "plain": [h for h in per if h not in relays],
        "relays": [h for h in per if h in relays],
    }
    summaries: dict[str, Any] = {}
    for group, members in groups.items():
        if not members:
            continue
        summary: dict[str, Any] = {}
        for name in (*COUNTERS, "routes", "neighbours"):
            values = [per[h][name] for h in members]
            summary[name] = {
                "mean": round(statistics.fmean(values), 2),
                "median": round(statistics.median(values), 2),
                "max": round(max(values), 2),
            }
        summaries[group] = summary
    return {"summary": summaries["all"], "by_role": summaries, "per_member": per}


def run(args: argparse.Namespace, relay_count: int) -> dict[str, Any]:
    """One lab of ``args.hosts`` members, the last ``relay_count`` of them relaying."""
    hosts = [f"h{n}" for n in range(1, args.hosts + 1)]
    relays = hosts[len(hosts) - relay_count :]
    result: dict[str, Any] = {"relays": len(relays), "load_before": os.getloadavg()}
    with Lab(args.hosts) as lab:
        mesh = LabMesh(lab, network="babelmesh")
        try:
            for host in hosts:
                relay = "on" if host in relays else "off"
                mesh.node(host).extra = (
                    "--babel-hello-interval",
                    str(args.hello),
                    "--relay",
                    relay,
                )
            mesh.init(hosts[0])
            mesh.up(hosts[0])
            started = time.monotonic()
            mesh.join_all(hosts[0], hosts[1:], timeout=120)
            wait_for(lambda: mesh.handshakes_done(hosts), 60, "a handshake between every pair")
            wait_for(
                lambda: mesh.routes_direct(hosts) or _no_babel_direct(mesh, hosts),
                60,
                "every pair routed directly",
            )
            result["joined_s"] = round(time.monotonic() - started, 1)
            time.sleep(3 * 4 * args.hello)  # three full update intervals to settle
            before = snapshot(mesh, hosts)
            time.sleep(args.window)
            after = snapshot(mesh, hosts)
            result["steady"] = cost(before, after, relays)

            lab.block_udp("h1", "h2")
            cut = time.monotonic()
            took = wait_for(
                lambda: all(mesh.ping_pairs([("h1", "h2"), ("h2", "h1")]).values()),
                90,
                "h1 and h2 to talk through a relay",
            )
            result["relayed_after_s"] = round(time.monotonic() - cut, 2)
            result["relayed_wait_s"] = round(took, 2)
            before = snapshot(mesh, hosts)
            time.sleep(args.window)
            after = snapshot(mesh, hosts)
            result["relayed"] = cost(before, after, relays)
            result["relayed_still"] = all(
                mesh.ping_pairs([("h1", "h2"), ("h2", "h1")], count=3).values()
            )
            lab.unblock_udp("h1", "h2")
        finally:
            mesh.close()
    result["load_after"] = os.getloadavg()
    return result


def report(label: str, result: dict[str, Any]) -> None:
    for phase in ("steady", "relayed"):
        for role, s in result[phase]["by_role"].items():
            print(
                f"{label} {phase} {role}: per member {s['sent']['mean']:.2f} datagrams/s and "
                f"{s['sent_bytes']['mean'] / 1000:.3f} kB/s sent "
                f"(max {s['sent_bytes']['max'] / 1000:.3f}),"
                f" {s['received_bytes']['mean'] / 1000:.3f} kB/s received; "
                f"routes {s['routes']['mean']:.1f}, neighbours {s['neighbours']['mean']:.1f}; "
                f"WireGuard {s['wg_tx_bytes']['mean'] / 1000:.3f} kB/s sent, "
                f"{s['wg_rx_bytes']['mean'] / 1000:.3f} kB/s received"
            )
    print(f"{label}: h1 <-> h2 relayed {result['relayed_after_s']} s after UDP was dropped")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--relays", type=int, default=None, help="default: every host")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="first the same lab with every member relaying, for a side-by-side figure",
    )
    parser.add_argument("--hello", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=40.0)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    relay_count = args.hosts if args.relays is None else args.relays
    result: dict[str, Any] = {
        "benchmark": "babel_mesh",
        "commit": _commit(),
        "meshd": meshd.__version__,
        "python": platform.python_version(),
        "hosts": args.hosts,
        "hello": args.hello,
        "window": args.window,
    }
    if args.reference:
        result["reference"] = run(args, args.hosts)
        report(f"reference ({args.hosts} relay)", result["reference"])
    result.update(run(args, relay_count))
    report(f"{relay_count} relay", result)
    RESULTS.mkdir(exist_ok=True)
    name = "babel-mesh" + (f"-{args.label}" if args.label else "") + ".json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {RESULTS / name}")
    return 0


def _no_babel_direct(mesh: LabMesh, hosts: list[str]) -> bool:
    """Every member pings every other (where Babel does not route direct pairs)."""
    pairs = [(a, b) for a in hosts for b in hosts if a < b]
    return all(mesh.ping_pairs(pairs).values())


if __name__ == "__main__":
    raise SystemExit(main())
