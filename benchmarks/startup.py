"""Start-up of a real ``meshd up`` from a large store, beside a reference tree, in one run.

One synthetic store of ``--members`` members (``benchmarks.synthetic_store.build_store``: the root
certifies every member, each member announces, merged by the membership core and written by
the store as a running daemon writes it, so its rows are sealed) is started from, in turns:

* ``reference``: the tree given by ``--reference`` (a clone of the commit before a change);
* ``this``: this tree;
* ``this, unsealed``: this tree on the same store with every seal removed (a store written
  by a release before seals, or before a node key rotation: verified in full, then sealed);
* ``this, restarted``: this tree on a copy of the store it has run on once and stopped
  cleanly (SIGTERM): a restart, which sets the peers that stop kept while the store loads
  (docs/wireguard.md, "A restart sets the peers it had"); ``--no-restarted`` skips it.

Each start is a fresh copy of the state dir and a fresh network namespace, with the
userspace backend (wireguard-go), so every member is a WireGuard peer. Times are from
spawning ``python -m meshd up`` to its log lines: the store loaded, the WireGuard interface
opened, the kept peers set (a restart), WireGuard programmed from the store (every member a
peer: the first round from the judged store, after the kept peers where there are), and for
this tree the next round that sets peers (the keepalives). The steps between them are
printed too, in the order they came: the interface is opened first, then the store is
loaded (the interpreters, their imports, reading and merging the store; the kept peers set
meanwhile), then the first round (the desired peers, the plan and the UAPI sets). Serving is
the daemon's ``meshd up: node ...`` line: every service started, the control socket answers.
Needs root and wireguard-go. Every process is stopped by PID and every namespace deleted.

    .venv/bin/python -m benchmarks.startup --reference /tmp/clone-ref [--members 10000]
        [--rounds 2] [--joined certified|invited|single-use]

Results: printed, and saved to benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.measured_daemon import (
    have_userspace,
    log_time,
    namespace,
    stop_with_wireguard,
    up_command,
)
from benchmarks.synthetic_store import build_store

RESULTS = Path(__file__).parent / "results" / "startup.json"
ROOT = Path(__file__).resolve().parent.parent
LOADED = "loaded "
OPENED = "(userspace): key "
PROGRAMMED = "programmed from the store"
KEPT = "peers set as the last stop kept them"
STEPS = ("loaded_s", "opened_s", "programmed_s")
SERVING = "meshd up: node "  # every service started: the control socket answers
NEXT_ROUND_WAIT = 120.0  # s after WireGuard is programmed, for the round after it


def commit_of(tree: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def unseal(state_dir: Path) -> None:
    with contextlib.closing(sqlite3.connect(state_dir / "meshd.db")) as db:
        db.execute("UPDATE records SET seal = NULL")
        db.execute("UPDATE announcements SET seal = NULL")
        db.commit()


def start_once(
    tree: Path, state_dir: Path, tag: str, timeout: float, next_round: bool
) -> dict[str, Any]:
    """Start ``meshd up`` from ``tree`` on ``state_dir`` until WireGuard is programmed (and
    the round after it), then stop it."""
    ifname = f"ms{tag}"[:15]
    python = tree / ".venv" / "bin" / "python"
    with namespace(f"meshd-start-{tag}") as netns:
        command = up_command(python, netns, state_dir, "userspace", ifname, 51820)
        log_path = state_dir.parent / f"{state_dir.name}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        load = os.getloadavg()[0]
        with open(log_path, "wb") as log_file:
            spawned = time.time()
            process = subprocess.Popen(
                command, cwd=tree, stdout=log_file, stderr=subprocess.STDOUT, env=env
            )
        try:
            deadline = time.monotonic() + timeout
            result: dict[str, Any] = {"load_average": round(load, 1)}
            programmed: int | None = None
            after: list[str] = []
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"meshd up exited: {log_path.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"meshd up did not program WireGuard in {timeout} s")
                lines = log_path.read_text(errors="replace").splitlines()
                if programmed is None:
                    programmed = next((i for i, ln in enumerate(lines) if PROGRAMMED in ln), None)
                    waited = time.monotonic()
                serving = any(SERVING in ln for ln in lines)
                if programmed is not None and serving:
                    marker = f"WireGuard {ifname}: UpdatePeer("  # a round that set peers
                    after = [ln for ln in lines[programmed + 1 :] if marker in ln]
                    if after or not next_round or time.monotonic() - waited > NEXT_ROUND_WAIT:
                        break
                time.sleep(0.05)
            loaded = next((ln for ln in lines if LOADED in ln), None)
            if loaded is not None:
                result["loaded_s"] = round(log_time(loaded) - spawned, 3)
                result["loaded_line"] = loaded.split(" ", 1)[1][:160]
            opened = next((ln for ln in lines if OPENED in ln), None)
            if opened is not None:
                result["opened_s"] = round(log_time(opened) - spawned, 3)
            kept = next((ln for ln in lines if KEPT in ln), None)
            if kept is not None:
                result["kept_s"] = round(log_time(kept) - spawned, 3)
            assert programmed is not None
            result["programmed_s"] = round(log_time(lines[programmed]) - spawned, 3)
            up = next(ln for ln in lines if SERVING in ln)
            result["serving_s"] = round(log_time(up) - spawned, 3)
            if after:
                result["next_round_s"] = round(log_time(after[0]) - spawned, 3)
            return result
        finally:
            stop_with_wireguard(process, ifname)


def steps(row: dict[str, float]) -> dict[str, float]:
    """The intervals between a start's log lines (those it has), in the order they came."""
    found = [(key.removesuffix("_s"), row[key]) for key in STEPS if key in row]
    marks = [("spawn", 0.0), *sorted(found, key=lambda mark: mark[1])]
    return {f"{a}>{b}": round(tb - ta, 3) for (a, ta), (b, tb) in itertools.pairwise(marks)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reference", type=Path, required=True, help="the tree to compare to")
    parser.add_argument("--members", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-unsealed", action="store_true", help="skip the start from an unsealed store"
    )
    parser.add_argument(
        "--no-restarted", action="store_true", help="skip the restart after a clean stop"
    )
    parser.add_argument(
        "--joined",
        choices=("certified", "invited", "single-use"),
        default="certified",
        help="how the store's members joined (benchmarks.synthetic_store)",
    )
    args = parser.parse_args()
    if not have_userspace():
        print("needs root and wireguard-go", file=sys.stderr)
        return 2
    trees = {"reference": args.reference.resolve(), "this": ROOT}
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "members": args.members,
        "commits": {name: commit_of(tree) for name, tree in trees.items()},
        "runs": [],
    }
    variants = [("reference", False), ("this", False)]
    if not args.no_unsealed:
        variants.append(("this, unsealed", True))
    if not args.no_restarted:
        variants.append(("this, restarted", False))
    for tree in trees.values():  # no run pays for compiling the bytecode
        subprocess.run(
            [str(tree / ".venv" / "bin" / "python"), "-m", "compileall", "-q", "meshd"],
            cwd=tree,
            check=True,
        )
    with tempfile.TemporaryDirectory(prefix="meshd-startup-") as tmp:
        store = Path(tmp) / "store"
        results["store"] = build_store(store, args.members, args.joined)
        results["joined"] = args.joined
        print(json.dumps({"commits": results["commits"], "store": results["store"]}))
        for round_ in range(args.rounds):
            for name, unsealed in variants:
                tree = trees[name.split(",")[0]]
                state_dir = Path(tmp) / f"run{round_}-{len(results['runs'])}"
                shutil.copytree(store, state_dir)
                if unsealed:
                    unseal(state_dir)
                tag = f"{os.getpid() % 1000}{len(results['runs'])}"
                if name.endswith("restarted"):  # a first start, stopped cleanly, unmeasured
                    start_once(tree, state_dir, f"{tag}f", args.timeout, False)
                run = start_once(tree, state_dir, tag, args.timeout, name != "reference")
                row = {"variant": name, "round": round_, **run}
                results["runs"].append(row)
                print(json.dumps(row))
                shutil.rmtree(state_dir)
    summary: dict[str, Any] = {}
    for name, _ in variants:
        rows = [r for r in results["runs"] if r["variant"] == name]
        summary[name] = {
            key: statistics.median(r[key] for r in rows)
            for key in (
                "loaded_s",
                "opened_s",
                "kept_s",
                "programmed_s",
                "serving_s",
                "next_round_s",
            )
            if all(key in r for r in rows)
        }
    results["median"] = summary
    print()
    print(f"{args.members} members, median of {args.rounds} rounds (s from spawning meshd up)")
    print("variant            loaded  opened    kept  programmed  serving  next round")
    for name, row in summary.items():
        print(
            f"{name:17s}  {row.get('loaded_s', float('nan')):6.2f}  "
            f"{row.get('opened_s', float('nan')):6.2f}  "
            f"{row.get('kept_s', float('nan')):6.2f}  "
            f"{row.get('programmed_s', float('nan')):10.2f}  "
            f"{row.get('serving_s', float('nan')):7.2f}  "
            f"{row.get('next_round_s', float('nan')):10.2f}"
        )
    results["steps"] = {name: steps(row) for name, row in summary.items()}
    print("steps (s, of the medians)")
    for name, row in results["steps"].items():
        print(f"{name:17s}  " + "  ".join(f"{step} {value:.2f}" for step, value in row.items()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
