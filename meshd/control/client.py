"""The CLI's side of the control socket: blocking, stdlib only, cheap to import.

``meshd peers`` and ``meshd status`` must answer at once, so this module imports nothing but
the standard library's ``socket`` and meshd's pure codec: no trio, no libp2p.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any, TypeVar

from meshd.control.commands import Request as Request_
from meshd.control.protocol import (
    MAX_RESPONSE,
    Request,
    decode_response_untrusted,
    encode_request,
)
from meshd.control.typed_json import decode_answer, to_json
from meshd.control.unix_path import reachable
from meshd.errors import ControlError, DaemonNotRunning, DecodeError, NotPermitted

A = TypeVar("A")

_CHUNK = 64 * 1024
_BUSY_RETRY = 0.002  # seconds between connects while the daemon's listen queue is full


def _not_running(socket_path: Path) -> DaemonNotRunning:
    return DaemonNotRunning(
        f"no meshd daemon is running for {socket_path.parent}",
        hint="start it with `meshd up` (or pass the --state-dir it runs with)",
    )


def request(socket_path: Path, cmd: str, args: dict[str, Any], timeout: float = 5.0) -> Any:
    """Send one command to the daemon and return its result.

    Raises DaemonNotRunning when nothing listens on ``socket_path``, ControlError when the
    exchange fails, and the daemon's own error (a MeshdError, with its message and hint)
    when the daemon refuses the command.
    """
    payload = encode_request(Request(cmd, args))
    with _connect(socket_path, timeout) as sock:
        try:
            sock.sendall(payload)
            data = _read_line(sock)
        except TimeoutError:
            raise ControlError(
                f"the daemon did not answer {cmd!r} within {timeout:g} s",
                hint="it may be overloaded or stuck; see its log",
            ) from None
        except OSError as exc:
            raise ControlError(f"the control connection failed: {exc}") from None
    try:
        response = decode_response_untrusted(data)
    except DecodeError as exc:
        raise ControlError(f"the daemon's answer is unusable: {exc}", hint=exc.hint) from None
    if response.failure is not None:
        raise response.failure.to_exception()
    return response.result


def _connect(socket_path: Path, timeout: float) -> socket.socket:
    """A connected socket, with ``timeout`` on every operation.

    A unix socket whose listen queue is full refuses ``connect`` at once (EAGAIN) rather
    than waiting: the daemon is busy shedding, or someone holds it busy. That is retried
    until ``timeout`` runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            with reachable(socket_path) as address:
                sock.connect(address)
        except BlockingIOError:
            sock.close()
            if time.monotonic() >= deadline:
                raise ControlError(
                    f"the daemon at {socket_path} accepted no connection within {timeout:g} s",
                    hint="its control socket is saturated; see its log (status: shed)",
                ) from None
            time.sleep(_BUSY_RETRY)
            continue
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise _not_running(socket_path) from None
        except NotADirectoryError:
            sock.close()
            raise DaemonNotRunning(
                f"no meshd daemon is running for {socket_path.parent}: it is not a directory",
                hint="pass the --state-dir the daemon runs with",
            ) from None
        except PermissionError:
            sock.close()
            raise NotPermitted(
                f"no permission to use {socket_path}",
                hint="run as root or as a member of the group that owns the state dir",
            ) from None
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot reach the daemon at {socket_path}: {exc}") from None
        return sock


def _read_line(sock: socket.socket) -> bytes:
    buffer = bytearray()
    while True:
        chunk = sock.recv(_CHUNK)
        if not chunk:
            break
        buffer += chunk
        if buffer.endswith(b"\n"):
            break
        if len(buffer) > MAX_RESPONSE:
            raise ControlError(f"the daemon's answer is over {MAX_RESPONSE} bytes")
    if not buffer:
        raise ControlError("the daemon closed the connection without answering")
    return bytes(buffer)


def ask(socket_path: Path, command: Request_, answer: type[A], timeout: float = 5.0) -> A:
    """Send one typed request (:mod:`meshd.control.commands`) and read its typed answer.

    Raises what :func:`request` raises, and ControlError when the answer is not the
    command's (a daemon of another meshd version).
    """
    result = request(socket_path, command.command, to_json(command), timeout=timeout)
    try:
        return decode_answer(answer, result)
    except DecodeError as exc:
        raise ControlError(
            f"the daemon's answer to {command.command!r} is unusable: {exc}",
            hint="the CLI and the daemon must be the same meshd version; restart the daemon",
        ) from None
