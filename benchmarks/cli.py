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

With ``--members N`` the daemon runs on a synthetic store of N members
(:mod:`benchmarks.synthetic_store`; as root, in a network namespace of its own, so that its
dials to the members fail at once) and the benchmark times ``meshd peers --json``, the
plain table ``meshd peers``, one member's row and ``meshd status --json``: the quick path,
and with ``--reference DIR`` the daemon and the command line of the tree at DIR on a copy
of the same store, beside it in each round. The answers of both trees to ``peers --json``
are compared (``same_answer``). Results in ``cli-<N>-<this>-beside-<reference>.json``::

    .venv/bin/python -m benchmarks.cli --members 10000 --reference DIR [--rounds 10]

Target at 10,000 members: the whole command about 0.2 s.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import platform
import shutil
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

from benchmarks.measured_daemon import namespace
from benchmarks.synthetic_store import build_store_in, commit_of
from meshd.control.client import request
from meshd.errors import MeshdError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
COMMANDS: tuple[tuple[str, ...], ...] = (("peers", "--json"), ("status", "--json"))
MEMBERS_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("peers", "--json"),
    ("peers",),
    ("peers", "m77"),
    ("status", "--json"),
)
TARGET_S = 0.08

Way = tuple[list[str], Path, Path]
"""How a way runs: its command, the folder it runs from (its meshd), the daemon's state dir."""


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
def running_daemon(
    state_dir: Path, tree: Path = ROOT, init: bool = True, netns: str | None = None
) -> Iterator[None]:
    """A founder's daemon for ``state_dir`` (made by ``meshd init`` if ``init``), run by the
    code of ``tree`` (in ``netns`` if given), stopped by PID on the way out."""
    if init:
        init_command = [sys.executable, "-m", "meshd", "init", "--network", "bench"]
        init_command += ["--name", "bench", "--state-dir", str(state_dir)]
        subprocess.run(init_command, check=True, capture_output=True, cwd=tree)
    up = [sys.executable, "-m", "meshd", "up", "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}"]
    up += ["--wg-backend", "none", "--announce-interval", "60s", "--state-dir", str(state_dir)]
    if netns is not None:
        up = ["ip", "netns", "exec", netns, *up]
    log_path = state_dir.parent / f"{state_dir.name}.log"
    env = dict(os.environ, PYTHONPATH=str(tree))
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(up, stdout=log, stderr=subprocess.STDOUT, cwd=tree, env=env)
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                request(state_dir / "meshd.sock", "status", {}, timeout=10.0)
                break
            except MeshdError:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    log_text = log_path.read_text()[-2000:]
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
    """The answer without what changes from one call to the next (the daemon's uptime); a
    table as it is."""
    if not answer.startswith(("{", "[")):
        return answer
    value = json.loads(answer)
    if isinstance(value, dict):
        value.pop("uptime", None)
    return json.dumps(value, sort_keys=True)


def measure(
    ways: dict[str, Way], rounds: int, commands: tuple[tuple[str, ...], ...] = COMMANDS
) -> dict[str, dict[str, Any]]:
    figures: dict[str, dict[str, Any]] = {}
    for command in commands:
        answers = {
            way: timed([*argv, *command, "--state-dir", str(state)], cwd)[1]
            for way, (argv, cwd, state) in ways.items()
        }
        # The ways that ask the same daemon print the same answer.
        for state in {state for _, _, state in ways.values()}:
            same = {
                _comparable(answers[way])
                for way, (_, _, s) in ways.items()
                if s == state and way != "python"
            }
            if len(same) > 1:
                raise RuntimeError(f"the ways disagree on `meshd {' '.join(command)}`")
        seconds: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(rounds):
            for way, (argv, cwd, state) in ways.items():
                argv_ = [*argv, *command, "--state-dir", str(state)]
                seconds[way].append(timed(argv_, cwd)[0])
        figures[" ".join(command)] = {
            way: {"median_seconds": statistics.median(runs), "seconds": runs}
            for way, runs in seconds.items()
        }
        if command == ("peers", "--json") and "reference" in answers:
            figures[" ".join(command)]["same_answer"] = _same_rows(
                answers["quick"], answers["reference"]
            )
    return figures


def _same_rows(ours: str, theirs: str) -> dict[str, Any]:
    """Whether two daemons' answers to ``peers --json`` on copies of one store are the same
    but for what is each daemon's own: ``last_seen`` (each heard the members from its own
    start on) and the founder's own ``addrs`` (its listen port); the rows each key differs
    in, counted."""
    a, b = json.loads(ours), json.loads(theirs)
    differing: dict[str, int] = {}
    for x, y in zip(a, b, strict=False):
        for key in sorted(x.keys() | y.keys()):
            if x.get(key) != y.get(key):
                differing[key] = differing.get(key, 0) + 1
    own = {"last_seen"} | ({"addrs"} if differing.get("addrs", 0) <= 1 else set())
    same = len(a) == len(b) and set(differing) <= own
    return {"same": same, "rows": [len(a), len(b)], "differing": differing}


def _members_ways(
    tmp: Path, members: int, reference: Path | None
) -> tuple[dict[str, Way], list[tuple[Path, Path]]]:
    """The ways of ``--members``: this tree's quick path on its store, the reference's on a
    copy of it; and each daemon to start (its tree and state dir)."""
    state_dir = tmp / "node"
    build_store_in(ROOT, state_dir, members)
    ways: dict[str, Way] = {"quick": ([sys.executable, "-c", launcher(True)], ROOT, state_dir)}
    daemons = [(ROOT, state_dir)]
    if reference is not None:
        copy = tmp / "reference-node"
        shutil.copytree(state_dir, copy)
        ways["reference"] = ([sys.executable, "-c", launcher(True)], reference, copy)
        daemons.append((reference, copy))
    ways["python"] = ([sys.executable, "-c", "pass"], ROOT, state_dir)
    return ways, daemons


@contextmanager
def running_daemons(daemons: list[tuple[Path, Path]]) -> Iterator[None]:
    """A daemon on each (tree, state dir), each in a network namespace of its own when run
    as root; stopped by PID, namespaces deleted, on the way out."""
    if not daemons:
        yield
        return
    (tree, state_dir), rest = daemons[0], daemons[1:]
    with contextlib.ExitStack() as stack:
        netns = None
        if os.geteuid() == 0:
            netns = stack.enter_context(namespace(f"meshd-cli-{os.getpid()}-{len(rest)}"))
        stack.enter_context(running_daemon(state_dir, tree, init=False, netns=netns))
        stack.enter_context(running_daemons(rest))
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--baseline", metavar="REV", help="also time meshd as it was at REV")
    parser.add_argument("--members", type=int, default=0, help="a synthetic store of N members")
    parser.add_argument("--reference", type=Path, metavar="DIR", help="with --members: DIR too")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="meshd-bench-cli-") as tmp:
        state_dir = Path(tmp) / "node"
        commands = COMMANDS
        if args.members:
            ways, daemons = _members_ways(Path(tmp), args.members, args.reference)
            commands = MEMBERS_COMMANDS
        else:
            quick = [sys.executable, "-c", launcher(quick=True)]
            ways = {
                "quick": (quick, ROOT, state_dir),
                "typer": ([sys.executable, "-c", launcher(quick=False)], ROOT, state_dir),
            }
            if args.baseline:
                old = Path(tmp) / "baseline"
                old.mkdir()
                extract(args.baseline, old)
                ways["baseline"] = (quick, old, state_dir)
            # `python -c pass` ignores the meshd arguments it is given.
            ways["python"] = ([sys.executable, "-c", "pass"], ROOT, state_dir)
        # Every way's modules are compiled to bytecode first, as installing meshd (pip, a
        # wheel) does: with PYTHONDONTWRITEBYTECODE set, as on this machine, each call would
        # otherwise compile whatever source changed since its last cached bytecode.
        for _, cwd, _ in ways.values():
            compileall.compile_dir(cwd / "meshd", quiet=1)
        with running_daemons(daemons) if args.members else running_daemon(state_dir):
            figures = measure(ways, args.rounds, commands)
    names = list(ways)
    print(f"median wall time over {args.rounds} runs, against a running daemon")
    print(f"{'command':<20}" + "".join(f"{name:>10}" for name in names))
    for command, row in figures.items():
        cells = "".join(f"{row[name]['median_seconds']:>9.3f}s" for name in names)
        print(f"{'meshd ' + command:<20}{cells}")
        if "same_answer" in row:
            print(f"{'':<20}same answer: {row['same_answer']}")
    against = "the founder alone" if not args.members else f"a store of {args.members} members"
    result = {
        "benchmark": "cli",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "rounds": args.rounds,
        "baseline": args.baseline,
        "members": args.members or 1,
        "commit": commit_of(ROOT),
        "reference": commit_of(args.reference) if args.reference else None,
        "measure": "wall time of one CLI process, spawn to exit, against a running daemon "
        f"(--wg-backend none, {against}); ways alternate within each round; every "
        "way's modules compiled to bytecode first, as an install does",
        "target": f"meshd peers --json, quick path: median under {TARGET_S} s"
        if not args.members
        else "meshd peers --json at 10,000 members: about 0.2 s",
        "commands": figures,
    }
    name = "cli.json"
    if args.members:
        beside = f"-beside-{result['reference']}" if args.reference else ""
        name = f"cli-{args.members}-{result['commit']}{beside}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {RESULTS / name}")


if __name__ == "__main__":
    main()
