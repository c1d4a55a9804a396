"""How long the commands that only ask the daemon take: the quick path against the typer app.

Starts one daemon (``meshd init``, then ``meshd up --wg-backend none`` on 127.0.0.1 and a free
port, in a temporary state dir), then times ``meshd peers --json`` and ``meshd status --json``
as separate processes, wall time from spawn to exit, each way once per round in turn so that
every way sees the same machine load:

- ``quick``: ``meshd.cli.main(args)``, what the ``meshd`` command runs;
- ``typer``: ``meshd.cli.main(args, quick=False)``, always through the typer app;
- ``baseline`` (with ``--baseline REV``): the meshd package as it was at git revision REV,
  extracted with ``git archive`` into a temporary dir;
- ``python``: ``python -c pass``, the interpreter's own start, the floor under every way.

Each way runs as ``python -c "from meshd.cli import main; ..."`` from the folder holding its
meshd package, so all find it the same way. The first run of each way is a warm-up, not
counted; it also checks that every way prints the same answer. The daemon is stopped by PID
at the end (also on failure, Ctrl-C or SIGTERM) and the temporary dirs are removed.

    .venv/bin/python -m benchmarks.cli [--rounds 20] [--baseline REV]

Target: ``meshd peers --json`` under 0.08 s (median) on the quick path.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from meshd.control.client import request
from meshd.errors import MeshdError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
COMMANDS = (("peers", "--json"), ("status", "--json"))
TARGET_S = 0.08


def launcher(quick: bool) -> str:
    call = "main(sys.argv[1:])" if quick else "main(sys.argv[1:], quick=False)"
    return f"import sys; from meshd.cli import main; sys.exit({call})"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def running_daemon(state_dir: Path) -> Iterator[None]:
    """A founder's daemon for ``state_dir``, stopped by PID on the way out."""
    init = [sys.executable, "-m", "meshd", "init", "--network", "bench", "--name", "bench"]
    subprocess.run([*init, "--state-dir", str(state_dir)], check=True, capture_output=True)
    up = [sys.executable, "-m", "meshd", "up", "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}"]
    up += ["--wg-backend", "none", "--announce-interval", "60s", "--state-dir", str(state_dir)]
    with (state_dir.parent / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(up, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                request(state_dir / "meshd.sock", "status", {}, timeout=2.0)
                break
            except MeshdError:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    log_text = (state_dir.parent / "daemon.log").read_text()[-2000:]
                    raise RuntimeError(f"the daemon did not come up:\n{log_text}") from None
                time.sleep(0.1)
        yield
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)


def extract(revision: str, into: Path) -> None:
    """The meshd package at ``revision``, written under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "meshd"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def timed(argv: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv[3:]} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed, done.stdout


def _comparable(answer: str) -> str:
    """The answer without what changes from one call to the next (the daemon's uptime)."""
    value = json.loads(answer)
    if isinstance(value, dict):
        value.pop("uptime", None)
    return json.dumps(value, sort_keys=True)


def measure(
    ways: dict[str, tuple[list[str], Path]], state_dir: Path, rounds: int
) -> dict[str, dict[str, Any]]:
    figures: dict[str, dict[str, Any]] = {}
    for command in COMMANDS:
        args = [*command, "--state-dir", str(state_dir)]
        answers = {way: timed([*argv, *args], cwd)[1] for way, (argv, cwd) in ways.items()}
        meshd_answers = {_comparable(answers[way]) for way in ways if way != "python"}
        if len(meshd_answers) != 1:
            raise RuntimeError(f"the ways disagree on `meshd {' '.join(command)}`")
        seconds: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(rounds):
            for way, (argv, cwd) in ways.items():
                seconds[way].append(timed([*argv, *args], cwd)[0])
        figures[" ".join(command)] = {
            way: {"median_seconds": statistics.median(runs), "seconds": runs}
            for way, runs in seconds.items()
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--baseline", metavar="REV", help="also time meshd as it was at REV")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="meshd-bench-cli-") as tmp:
        ways: dict[str, tuple[list[str], Path]] = {
            "quick": ([sys.executable, "-c", launcher(quick=True)], ROOT),
            "typer": ([sys.executable, "-c", launcher(quick=False)], ROOT),
        }
        if args.baseline:
            old = Path(tmp) / "baseline"
            old.mkdir()
            extract(args.baseline, old)
            ways["baseline"] = ([sys.executable, "-c", launcher(quick=True)], old)
        # `python -c pass` ignores the meshd arguments it is given.
        ways["python"] = ([sys.executable, "-c", "pass"], ROOT)
        # Every way's modules are compiled to bytecode first, as installing meshd (pip, a
        # wheel) does: with PYTHONDONTWRITEBYTECODE set, as on this machine, each call would
        # otherwise compile whatever source changed since its last cached bytecode.
        for _, cwd in ways.values():
            compileall.compile_dir(cwd / "meshd", quiet=1)
        state_dir = Path(tmp) / "node"
        with running_daemon(state_dir):
            figures = measure(ways, state_dir, args.rounds)
    names = list(ways)
    print(f"median wall time over {args.rounds} runs, against a running daemon")
    print(f"{'command':<20}" + "".join(f"{name:>10}" for name in names))
    for command, row in figures.items():
        cells = "".join(f"{row[name]['median_seconds']:>9.3f}s" for name in names)
        print(f"{'meshd ' + command:<20}{cells}")
    result = {
        "benchmark": "cli",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "rounds": args.rounds,
        "baseline": args.baseline,
        "measure": "wall time of one CLI process, spawn to exit, against a running daemon "
        "(--wg-backend none, the founder alone); ways alternate within each round; every "
        "way's modules compiled to bytecode first, as an install does",
        "target": f"meshd peers --json, quick path: median under {TARGET_S} s",
        "commands": figures,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cli.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {RESULTS / 'cli.json'}")


if __name__ == "__main__":
    main()
