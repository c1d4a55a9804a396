"""py-libp2p's log records: where they go, and the filters that hold them to what says something.

* :class:`Libp2pLogBridge`: libp2p sets ``propagate=False`` on its root logger, so without
  it libp2p's warnings would go nowhere; it re-logs them on :data:`FORWARDED_LOGGER`.
* :class:`OncePerMinute` on :data:`ACCEPT_LOGGER`: trio's accept loop logs a traceback ten
  times a second while the process is out of file descriptors.
* :class:`OncePerPeer` on :data:`GOSSIPSUB_LOGGER`: "IHAVE/IWANT rate limit exceeded" once
  per peer a minute, with a count, not dozens a second.
* :class:`Demoted` on :data:`HOST_LOGGER`, :data:`TCP_LOGGER`, :data:`MULTISELECT_LOGGER`
  and :data:`SWARM_LOGGER`: a stream refused for its protocol or cut during its handshake,
  a dial that failed, a connection added while the host stopped are DEBUG, not ERROR or
  WARNING.

The filters (``*_LOG_FILTER``) are put on their loggers by the package,
:mod:`meshd.gossip.libp2p_workarounds`, with its patches, when it is imported (as it is
before any of its modules).

To re-check on an upgrade of py-libp2p (the tests are in tests/gossip/test_host.py):

- The log bridge (:class:`Libp2pLogBridge`). ``utils/logging.py`` sets ``propagate=False``.
  Test: test_libp2p_warnings_reach_our_logger.
- libp2p's log lines held to what says something (:class:`OncePerPeer`, :class:`Demoted`).
  ``handle_ihave``/``handle_iwant`` in ``pubsub/gossipsub.py``, ``BasicHost.new_stream``,
  ``TCP.dial``, ``MultiselectClient.handshake`` and ``Swarm.add_conn``: their messages'
  first words. Tests: tests/gossip/test_log_filters.py.
- Accept errors logged once a minute (:class:`OncePerMinute` on :data:`ACCEPT_LOGGER`).
  ``trio/_highlevel_serve_listeners.py``: ``LOGGER`` and ``ACCEPT_CAPACITY_ERRNOS`` (trio,
  which py-libp2p's TCP listener uses). Test: test_accept_errors_are_logged_once_a_minute,
  in tests/gossip/test_workarounds.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

__all__ = [
    "ACCEPT_LOGGER",
    "ACCEPT_LOG_FILTER",
    "FORWARDED_LOGGER",
    "GOSSIPSUB_LOGGER",
    "GOSSIPSUB_LOG_FILTER",
    "HOST_LOGGER",
    "HOST_LOG_FILTER",
    "LIBP2P_LOGGER",
    "MULTISELECT_LOGGER",
    "MULTISELECT_LOG_FILTER",
    "SWARM_LOGGER",
    "SWARM_LOG_FILTER",
    "TCP_LOGGER",
    "TCP_LOG_FILTER",
    "Demoted",
    "Libp2pLogBridge",
    "OncePerMinute",
    "OncePerPeer",
]

LIBP2P_LOGGER: Final = "libp2p"
"""py-libp2p's root logger; it does not propagate to ours."""

FORWARDED_LOGGER: Final = "meshd.gossip.libp2p"
"""Where libp2p's records of level WARNING and above are re-logged."""


class Libp2pLogBridge(logging.Handler):
    """Re-logs libp2p's WARNING+ records on our logger; shared by every host of a process.

    libp2p sets ``propagate=False`` on its root logger, so without this its warnings would
    go nowhere. The handler counts its users and removes itself when the last one leaves.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.users = 0
        self.target = logging.getLogger(FORWARDED_LOGGER)

    def emit(self, record: logging.LogRecord) -> None:
        # The record keeps its libp2p logger name; our logger's handlers and level decide.
        if self.target.isEnabledFor(record.levelno):
            self.target.handle(record)

    @classmethod
    def attach(cls) -> Libp2pLogBridge:
        source = logging.getLogger(LIBP2P_LOGGER)
        bridge = next((h for h in source.handlers if isinstance(h, cls)), None)
        if bridge is None:
            bridge = cls()
            source.addHandler(bridge)
        bridge.users += 1
        return bridge

    def detach(self) -> None:
        self.users -= 1
        if self.users <= 0:
            logging.getLogger(LIBP2P_LOGGER).removeHandler(self)


class OncePerMinute(logging.Filter):
    """Let one record through per minute, without its traceback; count the others.

    Put on ``trio.serve_listeners``, which logs an error with a full traceback every
    0.1 s while accept() fails for lack of descriptors (EMFILE and kin; it pauses and
    goes on, which is right): a process at its limit would log ten tracebacks a second.
    """

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self.suppressed = 0
        self._last = -interval

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._last < self.interval:
            self.suppressed += 1
            return False
        self._last = now
        record.exc_info = None
        record.exc_text = None
        if self.suppressed:
            record.msg = f"{record.msg} ({self.suppressed} more since the last report)"
            self.suppressed = 0
        return True


ACCEPT_LOGGER: Final = "trio.serve_listeners"
"""Where trio reports accept() failing for lack of resources (EMFILE, ENFILE, ...)."""
ACCEPT_LOG_FILTER: Final = OncePerMinute()


class OncePerPeer(logging.Filter):
    """Let one record of each of ``messages`` through per peer per ``interval``; the next one
    after it says how many were held back in between. Other records pass untouched.

    Put on py-libp2p's gossipsub logger, which warns "IHAVE rate limit exceeded" for every
    IHAVE past ten a second from one peer (checked even with spam protection off): a founder
    that members join logged dozens a second. The peer is the record's first argument.
    """

    def __init__(
        self,
        messages: tuple[str, ...],
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        limit: int = 1024,
    ) -> None:
        super().__init__()
        self.messages = messages
        self.interval = interval
        self.clock = clock
        self.limit = limit
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # (text, peer) -> (last, held)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.msg
        if not isinstance(text, str) or not text.startswith(self.messages):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        key = (text, str(args[0]) if args else "")
        now = self.clock()
        last, held = self._seen.get(key, (None, 0))
        if last is not None and now - last < self.interval:
            self._seen[key] = (last, held + 1)
            return False
        if key not in self._seen and len(self._seen) >= self.limit:
            self._forget(now)
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{text} ({held} more since the last report)"
        return True

    def _forget(self, now: float) -> None:
        """Drop the peers not reported within the interval (all of them if none is)."""
        stale = [k for k, (last, _) in self._seen.items() if now - last >= self.interval]
        for key in stale or list(self._seen):
            del self._seen[key]


GOSSIPSUB_LOGGER: Final = "libp2p.pubsub.gossipsub"
GOSSIPSUB_LOG_FILTER: Final = OncePerPeer(
    ("IHAVE rate limit exceeded", "IWANT rate limit exceeded")
)


class Demoted(logging.Filter):
    """Lower to DEBUG the records whose message starts with a rule's prefix and holds its
    words (in the message or its arguments), for any of ``rules``: ``(prefix, words)``.

    py-libp2p logs at ERROR or WARNING, one record per attempt, failures that a mesh meets
    all the time and whose callers handle them and say what matters themselves: a dial to
    an address that does not answer (a NATed member's private address, a member that is
    down; the connection policy dials again and ``meshd peers``/``status`` show who is
    reached), a stream whose connection closed during its protocol handshake (a member
    stopping), a peer that does not speak the protocol asked for (a member that has just
    enrolled does not serve sync yet: meshd.daemon.antientropy retries it and says so), a
    connection that arrived while the host was stopping. They stay in the log at DEBUG.
    """

    def __init__(self, *rules: tuple[str, str]) -> None:
        super().__init__()
        self.rules = rules

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.msg
        if not isinstance(text, str):
            return True
        for prefix, words in self.rules:
            if text.startswith(prefix) and (words in text or _in_args(record, words)):
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                break
        return True


def _in_args(record: logging.LogRecord, words: str) -> bool:
    args = record.args if isinstance(record.args, tuple) else (record.args,)
    return any(words in (a if isinstance(a, str) else repr(a)) for a in args)


HOST_LOGGER: Final = "libp2p.host.basic_host"
HOST_LOG_FILTER: Final = Demoted(
    ("Failed to open stream to peer", "protocols not supported"),
    ("Failed to open stream to peer", "handshake read failed"),
    ("Failed to open stream to peer", "handshake write failed"),
)
TCP_LOGGER: Final = "libp2p.transport.tcp.tcp"
TCP_LOG_FILTER: Final = Demoted(("Failed to open TCP stream", ""))
MULTISELECT_LOGGER: Final = "libp2p.protocol_muxer.multiselect_client"
MULTISELECT_LOG_FILTER: Final = Demoted(
    ("MultiselectClient handshake: read failed", ""),
    ("MultiselectClient handshake: write failed", ""),
)
SWARM_LOGGER: Final = "libp2p.network.swarm"
SWARM_LOG_FILTER: Final = Demoted(
    ("[ADDCONN_FAIL]", "Cannot schedule task after service has stopped")
)
