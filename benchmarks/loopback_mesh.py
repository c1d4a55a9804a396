"""A loopback mesh of real meshd daemons for the benchmarks: a founder (``meshd init`` +
``meshd up``) and members that join by invite (``meshd join``, in parallel batches), each a
separate process with ``--wg-backend none`` on 127.0.0.1 at ports of its own
(:func:`start_mesh`); the processes they run (:class:`Processes`, each stopped by its PID,
:func:`stopping`), their CPU, and what their logs and control sockets say. Used by
``benchmarks.revocation`` and ``benchmarks.idle``.
"""

from __future__ import annotations

import datetime
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.fixtures import ROOT
from meshd.control.client import request
from meshd.errors import MeshdError

MESHD_FLAGS = ("--wg-backend", "none")
STOP_TIMEOUT = 10.0
JOIN_ATTEMPTS = 3
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)[,.](\d{3})(Z?) ")


_TAKEN: set[int] = set()
PORTS = range(20000, 32000)  # below Linux's ephemeral range (32768-60999), see free_port


def free_port() -> int:
    """A port free on 127.0.0.1 for TCP and UDP, not handed out before in this run.

    Not from the kernel's ephemeral range: a port the kernel picked for a probe can be picked
    again for another probe, or be taken as the local port of an outgoing connection (this
    run's daemons dial each other; other tests run on the machine) before its process binds
    it. A Serf agent whose bind port is taken exits at once, and the cluster never forms.
    """
    rng = random.Random()
    for _ in range(1000):
        port = rng.choice(PORTS)
        if port in _TAKEN:
            continue
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        _TAKEN.add(port)
        return port
    raise RuntimeError("no free port found in 20000-32000 on 127.0.0.1")


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> float:
    start = time.monotonic()
    while True:
        with suppress(MeshdError, OSError):
            if condition():
                return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Processes:
    """Every process this benchmark started, to stop by PID whatever happens."""

    running: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Any:
        with log.open("ab") as out:
            process = subprocess.Popen(
                list(args), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT
            )
        self.running.append(process)
        return process

    def stop(self, processes: Sequence[subprocess.Popen[bytes]] | None = None) -> None:
        """SIGTERM each by PID, wait, SIGKILL what did not exit in time."""
        targets = list(self.running if processes is None else processes)
        for process in targets:
            if process.poll() is None:
                with suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in targets:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait(5)
        self.running = [p for p in self.running if p not in targets]


def meshd_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env["MESHD_LOG"] = "INFO"
    env.pop("MESHD_STATE_DIR", None)
    return env


def meshd(*args: str, timeout: float = 60.0) -> str:
    """Run a meshd command to completion; return its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "meshd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=meshd_env(),
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise RuntimeError(f"meshd {args[0]} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_shares(pids: dict[str, int], window: float) -> dict[str, float]:
    """Per name, the share of one core (percent) its process used over ``window`` seconds."""
    first = {name: cpu_seconds(pid) for name, pid in pids.items()}
    start = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - start
    return {
        name: round(100 * (cpu_seconds(pid) - first[name]) / elapsed, 2)
        for name, pid in pids.items()
    }


# --- the meshd mesh -----------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    state_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.state_dir.parent / f"{self.name}.log"

    @property
    def socket(self) -> Path:
        return self.state_dir / "meshd.sock"

    @property
    def listen(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}"

    def ask(self, cmd: str, timeout: float = 5.0) -> Any:
        return request(self.socket, cmd, {}, timeout=timeout)

    def answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail}")
        self.ask("status")
        return True


@dataclass
class Mesh:
    nodes: list[Node]
    processes: Processes

    @property
    def founder(self) -> Node:
        return self.nodes[0]


def start_mesh(
    size: int, workdir: Path, processes: Processes, batch: int, flags: Sequence[str] = ()
) -> Mesh:
    """``size`` daemons: a founder, then members joining by invite; ``flags`` go to every
    daemon after ``MESHD_FLAGS``."""
    python = [sys.executable, "-m", "meshd"]
    env = meshd_env()
    founder = Node("founder", workdir / "founder")
    meshd(
        "init", "--network", "bench", "--name", founder.name, "--state-dir", str(founder.state_dir)
    )
    founder.process = processes.start(
        [
            *python,
            "up",
            "--listen",
            founder.listen,
            *MESHD_FLAGS,
            *flags,
            "--state-dir",
            str(founder.state_dir),
        ],
        founder.log,
        env,
    )
    wait_for(founder.answers, 60, "the founder to answer")
    token = (
        meshd(
            "invite",
            "--uses",
            str(2 * size),
            "--expires",
            "2h",
            "--state-dir",
            str(founder.state_dir),
        )
        .strip()
        .splitlines()[-1]
    )
    members = [Node(f"m{i:02d}", workdir / f"m{i:02d}") for i in range(1, size)]

    joined: list[Node] = [founder]
    sponsors = random.Random(size)

    def spawn(node: Node) -> None:
        # Each joiner dials two members that joined already before the invite's founder
        # (`--bootstrap` comes first): the founder alone sponsoring 47 joins on a loaded
        # machine answered dials in more than the join's 5 s, and the run failed at the 25th.
        bootstrap: list[str] = []
        for sponsor in sponsors.sample(joined, min(2, len(joined))):
            with suppress(MeshdError, OSError, KeyError):
                bootstrap += [
                    "--bootstrap",
                    f"{sponsor.listen}/p2p/{sponsor.ask('status')['peer_id']}",
                ]
        node.process = processes.start(
            [
                *python, "join", "--invite", token, "--name", node.name, *bootstrap,
                "--listen", node.listen, *MESHD_FLAGS, *flags, "--state-dir", str(node.state_dir),
            ],
            node.log,
            env,
        )  # fmt: skip

    for first in range(0, len(members), batch):
        group = members[first : first + batch]
        for node in group:
            spawn(node)
        for index, node in enumerate(group):
            for attempt in range(1, JOIN_ATTEMPTS + 1):
                try:
                    wait_for(node.answers, 120, f"{node.name} to join and answer")
                    break
                except RuntimeError as exc:
                    if attempt == JOIN_ATTEMPTS:
                        raise
                    # A join can time out while the sponsor is saturated. The failed attempt
                    # may have been admitted already: retry under a new name and state dir,
                    # so that names stay unambiguous for `meshd revoke NAME`.
                    print(f"  {node.name}: join failed ({str(exc).splitlines()[-1]}); retrying")
                    retry = Node(f"{node.name}r{attempt}", workdir / f"{node.name}r{attempt}")
                    members[first + index] = group[index] = node = retry
                    spawn(node)
        joined += group
        print(f"  {first + len(group)}/{len(members)} members joined", flush=True)
    return Mesh([founder, *members], processes)


def all_admitted(mesh: Mesh) -> bool:
    names = {n.name for n in mesh.nodes}
    for node in mesh.nodes:
        states = {p["name"]: p["state"] for p in node.ask("peers")}
        if any(states.get(name) not in ("admitted", "self") for name in names):
            return False
    return True


POLL_PAUSE = 0.05  # seconds between two sweeps of the control sockets


def revoked_count(node: Node) -> int:
    return int(node.ask("status")["revoked"])


def log_time(node: Node, target: str) -> float | None:
    """Wall-clock time at which ``node`` logged ``target`` as revoked, if it has."""
    needle = f" member {target} ("
    for line in node.log.read_text(errors="replace").splitlines():
        if needle in line and line.endswith(") revoked"):
            match = LOG_TIME.match(line)
            if match is None:
                continue
            stamp = datetime.datetime.strptime(
                f"{match.group(1)} {match.group(2)}", "%Y-%m-%d %H:%M:%S"
            )
            if match.group(4):  # ISO 8601 in UTC (the daemon's log format since 6a13636)
                stamp = stamp.replace(tzinfo=datetime.UTC)
            return stamp.timestamp() + int(match.group(3)) / 1000
    return None


@contextmanager
def stopping(processes: Processes) -> Iterator[None]:
    """Stop every started process on the way out; SIGTERM ends the run like Ctrl-C."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        processes.stop()
        signal.signal(signal.SIGTERM, previous)
