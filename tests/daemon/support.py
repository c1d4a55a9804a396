"""Daemons as separate processes on loopback: start, join, ask, stop by PID."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshd.control.client import request
from meshd.errors import MeshdError

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--wg-backend", "none", "--announce-interval", "60s", "--announce-ttl", "10m"]


# Ports for daemons to listen on, below the kernel's ephemeral range (32768-60999 on Linux):
# a port the kernel picked for a probe is free only until the daemon binds it, and every
# outgoing connection on the machine (the daemons' own dials, the other test worker's) takes
# its source port from that range, so one took a daemon's port before it started listening.
# Each test process walks its own part of the range (pytest-xdist's workers split it: two
# walks from random places in one range met, and a worker handed out a port the other's
# daemon had been given but did not listen on yet), from a random place in it, never handing
# a port out twice; a port something listens on is skipped.
def _ports_of_this_worker(first: int, last: int) -> tuple[int, int]:
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % workers if worker.isdigit() else 0
    share = (last - first) // workers
    return first + index * share, first + (index + 1) * share


_PORTS_FROM, _PORTS_TO = _ports_of_this_worker(20000, 32000)
_next_port = [random.randrange(_PORTS_FROM, _PORTS_TO)]


def free_port() -> int:
    """A loopback TCP port nothing listens on, outside the ephemeral range."""
    for _ in range(_PORTS_TO - _PORTS_FROM):
        port = _next_port[0]
        _next_port[0] = _PORTS_FROM + (port + 1 - _PORTS_FROM) % (_PORTS_TO - _PORTS_FROM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {_PORTS_FROM}-{_PORTS_TO}")


def meshd(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a meshd command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "meshd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_env(),
        cwd=ROOT,
    )


def up_with_config(state_dir: Path, config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """``meshd up --config CONFIG`` on 127.0.0.1 and a free port, its output in ``log_path``,
    its settings from the command line and the file alone (none of the environment's
    MESHD_LOG, MESHD_LOG_LEVEL, MESHD_CONFIG or MESHD_STATE_DIR): what a SIGHUP reads again."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("MESHD_LOG", "MESHD_LOG_LEVEL", "MESHD_CONFIG", "MESHD_STATE_DIR"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "meshd", "up", "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}",
            "--config", str(config), "--state-dir", str(state_dir)]  # fmt: skip
    with log_path.open("wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("MESHD_LOG", "INFO")
    env.setdefault("MESHD_CONFIG", "/dev/null")  # not this machine's /etc/meshd/meshd.toml
    env.pop("MESHD_STATE_DIR", None)
    return env


def wait_for(
    condition: Callable[[], bool],
    timeout: float = 20.0,
    what: str = "",
    describe: Callable[[], object] | None = None,
) -> float:
    """Poll until ``condition`` holds; return how long it took."""
    start = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - start
        except MeshdError:
            pass
        if time.monotonic() - start > timeout:
            seen = f"; last seen: {describe()}" if describe is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{seen}")
        time.sleep(0.05)


@dataclass(eq=False)
class Daemon:
    """One node's state dir and, while it runs, its process."""

    name: str
    state_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0
    netns: str | None = None  # the network namespace its daemon runs in (root)

    @property
    def listen(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}"

    @property
    def log(self) -> Path:
        return self.state_dir.parent / f"{self.name}.log"

    def _spawn(self, args: list[str]) -> None:
        assert self.process is None or self.process.poll() is not None
        self.runs += 1
        with self.log.open("ab") as log:
            log.write(f"--- run {self.runs}: {' '.join(args[:1])}\n".encode())
            inside = ["ip", "netns", "exec", self.netns] if self.netns else []
            self.process = subprocess.Popen(
                [*inside, sys.executable, "-m", "meshd", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(),
                cwd=ROOT,
            )

    def init(self, network: str = "testnet") -> None:
        result = meshd("init", "--network", network, "--name", self.name, *self._dir())
        assert result.returncode == 0, result.stderr

    def _dir(self) -> list[str]:
        return ["--state-dir", str(self.state_dir)]

    def up(self, *extra: str) -> None:
        self._spawn(["up", "--listen", self.listen, *FAST, *extra, *self._dir()])
        self.wait_ready()

    def join(self, token: str, *extra: str) -> None:
        args = ["join", "--invite", token, "--name", self.name, "--listen", self.listen]
        self._spawn([*args, *FAST, *extra, *self._dir()])
        self.wait_ready()

    def enroll(self, token: str) -> None:
        """Join without running the daemon afterwards (``--no-up``)."""
        args = ["join", "--invite", token, "--name", self.name, "--no-up", *self._dir()]
        result = meshd(*args)
        assert result.returncode == 0, result.stderr

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            self.ask("status")
            return True

        wait_for(ready, timeout, f"{self.name} to answer")

    def ask(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        return request(self.state_dir / "meshd.sock", cmd, args or {}, timeout=5.0)

    def peers(self) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.ask("peers")}

    def states(self) -> dict[str, str]:
        return {name: p["state"] for name, p in self.peers().items()}

    def invite(self, *extra: str) -> str:
        result = meshd("invite", "--expires", "1h", *extra, *self._dir())
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> float:
        """Signal the process and wait for it; return how long it took to exit."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        start = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"{self.name} did not stop within {timeout} s") from None
        return time.monotonic() - start

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)


@contextmanager
def daemons(tmp_path: Path, *names: str) -> Iterator[list[Daemon]]:
    """Daemon handles with their own state dirs; every process is stopped on the way out."""
    nodes = [Daemon(name, tmp_path / name) for name in names]
    try:
        yield nodes
    finally:
        for node in nodes:
            with suppress(AssertionError):
                node.stop(timeout=8.0)
