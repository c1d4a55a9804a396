"""A symmetric-NATed member restarted: how soon another one reaches it through the relay.

Lab: h1 public (founder, ``--relay on``), h2 and h3 each behind its own symmetric NAT, so
that they can never reach each other directly. Babel at its default Hello (4 s). Each round
stops h3's daemon, waits 1 s, starts it again (``meshd up``, as a user would), and measures
from that start to the first ping h2 -> h3 over the overlay that comes back (pings of 0.3 s
tried back to back): the daemon's own start-up, its WireGuard, the failed direct attempt,
Babel's route through h1 and WireGuard's relayed handshakes are all in it. Needs root.

Before the relay work (b8c81b8) the new peer's overlay address was held on its own peer for
the whole hold-down (16 s at the default Hello); now its hold ends 2 s after it appeared
without a handshake (docs/nat.md, "Relays"). To measure code without ``--relay``, run this
file with that code first on PYTHONPATH and ``--no-relay-option``.

    .venv/bin/python -m benchmarks.relay [--rounds 5] [--label before-b8c81b8]

Results: printed, and saved to benchmarks/results/relay[-LABEL].json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import meshd
from meshd.lab import Lab
from meshd.lab.demo import LabMesh, wait_for

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--label", default="")
    parser.add_argument("--no-relay-option", action="store_true")
    args = parser.parse_args()
    took: list[float] = []
    with Lab(1) as lab:
        for name in ("sa", "sb"):
            lab.add_host(behind=lab.add_nat(name, kind="symmetric"))
        mesh = LabMesh(lab, network="relaybench")
        try:
            if not args.no_relay_option:
                mesh.node("h1").extra = ("--relay", "on")
            mesh.init("h1")
            mesh.up("h1")
            mesh.join_all("h1", ["h2", "h3"])
            wait_for(lambda: all(mesh.ping_pairs([("h2", "h3")]).values()), 60, "a first relay")
            for _ in range(args.rounds):
                mesh.stop("h3")
                time.sleep(1)
                start = time.monotonic()
                mesh.up("h3", wait=False)
                wait_for(
                    lambda: all(mesh.ping_pairs([("h2", "h3")], wait=0.3).values()),
                    60,
                    "h2 -> h3 through h1",
                )
                took.append(time.monotonic() - start)
                print(f"round {len(took)}: h2 -> h3 through the relay {took[-1]:.2f} s after start")
        finally:
            mesh.close()
    code = Path(meshd.__file__).resolve().parent  # the meshd measured (PYTHONPATH)
    commit = subprocess.run(
        ["git", "-C", str(code), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    result = {
        "benchmark": "relay",
        "what": "symmetric-NATed member restarted -> first ping to it through the relay, s",
        "rounds": took,
        "median": statistics.median(took),
        "label": args.label,
        "commit": commit,
        "machine": platform.platform(),
    }
    print(json.dumps(result))
    name = f"relay-{args.label}.json" if args.label else "relay.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
