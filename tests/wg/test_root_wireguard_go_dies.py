"""A daemon killed with SIGKILL takes its wireguard-go with it (meshd/wg/backend_process.py):
the interface and the UAPI socket go, and the next ``meshd up`` starts on the same interface.

One lab host (meshd/lab: its own network namespace, removed with whatever is left in it), a
daemon with the userspace backend in it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.lab import Lab
from meshd.wg.uapi import DEFAULT_SOCKET_DIR, socket_path
from tests.daemon.support import ROOT, _env, meshd, wait_for

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(1) as built:
        yield built


def _stat(pid: int) -> tuple[str, str, int] | None:
    """A process's name, state and parent; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
    return stat[stat.index("(") + 1 : stat.rindex(")")], state, int(ppid)


def _wireguard_go_of(parent: int) -> list[int]:
    """The live wireguard-go processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (seen := _stat(int(entry.name))) is not None:
            name, state, ppid = seen
            if name == "wireguard-go" and ppid == parent and state != "Z":
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    seen = _stat(pid)
    return seen is not None and seen[1] != "Z"


def test_wireguard_go_dies_with_a_killed_daemon_and_the_next_start_works(lab: Lab) -> None:
    state_dir, ifname = lab.state_dir("h1"), lab.wg_ifname("h1")
    sock = Path(socket_path(ifname, DEFAULT_SOCKET_DIR))
    done = meshd("init", "--network", "t", "--name", "n", "--state-dir", str(state_dir))
    assert done.returncode == 0, done.stderr
    log = lab.dir / "daemon.log"
    up = [
        sys.executable, "-m", "meshd", "up", "--wg-backend", "userspace", "--interface", ifname,
        "--listen", "/ip4/127.0.0.1/tcp/7400", "--announce-interval", "60s",
        "--announce-ttl", "10m", "--state-dir", str(state_dir),
    ]  # fmt: skip

    def link() -> bool:
        shown = lab.exec("h1", ["ip", "link", "show", ifname], check=False)
        return shown.returncode == 0

    def start() -> tuple[subprocess.Popen[bytes], int]:
        with log.open("ab") as out:
            daemon = lab.spawn("h1", up, env=_env(), stdout=out, cwd=ROOT)
        found: list[int] = []

        def running() -> bool:
            assert daemon.poll() is None, log.read_text()[-3000:]
            found[:] = _wireguard_go_of(daemon.pid)
            return bool(found) and sock.exists() and link()

        wait_for(running, 30, "the daemon's wireguard-go and its interface")
        return daemon, found[0]

    daemon, wg = start()
    time.sleep(11)  # past the 10 s after which trio's idle worker threads end
    assert _alive(wg), "wireguard-go ended with the thread that started it"
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(10)
    took = wait_for(lambda: not _alive(wg), 5, "wireguard-go to end with its daemon")
    wait_for(lambda: not sock.exists(), 5, "the UAPI socket to go")
    assert not link()
    print(f"wireguard-go gone {took:.2f} s after its daemon was killed")

    daemon, wg = start()  # the same interface, at once
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(20) == 0, log.read_text()[-3000:]
    wait_for(lambda: not _alive(wg), 5, "wireguard-go to stop with a clean shutdown")
