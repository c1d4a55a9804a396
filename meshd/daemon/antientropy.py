"""The anti-entropy service: our own set reconciliation (``/meshd/sync/1.0.0``) with peers.

When and with whom is :class:`~meshd.daemon.sync_policy.SyncPolicy`'s (pure); this shell runs
the conversations (:func:`meshd.daemon.streams.converse`), as initiator and as server, hands
what they bring to the membership owner, and bounds the sessions both ways
(:class:`~meshd.daemon.state.SyncSessions`: a session we start with a peer that is no member
takes one of the non-members' few, as one it opens to us does).

A peer is synced with as soon as it connects, and a member that is enrolling connects before
its daemon serves sync: its host answers that it does not speak the protocol. That is no
failure: the sync is tried again while the peer stays connected, after :data:`NOT_READY_RETRY`
seconds, doubling, :data:`NOT_READY_TRIES` times at most, logged at DEBUG only.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

import trio

from meshd.daemon.ingest import check_sync_records
from meshd.daemon.state import NodeState, SyncSessions
from meshd.daemon.streams import SyncResult, converse
from meshd.daemon.sync_policy import SyncPolicy
from meshd.daemon.transport import Transport, key_of
from meshd.errors import MeshdError
from meshd.gossip import sync as sync_protocol
from meshd.gossip.bug_log import QuietLog
from meshd.gossip.enroll import GracePolicy
from meshd.gossip.host import ProtocolNotSupported
from meshd.gossip.streams import FramedStream

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

REQUESTS = 256  # sync requests waiting
NOT_READY_RETRY = 1.0  # seconds before syncing again with a peer that serves no sync yet
NOT_READY_MAX = 256  # peers waiting to be synced again at once (a task each): beyond, none
NOT_READY_POLL = 0.5  # how often a waiting retry looks whether its peer is still connected
NOT_READY_TRIES = 5  # retries, the wait doubling each time (1 + 2 + 4 + 8 + 16 s)


class AntiEntropy:
    def __init__(
        self,
        host: Transport,
        state: NodeState,
        policy: SyncPolicy,
        grace: GracePolicy,
        sessions: SyncSessions,
    ) -> None:
        self.host = host
        self.state = state
        self.policy = policy
        self.grace = grace
        self.sessions = sessions
        self.syncs = 0
        self._send, self._receive = trio.open_memory_channel[str](REQUESTS)
        self._not_ready: dict[str, int] = {}  # peer -> retries scheduled since it said "na"
        self._quiet = QuietLog(log, clock=time.monotonic)  # refusals: counted, said seldom
        self._nursery: trio.Nursery | None = None

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.set_stream_handler(sync_protocol.PROTOCOL_ID, self.serve)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._periodic)
            task_status.started()
            async for peer in self._receive:
                if self.policy.start(peer):
                    nursery.start_soon(self._sync_with, peer)

    def request(self, peer: str) -> None:
        """Sync with ``peer`` soon (dropped when many requests wait already)."""
        with contextlib.suppress(trio.WouldBlock):
            self._send.send_nowait(peer)

    async def _periodic(self) -> None:
        while True:
            members = [
                p
                for p in self.host.connected_peers()
                if (k := key_of(p)) is not None and self.state.is_member(k)
            ]
            peer = self.policy.periodic(trio.current_time(), members)
            if peer is not None:
                self.request(peer)
            await trio.sleep(self.policy.next_due(trio.current_time()))

    async def _sync_with(self, peer: str) -> None:
        try:
            rounds = 0
            while True:
                result = await self.sync_once(peer)
                rounds += 1
                if not self.policy.again(rounds, None if result is None else result.new):
                    break
        finally:
            self.policy.done(peer)

    async def sync_once(self, peer: str) -> SyncResult | None:
        """One sync conversation with ``peer``, as initiator; None if it failed, or if the
        sessions' budget has no room for it (a peer that is no member shares the
        non-members' few with those that open sessions to us)."""
        key = key_of(peer)
        member = key is not None and self.state.is_member(key)  # a revoked one is told why
        why = self.sessions.open(peer, member=member, now=time.monotonic(), ours=True)
        if why is not None:
            log.debug("no sync with %s now: %s", peer, why)
            return None
        try:
            return await self._sync_once(peer)
        finally:
            self.sessions.close(peer, member=member)

    async def _sync_once(self, peer: str) -> SyncResult | None:
        try:
            stream = await self.host.open_stream(peer, sync_protocol.PROTOCOL_ID)
        except ProtocolNotSupported as exc:
            self._retry_later(peer, exc)
            return None
        except MeshdError as exc:
            log.debug("sync with %s: %s", peer, exc)
            return None
        self._not_ready.pop(peer, None)
        session = sync_protocol.SyncSession(self.state.membership)
        try:
            result = await converse(stream, session, partial(self._ingest, peer), initiator=True)
        except MeshdError as exc:
            log.info("sync with %s failed: %s", peer, exc)
            self.state.traffic.synced(None, initiator=True)
            await stream.reset()
            return None
        finally:
            self.sessions.dropped += session.dropped
        await stream.close()
        self.syncs += 1
        self.state.traffic.synced(result, initiator=True)
        if result.records_received or result.records_sent:
            log.info(
                "synced with %s: %d records in (%d new), %d out, %d bytes",
                peer,
                result.records_received,
                result.new,
                result.records_sent,
                result.bytes_sent + result.bytes_received,
            )
        return result

    def _retry_later(self, peer: str, why: ProtocolNotSupported) -> None:
        """``peer`` does not serve sync (yet): sync again soon while it stays connected."""
        tries = self._not_ready.get(peer, 0)
        crowded = peer not in self._not_ready and len(self._not_ready) >= NOT_READY_MAX
        if tries >= NOT_READY_TRIES or self._nursery is None or crowded:
            self._not_ready.pop(peer, None)
            log.info("sync with %s: it serves no sync (%d retries)", peer, tries)
            return
        self._not_ready[peer] = tries + 1
        delay = NOT_READY_RETRY * 2**tries
        log.debug("sync with %s: %s; again in %g s", peer, why, delay)
        self._nursery.start_soon(self._again, peer, delay)

    async def _again(self, peer: str, delay: float) -> None:
        # The wait ends as soon as the peer is gone: a peer opening and closing connections
        # must not leave a sleeping task behind each one (every connection is synced with).
        deadline = trio.current_time() + delay
        while (left := deadline - trio.current_time()) > 0:
            await trio.sleep(min(NOT_READY_POLL, left))
            if peer not in self.host.connected_peers():
                self._not_ready.pop(peer, None)  # a new connection brings its own sync
                return
        if peer in self._not_ready:  # else a sync with it has worked since
            self.request(peer)

    async def _ingest(self, peer: str, raws: Sequence[bytes]) -> int:
        state = self.state
        checked = await check_sync_records(
            raws,
            admit=lambda records: state.gate.admit_sync_records(peer, records, time.monotonic()),
        )
        batch = state.merge_batch(
            checked.records,
            announcements_checked=checked.announcements_checked,
            rejected=checked.rejected,
            source=state.source_of(peer),
        )
        return batch.new

    async def serve(self, stream: FramedStream) -> None:
        """The other side of a sync a peer opened."""
        peer = stream.remote_peer_id
        key = key_of(peer)
        if key is None or self.state.is_revoked(key):
            self._quiet.log(logging.INFO, "refused sync from revoked %s", peer)
            await stream.reset()
            return
        member = self.state.is_member(key)
        now = time.monotonic()
        if not member and self.grace.expired(peer, now):
            why: str | None = "grace-over"
        else:
            why = self.sessions.open(peer, member=member, now=now)
        if why is not None:
            self._quiet.log(logging.INFO, "refused sync from %s: %s", peer, why)
            await stream.reset()
            return
        session = sync_protocol.SyncSession(self.state.membership)
        result = None
        try:
            result = await converse(stream, session, partial(self._ingest, peer), initiator=False)
        finally:
            self.state.traffic.synced(result, initiator=False)
            self.sessions.close(peer, member=member)
            self.sessions.dropped += session.dropped
