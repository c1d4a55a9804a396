"""py-libp2p's log lines, held to what says something (meshd.gossip.libp2p_workarounds.logs)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from meshd.gossip.libp2p_workarounds.logs import (
    FORWARDED_LOGGER,
    GOSSIPSUB_LOGGER,
    HOST_LOGGER,
    MULTISELECT_LOGGER,
    SWARM_LOGGER,
    TCP_LOGGER,
    Libp2pLogBridge,
    OncePerPeer,
)

IHAVE = "IHAVE rate limit exceeded for peer %s on topic %s, ignoring message"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


@pytest.fixture
def forwarded() -> Iterator[_Collect]:
    """What libp2p's records become on our logger (the daemon's log)."""
    collect = _Collect()
    target = logging.getLogger(FORWARDED_LOGGER)
    bridge = Libp2pLogBridge.attach()
    target.addHandler(collect)
    yield collect
    target.removeHandler(collect)
    bridge.detach()


def test_a_burst_of_ihave_warnings_is_one_line_per_peer(forwarded: _Collect) -> None:
    # As a founder logged while members joined: dozens a second from each joiner.
    source = logging.getLogger(GOSSIPSUB_LOGGER)
    for _ in range(40):
        source.warning(IHAVE, "12D3KooWAlice", "meshd/x")
        source.warning(IHAVE, "12D3KooWBob", "meshd/x")
    source.warning("something else %d", 1)
    source.warning("something else %d", 2)
    lines = [text for _, text in forwarded.lines]
    assert len([t for t in lines if "12D3KooWAlice" in t]) <= 1
    assert len([t for t in lines if "12D3KooWBob" in t]) <= 1
    assert "something else 1" in lines
    assert "something else 2" in lines


def test_the_next_report_counts_what_was_held_back() -> None:
    now = [0.0]
    once = OncePerPeer(("IHAVE rate limit",), interval=60.0, clock=lambda: now[0])

    def passes(peer: str) -> str | None:
        record = logging.LogRecord("x", logging.WARNING, "f", 1, IHAVE, (peer, "t"), None)
        return record.getMessage() if once.filter(record) else None

    assert passes("a") == IHAVE % ("a", "t")
    assert [passes("a") for _ in range(9)] == [None] * 9
    assert passes("b") is not None  # another peer has its own line
    now[0] = 61.0
    assert passes("a") == IHAVE % ("a", "t") + " (9 more since the last report)"
    assert passes("a") is None


def test_the_filter_forgets_peers_past_its_limit() -> None:
    now = [0.0]
    once = OncePerPeer(("IHAVE",), interval=60.0, clock=lambda: now[0], limit=4)
    for peer in range(100):
        record = logging.LogRecord("x", logging.WARNING, "f", 1, IHAVE, (str(peer), "t"), None)
        assert once.filter(record)
    assert len(once._seen) <= 4


def test_a_stream_refused_for_its_protocol_is_no_error_in_our_log(forwarded: _Collect) -> None:
    source = logging.getLogger(HOST_LOGGER)
    source.error(
        "Failed to open stream to peer 12D3KooWJoiner:\n  Error: protocols not supported: "
        "tried ['/meshd/sync/1.0.0'], timeout=10s."
    )
    source.error("Failed to open stream to peer 12D3KooWOther:\n  Error: handshake read failed")
    source.error("Failed to open stream to peer 12D3KooWOther:\n  Error: handshake write failed")
    source.error("Failed to open stream to peer 12D3KooWThird:\n  Error: stream reset by a bug")
    assert [level for level, _ in forwarded.lines] == [logging.ERROR]
    assert "stream reset by a bug" in forwarded.lines[0][1]


def test_failed_dials_and_cut_handshakes_are_no_error_in_our_log(forwarded: _Collect) -> None:
    """A mesh dials addresses that do not answer all the time (a NATed member's private
    address, a member that is down) and sees connections close mid-handshake (a member
    stopping): py-libp2p logs each at ERROR; they are DEBUG, and the rest of those loggers'
    records still come through."""
    tcp = logging.getLogger(TCP_LOGGER)
    tcp.error("Failed to open TCP stream: %s", "all attempts to connect to 192.168.5.2:7100 failed")
    tcp.error("Failed to listen on 0.0.0.0:7100: address in use")
    select = logging.getLogger(MULTISELECT_LOGGER)
    select.error("MultiselectClient handshake: read failed: %s", "fail to read")
    select.error("MultiselectClient handshake: write failed: %s", "fail to write")
    select.error("MultiselectClient: unexpected reply %r", b"x")
    swarm = logging.getLogger(SWARM_LOGGER)
    stopped = RuntimeError("Cannot schedule task after service has stopped")
    swarm.warning("[ADDCONN_FAIL] add_conn failed for peer %s: %r\n%s", "12D3KooWA", stopped, "tb")
    swarm.warning(
        "[ADDCONN_FAIL] add_conn failed for peer %s: %r\n%s", "12D3KooWB", KeyError(1), "tb"
    )
    assert [(level, text.split(":")[0]) for level, text in forwarded.lines] == [
        (logging.ERROR, "Failed to listen on 0.0.0.0"),
        (logging.ERROR, "MultiselectClient"),
        (logging.WARNING, "[ADDCONN_FAIL] add_conn failed for peer 12D3KooWB"),
    ]
