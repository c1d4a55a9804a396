"""What a Prometheus scrape costs.

1. ``render``: turning one snapshot of the daemon's views into exposition text (what the
   endpoint does in a worker thread, off the event loop), for synthetic memberships of N
   members, each a WireGuard peer with a handshake and byte counters: median time and size.
2. ``gather``: taking that snapshot on the event loop, in a daemon (in process, the
   in-memory WireGuard device holding every member as a peer) loaded from a synthetic store of
   N members: the figures the catalogue reads (``meshd.daemon.metrics_views``) beside what a
   scrape took before, the whole ``status`` and ``peers`` views as the control socket answers
   them; CPU time, median of the rounds.
3. ``scrape``: a real daemon (``meshd up --wg-backend none --metrics``, one member) scraped
   with urllib, wall time per request, after a warm-up scrape (which imports
   prometheus_client).

    .venv/bin/python -m benchmarks.metrics [--rounds 20] [--gather-sizes 1000 10000]

Prints a table and saves benchmarks/results/metrics.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import trio
import trio.testing

from benchmarks.synthetic_store import build_store
from meshd.control.commands import PeersAnswer, PeersRequest, StatusAnswer, StatusRequest
from meshd.control.typed_json import to_json
from meshd.daemon.metrics import gather, render
from meshd.metrics.snapshot import Snapshot
from meshd.node.statedir import NodeDir, now
from tests.daemon.fakes import run_on_fake_clock, running
from tests.daemon.support import Daemon, daemons, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "metrics.json"
SIZES = (10, 100, 1000, 10000)
NOW = 1_800_000_000.0


def snapshot(members: int) -> Snapshot:
    status: dict[str, Any] = {
        "node_id": "a" * 26, "name": "n0", "network": "bench", "network_id": "b" * 26,
        "members": members, "expired": 0, "revoked": 0, "records": 3 * members,
        "pending": 0, "pending_evicted": 0, "accepted": 5 * members,
        "rejected": {"bad-signature": 1, "rate-limited": 2}, "connected": 6, "uptime": 100.0,
        "tasks": 60, "wireguard": {"backend": "userspace", "peers": members - 1,
                                   "desired_peers": members - 1, "rounds": 10, "errors": 0},
        "budgets": {"sync_sessions_open": 0, "sync_sessions_refused": 0},
        "shed": {"handshakes": 0, "strangers_held": 0},
    }  # fmt: skip
    peers = [
        {"name": f"member-{i}", "node_id": f"{i:026d}", "state": "admitted", "wg_peer": True,
         "last_handshake": NOW - i % 120, "rx_bytes": 1000 * i, "tx_bytes": 2000 * i,
         "not_after": 2_000_000_000, "credentials_end": 2_000_000_000, "route": "direct"}
        for i in range(members)
    ]  # fmt: skip
    return Snapshot(NOW, status, peers, {"routes": [], "neighbours": []}, 1)


def time_render(members: int, rounds: int) -> dict[str, float]:
    shot = snapshot(members)
    size = len(render(shot))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        render(shot)
        times.append(time.perf_counter() - start)
    return {"members": members, "median_ms": statistics.median(times) * 1000, "bytes": size}


def time_gather(members: int, rounds: int) -> dict[str, float]:
    """CPU seconds of one snapshot's figures, and of the whole views a scrape once took."""
    with tempfile.TemporaryDirectory() as tmp:
        build_store(Path(tmp) / "n", members)
        node = NodeDir.open(Path(tmp) / "n")
        figures: list[float] = []
        views: list[float] = []
        wg_peers = 0

        async def main() -> None:
            nonlocal wg_peers
            async with running(node, now()) as (daemon, _transport, backend):
                await trio.testing.wait_all_tasks_blocked()
                wg_peers = len(backend.state.peers)
                for _ in range(rounds):
                    start = time.process_time()
                    await gather(daemon, daemon.state.traffic)
                    figures.append(time.process_time() - start)
                    start = time.process_time()
                    to_json(await daemon.control.ask(StatusRequest(), StatusAnswer))
                    to_json(await daemon.control.ask(PeersRequest(), PeersAnswer))
                    views.append(time.process_time() - start)

        try:
            run_on_fake_clock(main)  # the daemon's timers jump: WireGuard programmed at once
        finally:
            node.close()
    return {
        "members": members,
        "wireguard_peers": wg_peers,
        "figures_s": statistics.median(figures),
        "views_s": statistics.median(views),
    }


def time_scrapes(rounds: int) -> dict[str, float]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp, daemons(Path(tmp), "n0") as (node,):
        assert isinstance(node, Daemon)
        node.init()
        node.up("--metrics", f"127.0.0.1:{port}")
        url = f"http://127.0.0.1:{port}/metrics"
        start = time.perf_counter()
        urllib.request.urlopen(url, timeout=30).read()
        first = time.perf_counter() - start
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            urllib.request.urlopen(url, timeout=30).read()
            times.append(time.perf_counter() - start)
    return {"first_ms": first * 1000, "median_ms": statistics.median(times) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--gather-sizes", type=int, nargs="*", default=[1000, 10000])
    args = parser.parse_args()
    renders = [time_render(n, args.rounds) for n in SIZES]
    print("render (worker thread):")
    for row in renders:
        print(f"  {row['members']:>6} members: {row['median_ms']:8.1f} ms, {row['bytes']:>9} bytes")
    gathers = [time_gather(n, min(args.rounds, 5)) for n in args.gather_sizes]
    print("gather (event loop, CPU; median): the catalogue's figures, and the whole views")
    for g in gathers:
        print(
            f"  {g['members']:>6} members ({g['wireguard_peers']} WireGuard peers): "
            f"{g['figures_s'] * 1000:8.1f} ms, views {g['views_s'] * 1000:8.1f} ms"
        )
    scrapes = time_scrapes(args.rounds)
    print(
        f"scrape of a running daemon (1 member): first {scrapes['first_ms']:.0f} ms "
        f"(imports prometheus_client), then median {scrapes['median_ms']:.1f} ms"
    )
    RESULTS.write_text(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "rounds": args.rounds,
                "render": renders,
                "gather": gathers,
                "scrape": scrapes,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
