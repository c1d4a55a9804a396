"""A cluster of HashiCorp Serf agents on 127.0.0.1, the reference ``benchmarks.revocation``
measures meshd against: ``size`` ``serf agent`` processes, each with an event handler (a bash
script that appends ``$EPOCHREALTIME`` to a file, no fork); one user event per round sent
through the first agent, timed to the last agent's handler running.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.fixtures import summary
from benchmarks.loopback_mesh import Processes, free_port, wait_for

STOP_TIMEOUT = 10.0

HANDLER = """#!/bin/bash
# Serf runs this for every event it delivers to the agent; the payload comes on stdin.
read -r payload
echo "$EPOCHREALTIME $SERF_USER_EVENT $payload" >> "$0.log"
"""


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
