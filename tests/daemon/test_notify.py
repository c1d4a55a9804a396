"""sd_notify by hand (meshd.daemon.notify) against real Unix datagram sockets."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from meshd.control.commands import Request, StatusAnswer, StatusRequest
from meshd.daemon.notify import (
    Notifier,
    inform_systemd,
    socket_address,
    status_line,
    status_text,
    watchdog_interval,
)
from meshd.errors import ControlError

A = TypeVar("A")


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound to a path, as systemd's notify socket is."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5.0)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def messages(sock: socket.socket, count: int) -> list[dict[str, str]]:
    found = []
    for _ in range(count):
        data = sock.recv(4096).decode()
        found.append(dict(line.split("=", 1) for line in data.split("\n")))
    return found


def test_address_forms() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract/name") == "\0abstract/name"
    assert socket_address("") is None
    assert socket_address("@") is None
    assert socket_address("vsock:2:1234") is None
    assert socket_address("relative/path") is None


def test_watchdog_interval_is_half_the_unit_setting_and_only_for_the_main_pid() -> None:
    assert watchdog_interval({}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None


def test_ready_status_stopping_reach_a_path_socket(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("3 members admitted, 2 connected")
    assert notifier.status("4 members admitted, 3 connected")
    assert not notifier.status("4 members admitted, 3 connected")  # unchanged: not sent
    assert notifier.stopping()
    ready, status, stopping = messages(sock, 3)
    assert ready == {
        "READY": "1",
        "MAINPID": str(os.getpid()),
        "STATUS": "3 members admitted, 2 connected",
    }
    assert status == {"STATUS": "4 members admitted, 3 connected"}
    assert stopping["STOPPING"] == "1"
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4096)


def test_abstract_socket_names() -> None:
    name = f"meshd-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5.0)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert messages(sock, 1)[0]["READY"] == "1"


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.stopping()


def test_a_socket_that_is_gone_is_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert not notifier.ready()
    assert not notifier.ping()
    assert len([r for r in caplog.records if "cannot notify" in r.message]) == 1


def test_status_lines_are_one_bounded_line() -> None:
    assert status_line("a\nb  c") == "STATUS=a b c"
    assert len(status_line("x" * 1000)) == len("STATUS=") + 200
    view = _status(
        members=12,
        connected=11,
        revoked=1,
        wireguard={"backend": "userspace", "peers": 11, "interface": "meshd0"},
    )
    assert status_text(view) == (
        "12 members admitted, 11 connected, 11 WireGuard peers on meshd0, 1 revoked"
    )
    assert status_text(_status(members=1, connected=0, wireguard={"backend": "none"})) == (
        "1 members admitted, 0 connected"
    )


def _status(**values: Any) -> StatusAnswer:
    """A status answer with these values and zeros or empties elsewhere."""
    blank = {
        "members": 0, "expired": 0, "revoked": 0, "records": 0, "pending": 0,
        "pending_evicted": 0, "accepted": 0, "connected": 0, "syncs": 0, "tasks": 0,
        "uptime": 0.0, "rejected": {}, "wireguard": {}, "budgets": {}, "shed": {},
        "listen_addrs": (), "endpoints": (), "node_id": "", "name": "", "network": "",
        "network_id": "", "digest": "", "peer_id": "",
    }  # fmt: skip
    return StatusAnswer(**{**blank, **values})


def test_inform_systemd_ready_status_watchdog_then_stopping(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid())}
    views = iter([_status(members=n, connected=n - 1) for n in range(1, 100)])

    async def ask(request: Request, answer: type[A]) -> A:
        assert isinstance(request, StatusRequest)
        view = next(views)
        if view.members == 3:
            raise ControlError("busy")
        assert isinstance(view, answer)
        return view

    seen: list[dict[str, str]] = []

    def drain() -> None:  # as systemd does, so that the socket's queue never fills
        sock.settimeout(1.0)
        with contextlib.suppress(TimeoutError):
            while True:
                seen.extend(messages(sock, 1))

    reader = threading.Thread(target=drain)
    reader.start()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: inform_systemd(
                Notifier(env), ask, interval=0.05, task_status=task_status
            ))  # fmt: skip
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()

    trio.run(main)
    reader.join()
    assert seen[0]["READY"] == "1"
    assert seen[0]["STATUS"] == "1 members admitted, 0 connected"
    statuses = [m["STATUS"] for m in seen[1:] if "STATUS" in m and "STOPPING" not in m]
    assert statuses[:3] == [
        "2 members admitted, 1 connected",
        "running; status unavailable: busy",
        "4 members admitted, 3 connected",
    ]
    # Half of WatchdogSec (0.1 s): about ten pings in half a second.
    assert 3 <= sum("WATCHDOG" in m for m in seen) <= 12
    assert seen[-1]["STOPPING"] == "1"
    assert sum("STOPPING" in m for m in seen) == 1
    assert sum("READY" in m for m in seen) == 1
