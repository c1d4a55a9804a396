"""The daemon's side of the control socket: a trio unix-socket server.

One request per connection: read one line (bounded), call the handler, write one line,
close. A handler's MeshdError becomes an error response; any other exception is logged and
reported as an internal error, and never takes the daemon down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket as stdlib_socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from meshd.control.protocol import (
    MAX_REQUEST,
    Failure,
    Response,
    decode_request_untrusted,
    encode_response,
)
from meshd.errors import ControlError, MeshdError, UsageError

if TYPE_CHECKING:
    # trio's own TaskStatus is shadowed for mypy by the trio-stubs package libp2p installs.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""``handler(cmd, args) -> result`` (JSON-serialisable); raises MeshdError to refuse."""

SOCKET_MODE: Final = 0o660
REQUEST_TIMEOUT: Final = 10.0


async def _read_request(stream: trio.SocketStream) -> bytes:
    buffer = bytearray()
    while not buffer.endswith(b"\n"):
        chunk = await stream.receive_some(MAX_REQUEST + 1)
        if not chunk:
            break
        buffer += chunk
        if len(buffer) > MAX_REQUEST:
            raise ControlError(f"control request over {MAX_REQUEST} bytes")
    return bytes(buffer)


async def answer(stream: trio.SocketStream, handler: Handler) -> None:
    """Serve one connection: one request, one response."""
    try:
        with trio.fail_after(REQUEST_TIMEOUT):
            data = await _read_request(stream)
            response = await _respond(data, handler)
            await stream.send_all(encode_response(response))
    except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    except ControlError as exc:  # the response itself was too large to send
        with contextlib.suppress(Exception):
            await stream.send_all(encode_response(Response(failure=Failure.of(exc))))
    finally:
        await stream.aclose()


async def _respond(data: bytes, handler: Handler) -> Response:
    try:
        request = decode_request_untrusted(data)
        return Response(result=await handler(request.cmd, request.args))
    except MeshdError as exc:
        return Response(failure=Failure.of(exc))
    except Exception as exc:
        log.exception("control command failed")
        return Response(failure=Failure("InternalError", f"internal error: {exc}"))


def _someone_listens(path: Path) -> bool:
    with stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _clear_stale(path: Path) -> None:
    if path.exists() or path.is_symlink():
        if _someone_listens(path):
            raise UsageError(
                f"a meshd daemon already runs for {path.parent}",
                hint="stop it first, or use another --state-dir",
            )
        path.unlink()


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


async def bind(path: Path) -> trio.SocketListener:
    """Listen on ``path`` (mode 0660); refuse if another daemon already answers there."""
    _clear_stale(path)
    sock = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o117)
        try:
            await sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, SOCKET_MODE)
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def serve(
    path: Path,
    handler: Handler,
    *,
    task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control socket at ``path`` until cancelled; removes the socket on exit."""
    listener = await bind(path)
    try:
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                nursery.start_soon(answer, stream, handler)
    finally:
        _remove(path)
