"""The control socket in a state dir whose path is longer than a socket address holds."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meshd.control.client import request
from meshd.control.unix_path import MAX_SUN_PATH, reachable
from meshd.errors import DaemonNotRunning
from tests.control.serving import with_server


def deep(tmp_path: Path, length: int = 150) -> Path:
    """A directory (made) whose ``meshd.sock`` has a path of at least ``length`` bytes."""
    path = tmp_path
    while len(os.fsencode(path / "meshd.sock")) < length:
        path = path / ("d" * 40)
    path.mkdir(parents=True)
    return path


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_path_that_fits_is_itself(tmp_path: Path) -> None:
    path = tmp_path / "meshd.sock"
    with reachable(path) as address:
        assert address == str(path)


def test_a_long_path_is_bound_and_connected_to_through_its_directory(tmp_path: Path) -> None:
    path = deep(tmp_path) / "meshd.sock"
    assert len(os.fsencode(path)) > MAX_SUN_PATH
    before = open_fds()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        with pytest.raises(OSError, match="too long"):
            server.bind(str(path))  # what the system does with it as written
        with reachable(path) as address:
            assert len(os.fsencode(address)) <= MAX_SUN_PATH
            server.bind(address)
        server.listen(1)
        assert path.is_socket()  # made where it was asked for, under its own name
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            with reachable(path) as address:
                client.connect(address)
            accepted, _ = server.accept()
            with accepted:
                client.sendall(b"x")
                assert accepted.recv(1) == b"x"
    assert open_fds() == before  # the directories opened are closed again


def test_a_missing_or_file_directory_raises_what_opening_it_raises(tmp_path: Path) -> None:
    missing = deep(tmp_path) / "gone" / "meshd.sock"
    with pytest.raises(FileNotFoundError), reachable(missing):
        pass
    (tmp_path / "file").write_text("")
    as_file = tmp_path / "file" / ("d" * 120) / "meshd.sock"
    with pytest.raises(NotADirectoryError), reachable(as_file):
        pass


async def _echo(cmd: str, args: dict[str, Any]) -> Any:
    return args


def test_the_daemons_server_and_the_client_work_in_a_deep_state_dir(tmp_path: Path) -> None:
    path = deep(tmp_path) / "meshd.sock"
    answer = with_server(path, _echo, lambda: request(path, "echo", {"a": 1}))
    assert answer == {"a": 1}
    with pytest.raises(DaemonNotRunning):  # the server gone: said as for any state dir
        request(path, "echo", {})


def test_a_state_dir_that_is_a_file_is_said_so_in_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "meshd", "status", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "MESHD_CONFIG": "/dev/null"},
    )
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"no meshd daemon is running for {state}: it is not a directory" in lines[0]
