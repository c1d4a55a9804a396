"""Idle RSS of a daemon first started with ``meshd join`` (loopback, no WireGuard).

A founder (``meshd init`` + ``meshd up``) and a joiner (``meshd join``, which runs its daemon
once admitted) on 127.0.0.1 with ``--wg-backend none``; once the joiner's daemon answers on
its control socket, ``--settle`` seconds later its VmRSS is read from /proc/PID/status, and
whether typer, click or pydantic's compiled core is mapped (/proc/PID/maps). With
``--reference DIR`` the same runs from another checkout (a clone of another commit),
alternated round by round; each tree's meshd runs from its own directory.

    flock /tmp/meshd-bench.lock .venv/bin/python -m benchmarks.join_memory \\
        --reference /tmp/ref --rounds 3 --output benchmarks/results/join-memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.measured_daemon import stop
from benchmarks.synthetic_store import commit_of

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--wg-backend", "none", "--announce-interval", "60s", "--announce-ttl", "10m"]


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHD")}
    env["PYTHONPATH"] = str(tree)
    env["MESHD_CONFIG"] = "/dev/null"  # not this machine's /etc/meshd/meshd.toml
    return env


def _meshd(tree: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "meshd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tree,
        env=_env(tree),
    )
    if done.returncode != 0:
        raise SystemExit(f"meshd {args[0]} failed: {done.stderr}")
    return done.stdout


def _spawn(tree: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "meshd", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tree,
            env=_env(tree),
        )


def _wait_answering(tree: Path, process: subprocess.Popen[bytes], state: Path) -> float:
    start = time.monotonic()
    while time.monotonic() - start < 60:
        if process.poll() is not None:
            raise SystemExit(f"meshd exited ({process.returncode}); see the logs in {state}")
        done = subprocess.run(
            [sys.executable, "-m", "meshd", "status", "--state-dir", str(state)],
            capture_output=True,
            timeout=30,
            check=False,
            cwd=tree,
            env=_env(tree),
        )
        if done.returncode == 0:
            return time.monotonic() - start
        time.sleep(0.2)
    raise SystemExit(f"no answer from {state} within 60 s")


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} for {pid}")


def _mapped(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name in ("pydantic_core", "typer", "click") if f"/{name}/" in maps]


def one_run(tree: Path, settle: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="meshd-join-mem-") as tmp:
        base = Path(tmp)
        founder, joiner = base / "a", base / "b"
        _meshd(tree, "init", "--network", "joinmem", "--name", "a", "--state-dir", str(founder))
        a = _spawn(tree, base / "a.log", "up", "--listen", f"/ip4/127.0.0.1/tcp/{_port()}",
                   *FAST, "--state-dir", str(founder))  # fmt: skip
        b = None
        try:
            _wait_answering(tree, a, founder)
            token = _meshd(tree, "invite", "--expires", "1h", "--state-dir", str(founder))
            token = token.strip().splitlines()[-1]
            spawned = time.monotonic()
            b = _spawn(tree, base / "b.log", "join", "--invite", token, "--name", "b",
                       "--listen", f"/ip4/127.0.0.1/tcp/{_port()}", *FAST,
                       "--state-dir", str(joiner))  # fmt: skip
            _wait_answering(tree, b, joiner)
            answering = time.monotonic() - spawned
            time.sleep(settle)
            row = {
                "vmrss_kib": _status_kib(b.pid, "VmRSS"),
                "vmhwm_kib": _status_kib(b.pid, "VmHWM"),
                "mapped": _mapped(b.pid),
                "answering_s": round(answering, 3),
                "founder_vmrss_kib": _status_kib(a.pid, "VmRSS"),
            }
        finally:
            if b is not None:
                stop(b)
            stop(a)
        return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    trees = [ROOT] if args.reference is None else [ROOT, args.reference.resolve()]
    rows: dict[Path, list[dict[str, Any]]] = {tree: [] for tree in trees}
    for round_ in range(args.rounds):
        for tree in trees if round_ % 2 == 0 else reversed(trees):
            row = one_run(tree, args.settle)
            rows[tree].append(row)
            print(
                f"{commit_of(tree)} round {round_ + 1}: VmRSS {row['vmrss_kib'] / 1024:.1f} MiB, "
                f"mapped {row['mapped'] or '-'}, answering after {row['answering_s']} s",
                flush=True,
            )
    results = {
        "command": " ".join(sys.argv),
        "settle_s": args.settle,
        "trees": [
            {
                "root": str(tree),
                "commit": commit_of(tree),
                "runs": rows[tree],
                "vmrss_mib_median": round(
                    statistics.median(r["vmrss_kib"] for r in rows[tree]) / 1024, 2
                ),
            }
            for tree in trees
        ],
    }
    for tree in results["trees"]:
        print(f"{tree['commit']}: median VmRSS {tree['vmrss_mib_median']} MiB", flush=True)
    if args.output is not None:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
