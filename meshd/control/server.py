"""The daemon's side of the control socket: a trio unix-socket server.

One request per connection: read one line (bounded), call the handler, write one line,
close. A handler's MeshdError becomes an error response; any other exception is logged and
reported as an internal error, and never takes the daemon down.

The socket is local, so there is no peer identity to key a budget on: the budget is per
connection (its request must arrive within ``read_timeout`` and be answered within
``REQUEST_TIMEOUT``) plus a total (``max_connections`` at once). Past the total, the oldest
connection still waiting for its request is closed to make room; if every connection is busy
with a command, the new one is closed instead. ``accept()`` failing for lack of resources
(EMFILE, ENFILE, ENOBUFS, ENOMEM) is shed too: counted, logged once a minute, and retried
after a short pause. Nothing of this ever ends the server. :class:`ControlStats` counts it.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import logging
import os
import socket as stdlib_socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
from meshd.control.unix_path import reachable
from meshd.errors import ControlError, MeshdError, UsageError

if TYPE_CHECKING:
    # trio's own TaskStatus is shadowed for mypy by the trio-stubs package libp2p installs.
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""``handler(cmd, args) -> result`` (JSON-serialisable); raises MeshdError to refuse."""

SOCKET_MODE: Final = 0o660
REQUEST_TIMEOUT: Final = 10.0
"""Seconds for a whole exchange: the request read, the command run, the response sent."""
READ_TIMEOUT: Final = 5.0
"""Seconds from accepting a connection to having its whole request."""
MAX_CONNECTIONS: Final = 64
"""Control connections served at once."""
LISTEN_BACKLOG: Final = 4096
"""Connections the kernel queues before we accept them (capped by ``net.core.somaxconn``).
A client finds the queue full only when someone holds more connections than that; it then
retries (:func:`meshd.control.client.request`)."""
ACCEPT_BACKOFF: Final = 0.1
"""Seconds to pause accepting after accept() failed for lack of resources."""
RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_LOG_INTERVAL: Final = 60.0


@dataclass(slots=True)
class ControlStats:
    """What the control server shed; the daemon's ``status`` shows it."""

    open: int = 0
    """Connections being served now."""
    shed: int = 0
    """Connections closed unanswered to stay within ``max_connections``."""
    idle: int = 0
    """Connections closed because their request did not arrive within ``read_timeout``."""
    accept_errors: int = 0
    """accept() calls that failed for lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM)."""


_CALLER: contextvars.ContextVar[int | None] = contextvars.ContextVar("caller", default=None)


def caller_uid() -> int | None:
    """The user id of the process whose request is being handled (SO_PEERCRED), or None
    outside a request or where the kernel does not say."""
    return _CALLER.get()


def _peer_uid(stream: trio.SocketStream) -> int | None:
    try:
        raw = stream.socket.getsockopt(
            stdlib_socket.SOL_SOCKET, stdlib_socket.SO_PEERCRED, struct.calcsize("3i")
        )
    except (OSError, AttributeError):
        return None
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


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


async def answer(
    stream: trio.SocketStream,
    handler: Handler,
    *,
    read_timeout: float = READ_TIMEOUT,
    reading: Callable[[trio.CancelScope | None], None] | None = None,
) -> bool:
    """Serve one connection: one request, one response. False if it sent no request in time.

    ``reading`` is told the cancel scope of the request read when it starts, and ``None``
    once the request is in (the server sheds connections that are still reading).
    """
    try:
        with trio.fail_after(REQUEST_TIMEOUT):
            with trio.move_on_after(read_timeout) as read_scope:
                if reading is not None:
                    reading(read_scope)
                try:
                    data = await _read_request(stream)
                finally:
                    if reading is not None:
                        reading(None)
            if read_scope.cancelled_caught:
                return False
            _CALLER.set(_peer_uid(stream))
            response = await _respond(data, handler)
            await stream.send_all(encode_response(response))
    except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    except ControlError as exc:  # the request was too large, or the response unsendable
        log.warning("control: %s", exc)
        with contextlib.suppress(Exception):
            await stream.send_all(encode_response(Response(failure=Failure.of(exc))))
    finally:
        await trio.aclose_forcefully(stream)
    return True


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
            with reachable(path) as address:
                probe.connect(address)
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
            with reachable(path) as address:
                await sock.bind(address)
        finally:
            os.umask(old_umask)
        os.chmod(path, SOCKET_MODE)
        sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


class _Server:
    """The accept loop and its budget: at most ``max_connections`` served at once."""

    def __init__(
        self, handler: Handler, max_connections: int, read_timeout: float, stats: ControlStats
    ) -> None:
        self.handler = handler
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        self.stats = stats
        # Connections still waiting for their request, oldest first (dicts keep order).
        self.reading: dict[int, trio.CancelScope] = {}
        self._evicted: set[int] = set()
        self._next_id = 0
        self._last_shed_log = -_LOG_INTERVAL
        self._last_error_log = -_LOG_INTERVAL

    async def run(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in RESOURCE_ERRNOS:
                    raise
                self.stats.accept_errors += 1
                if self._due("_last_error_log"):
                    log.warning(
                        "control socket: accept() failed: %s; pausing %.1f s (%d times so far)",
                        os.strerror(exc.errno or 0),
                        ACCEPT_BACKOFF,
                        self.stats.accept_errors,
                    )
                await trio.sleep(ACCEPT_BACKOFF)
                continue
            if self.stats.open >= self.max_connections and not self._make_room():
                self._count_shed()
                await trio.aclose_forcefully(stream)
                continue
            self.stats.open += 1
            nursery.start_soon(self._serve_one, stream)

    def _make_room(self) -> bool:
        """Close the oldest connection still waiting for its request; False if none is."""
        if not self.reading:
            return False
        oldest = next(iter(self.reading))
        self.reading.pop(oldest).cancel()
        self._evicted.add(oldest)
        self._count_shed()
        return True

    def _count_shed(self) -> None:
        self.stats.shed += 1
        if self._due("_last_shed_log"):
            log.warning(
                "control socket: %d connections open (limit %d); closing the oldest idle one "
                "(%d shed so far)",
                self.stats.open,
                self.max_connections,
                self.stats.shed,
            )

    def _due(self, attribute: str) -> bool:
        now = time.monotonic()
        if now - float(getattr(self, attribute)) < _LOG_INTERVAL:
            return False
        setattr(self, attribute, now)
        return True

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        ident = self._next_id
        self._next_id += 1

        def reading(scope: trio.CancelScope | None) -> None:
            if scope is None:
                self.reading.pop(ident, None)
            else:
                self.reading[ident] = scope

        try:
            answered = await answer(
                stream, self.handler, read_timeout=self.read_timeout, reading=reading
            )
            if not answered and ident not in self._evicted:
                self.stats.idle += 1
        finally:
            self._evicted.discard(ident)
            self.reading.pop(ident, None)
            self.stats.open -= 1


async def serve(
    path: Path,
    handler: Handler,
    *,
    max_connections: int = MAX_CONNECTIONS,
    read_timeout: float = READ_TIMEOUT,
    stats: ControlStats | None = None,
    task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control socket at ``path`` until cancelled; removes the socket on exit.

    At most ``max_connections`` at once, each given ``read_timeout`` seconds to send its
    request; what is shed is counted in ``stats``.
    """
    if max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    server = _Server(handler, max_connections, read_timeout, stats or ControlStats())
    listener = await bind(path)
    try:
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            await server.run(listener, nursery)
    finally:
        _remove(path)
