"""Two network namespaces on a veth pair: meshd on one side, babeld 1.12 (or BIRD 2:
:mod:`tests.babel_interop.bird`) on the other.

Names carry the test process id, so concurrent runs do not collide; everything started is
stopped by PID and the namespaces are deleted on the way out.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

MESHD = [sys.executable, "-m", "meshd"]
REPO = Path(__file__).resolve().parents[2]
HELLO = 0.5


def sh(*args: str, check: bool = True) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class Pair:
    """The two namespaces; ``veth`` is the interface name on both sides."""

    meshd_ns: str
    babeld_ns: str
    veth: str


@contextmanager
def veth_pair(tag: str, *, ipv4: bool) -> Iterator[Pair]:
    """meshd's namespace and babeld's, joined by ``veth``; babeld's side has a loopback
    with fd00:255::2/128, 10.255.0.2/32 and a source-specific route to originate."""
    base = f"bi{os.getpid() % 100000}{tag}"
    pair = Pair(f"{base}m", f"{base}b", "bv0")
    try:
        for ns in (pair.meshd_ns, pair.babeld_ns):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh(
            "ip", "link", "add", pair.veth, "netns", pair.meshd_ns, "type", "veth",
            "peer", "name", pair.veth, "netns", pair.babeld_ns,
        )  # fmt: skip
        for ns in (pair.meshd_ns, pair.babeld_ns):
            # No DAD: the link-local addresses are usable at once.
            sh(
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                f"net.ipv6.conf.{pair.veth}.accept_dad=0",
            )
            sh("ip", "-n", ns, "link", "set", pair.veth, "up")
        if ipv4:
            sh("ip", "-n", pair.meshd_ns, "addr", "add", "10.201.0.1/24", "dev", pair.veth)
            sh("ip", "-n", pair.babeld_ns, "addr", "add", "10.201.0.2/24", "dev", pair.veth)
        b = pair.babeld_ns
        sh("ip", "-n", b, "addr", "add", "fd00:255::2/128", "dev", "lo")
        sh("ip", "-n", b, "addr", "add", "10.255.0.2/32", "dev", "lo")
        sh("ip", "-n", b, "-6", "route", "add", "fd00:99::/64", "from", "fd00:aa::/48",
           "dev", "lo", "proto", "static")  # fmt: skip
        wait_for(lambda: _link_local_ready(pair), 5.0)
        yield pair
    finally:
        for ns in (pair.meshd_ns, pair.babeld_ns):
            for pid in sh("ip", "netns", "pids", ns, check=False).split():
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)


def _link_local_ready(pair: Pair) -> bool:
    out = sh("ip", "-n", pair.meshd_ns, "-6", "addr", "show", "dev", pair.veth, "scope", "link")
    return "fe80::" in out and "tentative" not in out


def wait_for(condition: Callable[[], bool], limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


# --- babeld ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Babeld:
    process: subprocess.Popen[bytes]
    control: Path

    def dump(self) -> list[str]:
        """babeld's ``dump``: its neighbours, routes and exported routes, one per line."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(3)
            sock.connect(str(self.control))
            reader = sock.makefile("rw")
            _until_ok(reader)
            reader.write("dump\n")
            reader.flush()
            lines = _until_ok(reader)
            reader.write("quit\n")
            reader.flush()
            return lines


def _until_ok(reader: TextIO) -> list[str]:
    lines: list[str] = []
    for raw in reader:
        line = raw.strip()
        if line in ("ok", "bad", "no"):
            return lines
        lines.append(line)
    return lines


@contextmanager
def babeld(pair: Pair, workdir: Path, *, key: str | None = None) -> Iterator[Babeld]:
    """babeld in its namespace, Hello ``HELLO``; ``key`` is ``TYPE:HEX`` for RFC 8967."""
    control = workdir / "babeld.sock"
    lines = [
        f"local-path-readwrite {control}",
        f"state-file {workdir / 'babeld.state'}",
        f"pid-file {workdir / 'babeld.pid'}",
        "default type wired",
        f"default hello-interval {HELLO}",
    ]
    if key is not None:
        kind, secret = key.split(":")
        lines.append(f"key id k1 type {kind} value {secret}")
        lines.append(f"interface {pair.veth} key k1")
    else:
        lines.append(f"interface {pair.veth}")
    lines += [
        "redistribute local ip fd00:255::/64 allow",
        "redistribute local ip 10.255.0.0/16 allow",
        "redistribute ip fd00:99::/64 src-ip fd00:aa::/48 allow",
        "redistribute local deny",
    ]
    conf = workdir / "babeld.conf"
    conf.write_text("\n".join(lines) + "\n")
    log = (workdir / "babeld.log").open("wb")
    process = subprocess.Popen(
        ["ip", "netns", "exec", pair.babeld_ns, "babeld", "-c", str(conf)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        if not wait_for(control.exists, 5.0):
            raise RuntimeError("babeld did not open its control socket")
        yield Babeld(process, control)
    finally:
        _stop(process)
        log.close()


# --- meshd ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Meshd:
    process: subprocess.Popen[bytes]
    state_dir: Path
    ns: str

    def routes(self) -> dict[str, Any]:
        done = subprocess.run(
            [*MESHD, "routes", "--json", "--state-dir", str(self.state_dir)],
            capture_output=True,
            check=False,
            env=_env(),
        )
        if done.returncode != 0:
            return {}
        value = json.loads(done.stdout)
        assert isinstance(value, dict)
        return value

    def kernel(self, family: str) -> str:
        return sh("ip", "-n", self.ns, family, "route", "show", "proto", "babel")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "MESHD_LOG": "INFO"}


@contextmanager
def meshd(
    pair: Pair, workdir: Path, extra: Sequence[str] = (), *, hello: float | None = HELLO
) -> Iterator[Meshd]:
    """``meshd up`` in the pair's first namespace; ``hello``: its Hello interval (None: its
    default, 4 s)."""
    state = workdir / "meshd"
    hellos = () if hello is None else ("--babel-hello-interval", str(hello))
    sh("ip", "netns", "exec", pair.meshd_ns, *MESHD, "init", "--network", "interop",
       "--state-dir", str(state))  # fmt: skip
    log = (workdir / "meshd.log").open("wb")
    process = subprocess.Popen(
        ["ip", "netns", "exec", pair.meshd_ns, *MESHD, "up", "--wg-backend", "none",
         "--listen", "/ip4/127.0.0.1/tcp/4001", "--state-dir", str(state),
         "--babel-interface", pair.veth, *hellos,
         "--babel-originate", "10.254.0.1/32",
         "--babel-originate", "fd00:77::/64 from fd00:bb::/48", *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
    )  # fmt: skip
    try:
        yield Meshd(process, state, pair.meshd_ns)
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
