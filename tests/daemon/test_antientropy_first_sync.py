"""The first sync with a member that is enrolling: its host answers before its daemon serves
sync. That is retried soon, while it stays connected, and not logged as a failure."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest
import trio
import trio.testing

from meshd.daemon.antientropy import NOT_READY_RETRY, NOT_READY_TRIES, AntiEntropy
from meshd.daemon.state import NodeState, SyncSessions
from meshd.daemon.sync_policy import SyncPolicy
from meshd.gossip.enroll import GracePolicy
from meshd.gossip.host import ProtocolNotSupported
from meshd.gossip.streams import FramedStream, TransportError

JOINER = "12D3KooWJoiner"


class _Host:
    """Connected to JOINER, whose sync handler is registered ``ready_after`` opens in."""

    def __init__(self, ready_after: int) -> None:
        self.ready_after = ready_after
        self.opens: list[float] = []
        self.connected = {JOINER}

    def set_stream_handler(self, protocol: str, handler: Any) -> None:
        pass

    def connected_peers(self) -> list[str]:
        return sorted(self.connected)

    async def open_stream(self, peer: str, protocol: str) -> FramedStream:
        self.opens.append(trio.current_time())
        if len(self.opens) <= self.ready_after:
            raise ProtocolNotSupported(f"{peer} does not serve {protocol} (yet)")
        # The sync itself is not what this tests: stop here, as a dead connection would.
        raise TransportError("no conversation in this test")


class _State:
    def is_member(self, key: bytes) -> bool:
        return False


def _run(host: _Host, seconds: float) -> None:
    async def main() -> None:
        service = AntiEntropy(
            cast(Any, host),
            cast(NodeState, _State()),
            SyncPolicy(3600.0),
            GracePolicy(connect=60.0, enroll=60.0),
            SyncSessions(),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            service.request(JOINER)  # as the connections service does when it connects
            await trio.sleep(seconds)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_peer_that_serves_no_sync_yet_is_synced_with_again_soon(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = _Host(ready_after=2)
    with caplog.at_level(logging.DEBUG, logger="meshd.daemon.antientropy"):
        _run(host, 60.0)
    assert len(host.opens) == 3  # two refusals, then the sync is opened
    assert host.opens[1] - host.opens[0] == pytest.approx(NOT_READY_RETRY)
    assert host.opens[2] - host.opens[1] == pytest.approx(2 * NOT_READY_RETRY)
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


def test_retries_end_with_the_connection_or_after_a_few() -> None:
    gone = _Host(ready_after=100)
    never = _Host(ready_after=100)
    _run(never, 600.0)
    assert len(never.opens) == 1 + NOT_READY_TRIES
    gone.connected.clear()  # a retry finds the peer gone: the next connection syncs anew
    _run(gone, 600.0)
    assert len(gone.opens) == 1
