"""The Prometheus endpoint (``--metrics ADDR``): a trio task serving HTTP on a socket bound
before anything else starts.

A scrape takes one :class:`~meshd.metrics.snapshot.Snapshot` of the daemon's views on the event
loop (what the catalogue reads of the ``status``, ``peers`` and ``routes`` the control socket
answers, meshd.daemon.metrics_views, and the :class:`~meshd.metrics.snapshot.Traffic`
counters), then renders it in a worker thread, one
at a time: prometheus_client is imported there, on the first scrape, never on the event loop
and never by a daemon without ``--metrics``. A page rendered is answered again for
SHARE_FACTOR times what it took to make (at most FRESH_FOR seconds), so scrapes take at most
about a fifth of a core however many come: each took a snapshot and a rendering (at 10,000
members ~0.25 s of CPU), and 8 clients scraping without pause held the daemon at 84 % of a
core, its event loop 0.2-0.3 s behind. A small daemon's page (a few milliseconds) stays as
fresh as before. Bounded: MAX_CLIENTS connections at once, a request head of at most MAX_HEAD bytes
within HEAD_TIMEOUT and an answer within REQUEST_TIMEOUT; past MAX_CLIENTS, the oldest
connection still waiting for its request head is closed to make room (before, 8 idle
connections shut every scrape out), else the new one is closed at once.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Final

import trio

from meshd.errors import AddressUnavailable, MeshdError
from meshd.metrics.http import (
    INDEX,
    MAX_HEAD,
    Request,
    decode_scrape_untrusted,
    head_length,
    parse_address,
    response,
    route,
)
from meshd.metrics.snapshot import Snapshot, Traffic

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from meshd.daemon.config import DaemonConfig
    from meshd.daemon.service import Daemon

log = logging.getLogger(__name__)

MAX_CLIENTS: Final = 8
REQUEST_TIMEOUT: Final = 10.0
HEAD_TIMEOUT: Final = 3.0  # a scraper sends its request at once
FRESH_FOR: Final = 1.0  # seconds a rendered page is answered again, at most
SHARE_FACTOR: Final = 4.0  # ... and for this many times what it took to make
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

Gather = Callable[[], Awaitable[Snapshot]]


class PortInUse(AddressUnavailable):
    """The port is taken (by another program, or by our own endpoint on another address)."""


def bind(address: str) -> socket.socket:
    """A listening TCP socket on ``address`` (``HOST:PORT``); a one-line error if it does not
    bind. Called before the daemon changes anything, so a wrong address costs nothing."""
    host, port = parse_address(address)
    family = socket.AF_INET6 if ":" in host or host == "" else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6 and host == "":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # :PORT: v4 and v6
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only
        sock.bind((host or "::", port))
        sock.listen(MAX_CLIENTS)
    except OSError as exc:
        sock.close()
        why = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            hint = "another program listens there: choose another port for --metrics"
        elif exc.errno == errno.EADDRNOTAVAIL:
            hint = "that address is not one of this host's: choose one it has"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            hint = "ports below 1024 need root or CAP_NET_BIND_SERVICE: choose a higher one"
        else:
            hint = "choose another address for --metrics"
        kind = PortInUse if exc.errno == errno.EADDRINUSE else AddressUnavailable
        raise kind(f"--metrics {address}: cannot listen: {why}", hint=hint) from None
    return sock


async def gather(daemon: Daemon, traffic: Traffic) -> Snapshot:
    """The daemon's views now: what the collector reads of ``status``, ``peers`` and
    ``routes`` (the keys of their JSON answers, docs/metrics.md), taken for the metrics
    alone (meshd.daemon.metrics_views)."""
    # The daemon's own modules (loaded in a thread as it starts), not imported with this one.
    from meshd.daemon.metrics_views import figures

    status, peers, routes = await figures(daemon)
    revocations = len(daemon.state.membership.revocations())
    return Snapshot.of(time.time(), status, peers, routes, revocations, traffic)


def render(snapshot: Snapshot) -> bytes:
    """The exposition text of a snapshot, and of this process (``process_*``)."""
    from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

    from meshd.metrics.collector import SnapshotCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    ProcessCollector(registry=registry)
    return generate_latest(registry)


@asynccontextmanager
async def open_metrics(config: DaemonConfig) -> AsyncIterator[MetricsServer | None]:
    """The endpoint ``config.metrics`` asks for, bound (None when off); closed on the way out."""
    if config.metrics is None:
        yield None
        return
    sock = bind(config.metrics)
    try:
        yield MetricsServer(sock)
    finally:
        sock.close()


class MetricsSlot:
    """The running daemon's endpoint, which a SIGHUP may turn on, move or turn off
    (meshd.daemon.live_config): one server at a time, each in a cancel scope of its own,
    under :meth:`run`'s nursery."""

    def __init__(self, server: MetricsServer | None) -> None:
        self.server = server
        self._nursery: trio.Nursery | None = None
        self._daemon: Daemon | None = None
        self._scope = trio.CancelScope()
        self._done = trio.Event()

    async def run(
        self, daemon: Daemon, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve (if on) until cancelled; the server's socket closed on the way out."""
        self._daemon = daemon
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self.server is not None:
                    await nursery.start(self._serve, self.server, self._scope, self._done)
                task_status.started()
                await trio.sleep_forever()
        finally:
            if self.server is not None:
                self.server.close()

    async def _serve(
        self,
        server: MetricsServer,
        scope: trio.CancelScope,
        done: trio.Event,
        *,
        task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        assert self._daemon is not None
        try:
            with scope:
                await server.run(self._daemon, task_status=task_status)
        finally:
            done.set()

    async def move(self, address: str | None) -> None:
        """Serve on ``address`` from now on (None: off). :class:`AddressUnavailable` if it
        cannot be bound, the endpoint as it was (where the old endpoint held the port, as
        127.0.0.1:9101 does for 0.0.0.0:9101, it is stopped first and bound again)."""
        old = self.server
        try:
            sock = bind(address) if address is not None else None
        except PortInUse:
            if old is None or address is None or parse_address(address)[1] != old.address[1]:
                raise
            was = old.listening
            await self._stop()
            try:
                sock = bind(address)
            except AddressUnavailable:
                self._start(MetricsServer(bind(was)))
                raise
        await self._stop()
        if sock is not None:
            self._start(MetricsServer(sock))
        else:
            log.info("metrics off")

    async def _stop(self) -> None:
        if self.server is None:
            return
        self._scope.cancel()
        if self._nursery is not None:
            await self._done.wait()
        self.server.close()
        self.server = None

    def _start(self, server: MetricsServer) -> None:
        assert self._nursery is not None
        self.server, self._scope, self._done = server, trio.CancelScope(), trio.Event()
        self._nursery.start_soon(self._serve, server, self._scope, self._done)


class MetricsServer:
    """Serves scrapes on a bound socket (:func:`bind`)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._render = trio.CapacityLimiter(1)
        # (until when it is answered again, the page)
        self._page: tuple[float, bytes] | None = None
        self._rendered = 0  # pages made (the first imports prometheus_client: not timed)
        self._clients = 0
        # Connections still waiting for their request head, oldest first (dicts keep order).
        self._reading: dict[object, trio.CancelScope] = {}
        self.evicted = 0  # connections closed while waiting for their head, to make room
        self._gather: Gather | None = None
        self.scrapes = 0
        self.refused = 0  # connections closed at once: MAX_CLIENTS were being served
        self.failed = 0  # scrapes answered 500: a bug, logged

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def listening(self) -> str:
        """Where it listens, as ``--metrics`` takes it (``HOST:PORT``, ``[V6]:PORT``)."""
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def close(self) -> None:
        self._sock.close()

    async def run(
        self,
        daemon: Daemon,
        *,
        task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled, with snapshots of what ``daemon`` shows."""
        await self.serve(partial(gather, daemon, daemon.state.traffic), task_status=task_status)

    async def serve(
        self, gather: Gather, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._gather = gather
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self._sock.dup()))
        log.info("metrics on http://%s/metrics", self.listening)
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # out of descriptors: wait, do not spin
                    log.debug("metrics: accept: %s", exc)
                    await trio.sleep(0.1)
                    continue
                if self._clients >= MAX_CLIENTS:
                    if not self._reading:
                        self.refused += 1
                        await trio.aclose_forcefully(stream)
                        continue
                    oldest = next(iter(self._reading))
                    self._reading.pop(oldest).cancel()
                    self.evicted += 1
                self._clients += 1
                nursery.start_soon(self._serve, stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        token = object()
        try:
            with trio.move_on_after(REQUEST_TIMEOUT):
                head = None
                with trio.move_on_after(HEAD_TIMEOUT) as reading:
                    self._reading[token] = reading
                    head = await self._read_head(stream)
                self._reading.pop(token, None)
                if head is not None:
                    answer = await self._answer(head)
                    await stream.send_all(answer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("metrics: %s", exc)
        finally:
            self._reading.pop(token, None)
            self._clients -= 1
            await trio.aclose_forcefully(stream)

    @staticmethod
    async def _read_head(stream: trio.SocketStream) -> bytes | None:
        """The request head (b"" when it runs past MAX_HEAD), or None when the client closed
        before sending it whole."""
        buffer = b""
        while (length := head_length(buffer)) is None:
            if len(buffer) > MAX_HEAD:
                return b""
            data = await stream.receive_some(4096)
            if not data:
                return None
            buffer += data
        return buffer[:length]

    async def _answer(self, text: bytes) -> bytes:
        if not text:
            return response(400, b"request head too long\n")
        try:
            request = decode_scrape_untrusted(text)
        except MeshdError:
            return response(400, b"bad request\n")
        status = route(request)
        head = request.method == "HEAD"
        if status != 200:
            return response(status, f"{status}\n".encode(), head=head)
        if request.path == "/":
            return response(200, INDEX, head=head)
        return await self._metrics(request)

    async def _metrics(self, request: Request) -> bytes:
        assert self._gather is not None
        try:
            async with self._render:  # one snapshot and rendering at a time
                page = self._page
                if page is not None and trio.current_time() < page[0]:
                    body = page[1]
                else:
                    started = trio.current_time()
                    snapshot = await self._gather()
                    body = await trio.to_thread.run_sync(render, snapshot)
                    done = trio.current_time()
                    took = (done - started) if self._rendered else 0.0
                    self._rendered += 1
                    self._page = (done + min(FRESH_FOR, SHARE_FACTOR * took), body)
        except MeshdError as exc:
            return response(503, f"{exc}\n".encode())
        except Exception:
            # A bug of ours: told in full in the log and to the scraper, and the daemon (the
            # mesh it keeps) goes on.
            self.failed += 1
            log.exception("metrics: a scrape failed: a bug in meshd, please report it")
            return response(500, b"internal error: a bug in meshd, see its log\n")
        self.scrapes += 1
        return response(200, body, CONTENT_TYPE, head=request.method == "HEAD")
