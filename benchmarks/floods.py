"""Floods of plain sockets, bounded in count and time, for the hostile benchmark and tests.

Both aim only at what the caller names: a TCP port on 127.0.0.1 (from a chosen loopback
source address, so that budgets per source can be seen) or a unix socket path. Neither
speaks: they open, hold, and open again what the target closes.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time


def _closed_by_peer(sock: socket.socket) -> bool:
    """Read what arrived (a greeting is ignored); True when the peer has closed."""
    try:
        return not sock.recv(4096)
    except OSError:
        return True


def connect_flood(
    port: int,
    source: str,
    *,
    concurrent: int,
    total: int,
    seconds: float,
    hold: float | None = None,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Plain TCP connections from ``source`` to 127.0.0.1:``port`` that never start Noise:
    at most ``concurrent`` open, each opened again as soon as the target closes one (or,
    with ``hold``, after that many seconds). Bounded by ``total`` connects and ``seconds``
    (or until ``stop`` is set)."""
    selector = selectors.DefaultSelector()
    born: dict[socket.socket, float] = {}
    opened = refused = closed_by_target = recycled = 0
    end = time.monotonic() + seconds

    def close(sock: socket.socket) -> None:
        selector.unregister(sock)
        sock.close()
        del born[sock]

    try:
        while time.monotonic() < end and not (stop is not None and stop.is_set()):
            while len(born) < concurrent and opened < total:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.bind((source, 0))
                opened += 1
                try:
                    sock.connect(("127.0.0.1", port))
                except BlockingIOError:
                    pass  # under way
                except OSError:  # refused at once: nothing listens, or the queue is full
                    refused += 1
                    sock.close()
                    break
                selector.register(sock, selectors.EVENT_READ)
                born[sock] = time.monotonic()
            for key, _ in selector.select(timeout=0.02):
                sock = key.fileobj  # type: ignore[assignment]
                if _closed_by_peer(sock):
                    closed_by_target += 1
                    close(sock)
            if hold is not None:
                old = time.monotonic() - hold
                for sock in [s for s, t in born.items() if t < old]:
                    recycled += 1
                    close(sock)
            if opened >= total and not born:
                break
    finally:
        for sock in born:
            sock.close()
        selector.close()
    return {
        "opened": opened,
        "refused": refused,
        "closed_by_target": closed_by_target,
        "recycled": recycled,
    }


def control_flood(
    path: str, *, connections: int, seconds: float, stop: threading.Event | None = None
) -> dict[str, int]:
    """Hold ``connections`` idle connections to a unix socket, connecting again whenever the
    target closes one or a connect fails (a full listen queue). Bounded in time."""
    selector = selectors.DefaultSelector()
    held: set[socket.socket] = set()
    connects = failed = closed_by_target = most = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end and not (stop is not None and stop.is_set()):
            while len(held) < connections:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.setblocking(False)
                connects += 1
                try:
                    sock.connect(path)
                except OSError:  # the listen queue is full (EAGAIN), or refused
                    failed += 1
                    sock.close()
                    break
                held.add(sock)
                selector.register(sock, selectors.EVENT_READ)
            most = max(most, len(held))
            for key, _ in selector.select(timeout=0.02):
                sock = key.fileobj  # type: ignore[assignment]
                if _closed_by_peer(sock):
                    selector.unregister(sock)
                    sock.close()
                    held.discard(sock)
                    closed_by_target += 1
    finally:
        held_at_end = len(held)
        for sock in held:
            sock.close()
        selector.close()
    return {
        "connects": connects,
        "failed": failed,
        "closed_by_target": closed_by_target,
        "most_held": most,
        "held_at_end": held_at_end,
    }
