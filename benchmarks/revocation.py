"""Revocation propagation in a loopback mesh of meshd daemons, against HashiCorp Serf.

For each mesh size, in one run:

- Serf (the reference): a cluster of that many ``serf agent`` processes on 127.0.0.1. Each
  round sends one user event (``serf event -coalesce=false``) through the first agent and
  takes the time from that command returning to the last agent's event handler running (a
  bash script that appends ``$EPOCHREALTIME`` to a file, no fork).
- meshd: a founder (``meshd init`` + ``meshd up``) and members that join by invite
  (``meshd join``, in parallel batches), each a separate process with ``--wg-backend none``
  on 127.0.0.1. Once every daemon lists every member as admitted, and after a settling pause,
  each round revokes a different member at the founder (``meshd revoke NAME``) and takes the
  time from that command returning to the revocation being durable and applied on every
  other daemon (the revoked member aside). Two observers, both recorded:

  * ``applied``: the time each daemon logs the membership event ``member NAME (...) is
    Revoked``. The daemon emits it after the store transaction that holds the revocation
    has committed, so it marks "durable and applied"; reading log files costs the mesh
    nothing.
  * ``polled``: the first time each daemon's control socket (``status``, its ``revoked``
    count) shows the revocation, polled in a tight loop over the daemons that do not show it
    yet, one request at a time, from this process. An upper bound, perturbed by the polling.

Every process is stopped by its PID at the end, also on failure or Ctrl-C. Results go to
benchmarks/results/revocation.json.

    .venv/bin/python -m benchmarks.revocation [--sizes 16 48] [--rounds 10]

Target (issue 3): meshd no slower than Serf at the same size, in the same run.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.fixtures import RESULTS, ROOT, daemon_options, stamp, write_result
from meshd.control.client import request
from meshd.errors import MeshdError

MESHD_FLAGS = ("--wg-backend", "none")
STOP_TIMEOUT = 10.0
JOIN_ATTEMPTS = 3
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)[,.](\d{3})(Z?) ")

HANDLER = """#!/bin/bash
# Serf runs this for every event it delivers to the agent; the payload comes on stdin.
read -r payload
echo "$EPOCHREALTIME $SERF_USER_EVENT $payload" >> "$0.log"
"""


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


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "p90": percentile(values, 0.9),
        "min": min(values),
        "max": max(values),
    }


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


@dataclass(frozen=True)
class MeshdRound:
    target: str
    cli_s: float  # how long `meshd revoke` ran
    applied_max: float  # `meshd revoke` returned -> the last daemon's Revoked event
    keystroke_max: float  # `meshd revoke` started -> the last daemon's Revoked event
    from_origin_max: float  # the founder's Revoked event -> the last daemon's
    polled_max: float  # `meshd revoke` returned -> the last control socket showing it
    load: float  # the 1-minute load average as the round started
    applied: dict[str, float]
    polled: dict[str, float]


def revoke_round(
    mesh: Mesh, target: str, excluded: set[str], baseline: int, timeout: float = 60.0
) -> MeshdRound:
    """Revoke ``target``; watch every daemon but the founder, the target and ``excluded``
    (members revoked earlier, which are disconnected and hear nothing more)."""
    watched = [n for n in mesh.nodes[1:] if n.name != target and n.name not in excluded]
    load = os.getloadavg()[0]  # the machine's load (other work runs on it too)
    called = time.time()
    meshd("revoke", target, "--reason", "benchmark", "--state-dir", str(mesh.founder.state_dir))
    returned = time.time()
    polled: dict[str, float] = {}
    pending = list(watched)
    while pending:
        if time.time() - returned > timeout:
            missing = ", ".join(n.name for n in pending)
            raise RuntimeError(f"revocation of {target} not seen within {timeout:g} s on {missing}")
        for node in list(pending):
            try:
                count = revoked_count(node)
            except MeshdError:
                continue
            if count > baseline:
                polled[node.name] = time.time() - returned
                pending.remove(node)
        # A pause between sweeps: asking every daemon back to back keeps the cores busy
        # with status answers while the revocation propagates (the figures are the logs').
        time.sleep(POLL_PAUSE)
    # The log line follows the event by at most a scheduling step; give it a moment.
    stamps: dict[str, float] = {}
    deadline = time.monotonic() + 5.0
    for node in [mesh.founder, *watched]:
        while (at := log_time(node, target)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} never logged the revocation of {target}")
            time.sleep(0.05)
        stamps[node.name] = at
    origin = stamps.pop(mesh.founder.name)
    # Negative: applied before the CLI had returned (it asks the daemon for the member list
    # once more and exits after the daemon's publish).
    applied = {name: at - returned for name, at in stamps.items()}
    return MeshdRound(
        target,
        cli_s=returned - called,
        applied_max=max(0.0, *applied.values()),
        keystroke_max=max(stamps.values()) - called,
        from_origin_max=max(stamps.values()) - origin,
        polled_max=max(polled.values()),
        load=load,
        applied=applied,
        polled=polled,
    )


def bench_meshd(
    size: int,
    rounds: int,
    workdir: Path,
    processes: Processes,
    batch: int,
    settle: float,
    flags: Sequence[str] = (),
) -> dict[str, Any]:
    start = time.monotonic()
    mesh = start_mesh(size, workdir, processes, batch, flags)
    try:
        took = wait_for(
            lambda: all_admitted(mesh), 300, "every daemon to list all as admitted", 1.0
        )
        ready = time.monotonic() - start
        print(f"  meshd: {size} daemons up, all admitted everywhere after {ready:.0f} s "
              f"(last check {took:.0f} s); settling {settle:g} s", flush=True)  # fmt: skip
        # The settling pause doubles as the idle figure: every daemon's CPU over its last
        # two thirds (the first third lets the last joins' syncs end).
        time.sleep(settle / 3)
        pids = {n.name: n.process.pid for n in mesh.nodes if n.process is not None}
        idle = cpu_shares(pids, settle * 2 / 3)
        idle_members = [v for k, v in idle.items() if k != mesh.founder.name]
        print(f"  idle: a member's CPU median {statistics.median(idle_members):.2f} % of a core "
              f"(max {max(idle_members):.2f} %), all {size} daemons {sum(idle.values()) / 100:.2f} "
              f"cores; load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        results: list[MeshdRound] = []
        for r in range(rounds):
            target = mesh.nodes[1 + r].name
            result = revoke_round(mesh, target, {n.name for n in mesh.nodes[1 : 1 + r]}, r)
            results.append(result)
            print(
                f"  meshd round {r + 1}: revoked {target}: applied everywhere after "
                f"{result.applied_max:.3f} s (from the keystroke: {result.keystroke_max:.3f} s; "
                f"control-socket poll: {result.polled_max:.3f} s; "
                f"from the founder's commit: {result.from_origin_max:.3f} s; "
                f"the CLI ran {result.cli_s:.2f} s; load {result.load:.1f})",
                flush=True,
            )
            time.sleep(1.0)
        # A revoked member's daemon stops (it is told it is revoked): ask the others.
        status = []
        for node in mesh.nodes:
            with suppress(MeshdError):
                status.append(node.ask("status"))
        rss = [_rss_mib(n.process.pid) for n in mesh.nodes if n.process is not None]
    finally:
        processes.stop([n.process for n in mesh.nodes if n.process is not None])
    applied = [r.applied_max for r in results]
    polled = [r.polled_max for r in results]
    from_origin = [r.from_origin_max for r in results]
    cli = [r.cli_s for r in results]
    keystroke = [r.keystroke_max for r in results]
    return {
        "daemons": size,
        "startup_s": ready,
        "applied_s": applied,
        "polled_s": polled,
        "from_origin_s": from_origin,
        "revoke_cli_s": cli,
        "keystroke_s": keystroke,
        "applied": summary(applied),
        "polled": summary(polled),
        "from_origin": summary(from_origin),
        "revoke_cli": summary(cli),
        "keystroke": summary(keystroke),
        "load_1min": [round(r.load, 2) for r in results],
        "per_daemon_applied_s": [r.applied for r in results],
        "targets": [r.target for r in results],
        "rejected_at_end": _sum_counters(s.get("rejected", {}) for s in status),
        "rss_mib_median": statistics.median(rss) if rss else None,
        "idle_cpu_pct": {
            "window_s": round(settle * 2 / 3, 1),
            "member_median": statistics.median(idle_members),
            "member_max": max(idle_members),
            "founder": idle[mesh.founder.name],
            "all_cores": round(sum(idle.values()) / 100, 3),
        },
    }


def _sum_counters(counters: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for counter in counters:
        for key, value in counter.items():
            total[key] = total.get(key, 0) + int(value)
    return total


def _rss_mib(pid: int) -> float:
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --- the Serf cluster ---------------------------------------------------------------------------


@dataclass
class Agent:
    name: str
    bind: int = field(default_factory=free_port)
    rpc: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def rpc_addr(self) -> str:
        return f"127.0.0.1:{self.rpc}"


def serf(*args: str, timeout: float = 30.0) -> str:
    result = subprocess.run(
        ["serf", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"serf {args[0]} failed: {result.stderr.strip() or result.stdout}")
    return result.stdout


def serf_alive(agent: Agent) -> int:
    try:
        out = serf("members", "-status", "alive", "-rpc-addr", agent.rpc_addr)
    except (RuntimeError, subprocess.TimeoutExpired):  # not listening yet
        return 0
    return len(out.strip().splitlines())


SERF_SEEDS = 3  # agents every other agent joins (any one of them answering is enough)
SERF_BATCH = 8  # agents started at once after the seeds


def start_serf(size: int, workdir: Path, processes: Processes) -> tuple[list[Agent], list[Path]]:
    """A cluster of ``size`` agents that all see each other alive.

    The seeds start first and join each other; the others start in batches, each told to
    join every seed (``-retry-join`` once per seed, retried every second), so that no single
    agent takes every join at once. An agent that exits (its ports taken after all) is
    started again on other ports. The cluster is ready when every agent lists ``size``
    alive members.
    """
    agents = [Agent(f"s{i:02d}") for i in range(size)]
    handlers = []
    for agent in agents:
        handler = workdir / f"{agent.name}.sh"
        handler.write_text(HANDLER)
        handler.chmod(0o755)
        handlers.append(handler)

    def spawn(index: int) -> None:
        agent = agents[index]
        args = [
            "serf", "agent", "-node", agent.name, "-bind", f"127.0.0.1:{agent.bind}",
            "-rpc-addr", agent.rpc_addr, "-event-handler", f"user={handlers[index]}",
            "-log-level", "warn", "-retry-interval", "1s",
        ]  # fmt: skip
        for seed in agents[:SERF_SEEDS]:
            if seed is not agent:
                args += ["-retry-join", f"127.0.0.1:{seed.bind}"]
        agent.process = processes.start(args, workdir / f"{agent.name}.out")

    def respawn_exited() -> None:
        for index, agent in enumerate(agents):
            if agent.process is None or agent.process.poll() is None:
                continue  # not started yet, or running
            tail = (workdir / f"{agent.name}.out").read_text(errors="replace")[-300:]
            if agent.restarts >= 3:
                raise RuntimeError(f"serf agent {agent.name} keeps exiting: {tail}")
            print(f"  serf agent {agent.name} exited ({tail.strip().splitlines()[-1:]}); "
                  "starting it again on other ports", flush=True)  # fmt: skip
            agent.bind, agent.rpc, agent.restarts = free_port(), free_port(), agent.restarts + 1
            spawn(index)

    def answering(group: Sequence[Agent]) -> bool:
        respawn_exited()
        return all(serf_alive(a) > 0 for a in group)

    batches = [range(min(SERF_SEEDS, size))] + [
        range(first, min(size, first + SERF_BATCH)) for first in range(SERF_SEEDS, size, SERF_BATCH)
    ]
    short: list[str] = []

    def everyone() -> bool:
        respawn_exited()
        short[:] = [a.name for a in agents if serf_alive(a) != size]
        return not short

    try:
        for batch in batches:
            for index in batch:
                spawn(index)
            group = [agents[i] for i in batch]
            wait_for(partial(answering, group), 60, "serf agents to answer", 0.2)
        took = wait_for(everyone, 180, f"{size} serf agents to see each other", 0.5)
    except RuntimeError as exc:
        processes.stop([a.process for a in agents if a.process is not None])
        raise RuntimeError(f"{exc}; not seeing all yet: {', '.join(short[:10])}") from None
    print(f"  serf: {size} agents see each other after {took:.1f} s", flush=True)
    return agents, handlers


def bench_serf(size: int, rounds: int, workdir: Path, processes: Processes) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    agents: list[Agent] = []
    try:
        agents, handlers = start_serf(size, workdir, processes)
        time.sleep(2.0)
        times: list[float] = []
        keystrokes: list[float] = []
        loads: list[float] = []
        for r in range(rounds):
            payload = f"round-{r}"
            loads.append(round(os.getloadavg()[0], 2))
            called = time.time()
            serf("event", "-coalesce=false", "-rpc-addr", agents[0].rpc_addr, "bench", payload)
            sent = time.time()

            def seen(payload: str = payload) -> list[float] | None:
                stamps = []
                for handler in handlers:
                    log = handler.with_name(handler.name + ".log")
                    lines = log.read_text().splitlines() if log.exists() else []
                    hit = [float(x.split()[0]) for x in lines if x.endswith(f" {payload}")]
                    if not hit:
                        return None
                    stamps.append(hit[0])
                return stamps

            deadline = time.monotonic() + 30
            while (stamps := seen()) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"serf event {payload} did not reach every agent")
                time.sleep(0.05)
            times.append(max(0.0, max(stamps) - sent))
            keystrokes.append(max(stamps) - called)
            print(
                f"  serf round {r + 1}: event at all {size} agents after {times[-1]:.3f} s "
                f"(from the keystroke: {keystrokes[-1]:.3f} s; load {loads[-1]:.1f})"
            )
            time.sleep(0.5)
    finally:
        processes.stop([a.process for a in agents if a.process is not None])
    return {
        "agents": size,
        "delivered_s": times,
        "delivered": summary(times),
        "keystroke_s": keystrokes,
        "keystroke": summary(keystrokes),
        "load_1min": loads,
    }


# --- main ---------------------------------------------------------------------------------------


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    daemon_options(parser, settle=5.0, output=RESULTS / "revocation.json")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("serf") is None:
        sys.exit("serf is not installed (Debian package serf)")
    if any(size - 1 < args.rounds for size in args.sizes):
        sys.exit("each size needs more members than rounds (one revoked per round)")
    # meshd compiled to bytecode first, as installing it does: with PYTHONDONTWRITEBYTECODE
    # set, every `meshd revoke` would otherwise compile the modules changed since their
    # cached bytecode.
    compileall.compile_dir(ROOT / "meshd", quiet=1)
    processes = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="meshd-bench-revocation-"))
    rows: list[dict[str, Any]] = []
    try:
        with stopping(processes):
            for size in args.sizes:
                row: dict[str, Any] = {"size": size}
                rows.append(row)
                print(f"size {size}: serf", flush=True)
                row["serf"] = bench_serf(size, args.rounds, workdir / f"serf-{size}", processes)
                print(f"size {size}: meshd", flush=True)
                try:
                    row["meshd"] = bench_meshd(
                        size,
                        args.rounds,
                        workdir / f"meshd-{size}",
                        processes,
                        args.batch,
                        args.settle,
                        args.daemon_arg,
                    )
                except RuntimeError as exc:
                    row["meshd"] = {"daemons": size, "failed": str(exc)}
                    print(f"  meshd at {size} failed: {exc}", flush=True)
                save(args, rows)
    finally:
        complete = all("applied" in r.get("meshd", {}) for r in rows)
        if args.keep or not complete or len(rows) < len(args.sizes):
            print(f"logs and state dirs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print("seconds; meshd: `meshd revoke` returned -> applied on every other daemon")
    print("keystroke: the command starting (`meshd revoke`, `serf event`) -> the last node")
    print(
        f"{'size':>5} {'meshd median':>13} {'meshd p90':>10} {'serf median':>12} {'serf p90':>9}"
        f" {'meshd from commit med/p90':>26} {'meshd polled med/p90':>21}"
    )
    for row in rows:
        s = row["serf"]["delivered"]
        if "applied" not in row["meshd"]:
            print(f"{row['size']:>5} {'failed':>13} {'':>10} {s['median']:>12.3f} {s['p90']:>9.3f}")
            continue
        m, o, p = row["meshd"]["applied"], row["meshd"]["from_origin"], row["meshd"]["polled"]
        k, sk = row["meshd"]["keystroke"], row["serf"]["keystroke"]
        print(
            f"{row['size']:>5} {m['median']:>13.3f} {m['p90']:>10.3f} {s['median']:>12.3f}"
            f" {s['p90']:>9.3f} {o['median']:>19.3f}/{o['p90']:.3f}"
            f" {p['median']:>14.3f}/{p['p90']:.3f}"
            f" {k['median']:>18.3f}/{sk['median']:.3f} {k['max']:>6.3f}/{sk['max']:.3f}"
        )


def save(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    result = {
        **stamp("revocation"),
        "serf_version": serf("version").splitlines()[0],
        "rounds": args.rounds,
        "daemon_args": args.daemon_arg,
        "settle_s": args.settle,
        "meshd_measure": "meshd revoke returning -> Revoked event (after the store commit) "
        "on every other daemon, max over daemons; polled_s: first seen through each "
        "control socket; from_origin_s: the founder's own Revoked event -> the last daemon's",
        "serf_measure": "serf event returning -> event handler ran on every agent",
        "keystroke_measure": "the command (meshd revoke, serf event) starting -> applied on "
        "every other daemon / handler ran on every agent; the figure a user lives",
        "target": "meshd median <= serf median at the same size",
        "sizes": rows,
    }
    write_result(args.output, result)


if __name__ == "__main__":
    main()
