"""The stdlib client against the trio server, and the errors when nobody listens."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from meshd.control.client import request
from meshd.control.server import serve
from meshd.errors import ControlError, DaemonNotRunning, MeshdError, UsageError, VerifyError
from tests.control.serving import with_server


async def _handler(cmd: str, args: dict[str, Any]) -> Any:
    if cmd == "echo":
        return args
    if cmd == "refuse":
        raise VerifyError("invite-used-up", "the invite has been used up", hint="ask again")
    if cmd == "slow":
        await trio.sleep(5)
    if cmd == "crash":
        raise RuntimeError("boom")
    raise UsageError(f"unknown command {cmd!r}", hint="see meshd --help")


def test_request_and_errors_over_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "meshd.sock"

    def calls() -> list[Any]:
        out: list[Any] = [stat.S_IMODE(os.stat(path).st_mode)]
        out.append(request(path, "echo", {"a": [1, "x"]}))
        for cmd in ("refuse", "nope", "crash"):
            try:
                request(path, cmd, {})
            except MeshdError as exc:
                out.append(exc)
        try:
            request(path, "slow", {}, timeout=0.2)
        except ControlError as exc:
            out.append(exc)
        return out

    mode, echoed, refused, unknown, crashed, slow = with_server(path, _handler, calls)
    assert mode == 0o660
    assert echoed == {"a": [1, "x"]}
    assert isinstance(refused, VerifyError)
    assert refused.reason == "invite-used-up"
    assert refused.hint == "ask again"
    assert isinstance(unknown, UsageError)
    assert "unknown command" in str(unknown)
    assert type(crashed).__name__ == "MeshdError"
    assert "internal error" in str(crashed)
    assert "did not answer" in str(slow)
    assert not path.exists(), "the socket file is removed on shutdown"


def test_no_daemon_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning) as info:
        request(tmp_path / "meshd.sock", "status", {})
    assert "meshd up" in info.value.hint
    # A stale socket file nobody listens on is the same situation.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "meshd.sock"))
    stale.close()
    with pytest.raises(DaemonNotRunning):
        request(tmp_path / "meshd.sock", "status", {})


def test_a_second_server_on_a_live_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "meshd.sock"

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, path, _handler)
            with pytest.raises(UsageError, match="already runs"):
                await serve(path, _handler)
            nursery.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.parametrize("command", ["peers", "status"])
def test_cli_without_daemon_fails_in_one_line(tmp_path: Path, command: str) -> None:
    (tmp_path / "meshd.db").touch()
    result = subprocess.run(
        [sys.executable, "-m", "meshd", command, "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 3  # no daemon runs (the README's exit statuses)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no meshd daemon is running" in lines[0]
    assert "meshd up" in lines[0]


def test_cli_status_imports_nothing_heavy(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from meshd.cli import main\n"
        "try:\n"
        f"    main(['status', '--state-dir', {str(tmp_path)!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('trio', 'libp2p', 'multiaddr', 'meshd.daemon', 'meshd.gossip.host')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.stdout.strip() == "", result.stdout
