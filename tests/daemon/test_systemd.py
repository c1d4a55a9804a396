"""meshd under systemd: READY=1 once the node serves, STOPPING=1 at shutdown (a real
``meshd up`` with a NOTIFY_SOCKET); the shipped units verify with systemd-analyze."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.control.client import request
from tests.daemon.support import FAST, ROOT, free_port, meshd


def _receive(sock: socket.socket, timeout: float) -> dict[str, str]:
    sock.settimeout(timeout)
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield sock, str(path)
    finally:
        sock.close()


def test_up_says_ready_once_it_serves_and_stopping_when_it_stops(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    state_dir = tmp_path / "n0"
    done = meshd("init", "--network", "unitnet", "--name", "n0", "--state-dir", str(state_dir))
    assert done.returncode == 0, done.stderr
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": path, "MESHD_LOG": "INFO"}
    env.pop("MESHD_STATE_DIR", None)
    log = (tmp_path / "n0.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "meshd", "up", "--listen", f"/ip4/127.0.0.1/tcp/{port}", *FAST,
         "--state-dir", str(state_dir)],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        ready = _receive(sock, 60)
        # The first word to systemd is READY=1, and by then the node serves: the control
        # socket answers and the gossip side accepts connections.
        assert ready["READY"] == "1", ready
        assert ready["MAINPID"] == str(process.pid)
        view = request(state_dir / "meshd.sock", "status", {}, timeout=5.0)
        with socket.create_connection(("127.0.0.1", port), timeout=5.0):
            pass
        assert ready["STATUS"] == "1 members admitted, 0 connected"
        assert view["members"] == 1

        process.send_signal(signal.SIGTERM)
        stopping = _receive(sock, 10)
        while "STOPPING" not in stopping:  # a STATUS= update may come first
            assert "READY" not in stopping
            stopping = _receive(sock, 10)
        assert stopping["STOPPING"] == "1"
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        log.close()
