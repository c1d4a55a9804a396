"""A daemon killed with SIGKILL takes its wireguard-go with it (meshd/wg/backend_process.py):
the interface and the UAPI socket go, and the next ``meshd up`` starts on the same interface.

One network namespace made here (named with this process's PID and a random token, removed
even on failure), a daemon with the userspace backend in it; no traffic leaves it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.wg.uapi import DEFAULT_SOCKET_DIR, socket_path
from tests.daemon.support import ROOT, _env, meshd, wait_for

pytestmark = pytest.mark.root


def _children(pid: int, comm: str) -> list[int]:
    """Live processes named ``comm`` whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if name == comm and int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def _serving(ifname: str) -> list[int]:
    """The wireguard-go processes running ``ifname``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline[0].endswith(b"wireguard-go") and ifname.encode() in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _link_exists(netns: str, ifname: str) -> bool:
    shown = subprocess.run(
        ["ip", "-n", netns, "link", "show", ifname], capture_output=True, check=False
    )
    return shown.returncode == 0


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"meshd-g-{os.getpid() % 0x10000:x}{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_wireguard_go_dies_with_a_killed_daemon_and_the_next_start_works(
    netns: str, tmp_path: Path
) -> None:
    state_dir = tmp_path / "n"
    ifname = f"mg{secrets.token_hex(3)}"
    sock = Path(socket_path(ifname, DEFAULT_SOCKET_DIR))
    done = meshd("init", "--network", "t", "--name", "n", "--state-dir", str(state_dir))
    assert done.returncode == 0, done.stderr
    log = tmp_path / "n.log"
    up = [
        "ip", "netns", "exec", netns, sys.executable, "-m", "meshd", "up",
        "--wg-backend", "userspace", "--interface", ifname, "--listen", "/ip4/127.0.0.1/tcp/7400",
        "--announce-interval", "60s", "--announce-ttl", "10m", "--state-dir", str(state_dir),
    ]  # fmt: skip
    daemons: list[subprocess.Popen[bytes]] = []

    def start() -> tuple[subprocess.Popen[bytes], int]:
        with log.open("ab") as out:
            daemon = subprocess.Popen(
                up, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT
            )
        daemons.append(daemon)
        found: list[int] = []

        def running() -> bool:
            assert daemon.poll() is None, log.read_text()[-3000:]
            found[:] = _children(daemon.pid, "wireguard-go")
            return bool(found) and sock.exists() and _link_exists(netns, ifname)

        wait_for(running, 30, "the daemon's wireguard-go and its interface")
        return daemon, found[0]

    try:
        daemon, wg = start()
        time.sleep(11)  # past the 10 s after which trio's idle worker threads end
        assert _alive(wg), "wireguard-go ended with the thread that started it"
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        took = wait_for(lambda: not _alive(wg), 5, "wireguard-go to end with its daemon")
        wait_for(lambda: not sock.exists(), 5, "the UAPI socket to go")
        assert not _link_exists(netns, ifname)
        print(f"wireguard-go gone {took:.2f} s after its daemon was killed")

        daemon, wg = start()  # the same interface, at once
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(20) == 0, log.read_text()[-3000:]
        wait_for(lambda: not _alive(wg), 5, "wireguard-go to stop with a clean shutdown")
    finally:
        for process in daemons:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        for pid in _serving(ifname):  # left behind: only ours, named by our interface
            os.kill(pid, signal.SIGKILL)
        sock.unlink(missing_ok=True)
