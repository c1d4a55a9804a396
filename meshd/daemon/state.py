"""The daemon's membership owner: the CRDT, its store, and who may talk to us.

Everything here is synchronous. trio runs one task at a time and none of these methods
awaits, so each call sees and leaves a whole state: the gossip validator (which libp2p calls
synchronously), the sync and enrollment handlers and the timers all go through this one
object and never interleave inside it. Whatever changes the record set is committed to the
store before the call returns, so a record is stored before we forward it; its events reach
the feed once the disk-sync service (meshd.daemon.disksync) has it on disk, so nothing acts
on a record before it is durable.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

from meshd.daemon.budgets import (
    FORWARDER_BURST,
    FORWARDER_RATE,
    MAX_STRANGER_SESSIONS,
    MAX_SYNC_PER_PEER,
    MAX_SYNC_SESSIONS,
    MAX_TRACKED_PEERS,
    NON_MEMBERS,
    RATE_BURST,
    RATE_PER_SECOND,
    SYNC_MEMBER_BURST,
    SYNC_MEMBER_RATE,
    SYNC_STARTS_BURST,
    SYNC_STARTS_RATE,
    SYNC_STRANGER_BURST,
    SYNC_STRANGER_RATE,
    SYNC_STRANGERS_BURST,
    SYNC_STRANGERS_RATE,
    RateLimiter,
    SyncSessions,
)
from meshd.daemon.disksync import DiskSync
from meshd.daemon.feed import MembershipFeed, Snapshot
from meshd.errors import DecodeError, VerifyError
from meshd.gossip import enroll
from meshd.gossip.sync import net_change
from meshd.membership import (
    Batch,
    Change,
    Event,
    Member,
    Membership,
    MemberState,
    Outcome,
)
from meshd.membership.pending import LOCAL
from meshd.metrics.snapshot import Traffic
from meshd.node.statedir import NodeDir
from meshd.records import Admission, Announcement, Enrollment, Record, record_id

log = logging.getLogger(__name__)

__all__ = [  # the budgets live in meshd/daemon/budgets.py; these names stay importable here
    "FORWARDER_BURST",
    "FORWARDER_RATE",
    "MAX_STRANGER_SESSIONS",
    "MAX_SYNC_PER_PEER",
    "MAX_SYNC_SESSIONS",
    "NON_MEMBERS",
    "RATE_BURST",
    "RATE_PER_SECOND",
    "SYNC_MEMBER_BURST",
    "SYNC_MEMBER_RATE",
    "SYNC_STARTS_BURST",
    "SYNC_STARTS_RATE",
    "SYNC_STRANGERS_BURST",
    "SYNC_STRANGERS_RATE",
    "SYNC_STRANGER_BURST",
    "SYNC_STRANGER_RATE",
    "NodeState",
    "RateLimiter",
    "SyncSessions",
]


def _no_key(peer: str) -> bytes | None:
    return None


def wall_clock() -> int:
    return int(time.time())


class NodeState:
    """One node's membership, persisted, with the per-peer accounting of what it received."""

    def __init__(
        self,
        node: NodeDir,
        *,
        announce_ttl: int | None,
        clock: Callable[[], int] = wall_clock,
    ) -> None:
        self.node = node
        self.clock = clock
        self.membership = Membership(node.anchor, announce_ttl=announce_ttl)
        report = node.store.load_into(self.membership, clock())
        log.info(
            "loaded %d records (%d refused, %d pending) from %s",
            report.loaded,
            report.rejected,
            report.pending,
            node.paths.db,
        )
        self.membership.tick(clock())
        self.rejects: Counter[str] = Counter()  # by peer id
        self.reject_reasons: Counter[str] = Counter()
        self.accepted = 0
        self._limiter = RateLimiter()
        self._forwarders = RateLimiter(FORWARDER_RATE, FORWARDER_BURST)
        self._sync_members = RateLimiter(SYNC_MEMBER_RATE, SYNC_MEMBER_BURST)
        self._sync_strangers = RateLimiter(SYNC_STRANGER_RATE, SYNC_STRANGER_BURST)
        self._sync_all_strangers = RateLimiter(SYNC_STRANGERS_RATE, SYNC_STRANGERS_BURST)
        # Our own records being published: the validator lets them pass (meshd.daemon.flooding).
        self.outgoing: set[bytes] = set()
        self.traffic = Traffic()  # gossip and sync counters, for the metrics
        self.feed = MembershipFeed(self._snapshot)
        self.disk = DiskSync(node.store, self.feed.changed)  # started by meshd.daemon.launch
        # A peer id's member key; the daemon installs libp2p's (this module imports no libp2p).
        self.peer_key: Callable[[str], bytes | None] = _no_key

    @property
    def key(self) -> bytes:
        return self.node.node_key.public

    def _snapshot(self, version: int, revocations: int) -> Snapshot:
        at = self.clock()
        members = tuple(self.membership.members(at))
        grants = {
            m.node_key: self.membership.grants(m.node_key)
            for m in members
            if m.state is MemberState.ADMITTED
        }
        return Snapshot(version, at, members, grants, revocations)

    def _persist(self, outcomes: Sequence[Outcome]) -> None:
        change = net_change(self.membership, outcomes)
        if change is not None:
            self._commit([change], change.events)

    def _commit(self, changes: Sequence[Change], events: Sequence[Event]) -> None:
        """Commit ``changes`` now; hand ``events`` to the feed once they are on disk (at once
        when the disk-sync service does not run: then the commit itself waits for the disk)."""
        if not self.disk.running:
            if changes:
                self.node.store.apply(changes)
            self.feed.changed(events)
            return
        needs_disk = bool(changes) and self.node.store.apply(changes, fsync=False)
        if needs_disk or (events and not self.disk.idle):
            self.disk.after_sync(events)  # after what waits already, in order
        else:
            self.feed.changed(events)

    # --- what arrives ------------------------------------------------------------------------

    def validate(self, data: bytes, author: str, forwarder: str) -> bool:
        """The gossip validator: accept (and forward) only new, valid records, once stored.

        Rate limits apply per author and per forwarder (the neighbour that delivered the
        message, which Noise authenticates and the sender cannot choose per message); a
        record that has to wait counts against the forwarder's share of the pending pool.
        """
        if data in self.outgoing:
            return True  # our own publish, already merged and stored
        now = time.monotonic()
        if not self._forwarders.allow(forwarder, now):
            self._reject(forwarder, "rate-limited")
            return False
        if not self._limiter.allow(author, now):
            self._reject(forwarder, "rate-limited")
            return False
        try:
            outcome = self.membership.ingest_untrusted(
                data, self.clock(), source=self.source_of(forwarder)
            )
        except (DecodeError, VerifyError) as exc:
            self._reject(forwarder, exc.reason if isinstance(exc, VerifyError) else "decode")
            return False
        if outcome.stored or outcome.dropped:
            self._persist([outcome])
        if not outcome.new:
            return False  # known already, or waiting for its credential: not forwarded
        self.accepted += 1
        return True

    def _reject(self, peer: str, reason: str) -> None:
        if len(self.rejects) >= MAX_TRACKED_PEERS:
            self.rejects.clear()
        self.rejects[peer] += 1
        self.reject_reasons[reason] += 1

    def source_of(self, peer: str) -> str:
        """The pending pool's source key for what ``peer`` delivers: its peer id if it is a
        member, else the one key all non-members share."""
        key = self.peer_key(peer)
        return peer if key is not None and self.is_member(key) else NON_MEMBERS

    def admit_sync_records(self, peer: str, records: Sequence[Record], now: float) -> list[Record]:
        """The records of a sync message from ``peer`` that its budget lets us check.

        A member may push SYNC_MEMBER_RATE records a second (bursts of SYNC_MEMBER_BURST);
        a peer that is not a member SYNC_STRANGER_RATE (SYNC_STRANGER_BURST), and all of them
        together SYNC_STRANGERS_RATE (SYNC_STRANGERS_BURST): that bounds the signatures a
        stranger makes us verify. Credentials and revocations go before announcements, so a
        member we do not know yet (across a healed partition) soon shows its own admission
        and gets a member's budget. What is cut is counted as ``rate-limited`` and comes
        back in a later sync.
        """
        if not records:
            return []
        ordered = sorted(records, key=lambda r: type(r) is Announcement)
        if self.source_of(peer) == peer:
            granted = self._sync_members.take(peer, now, len(ordered))
        else:
            granted = self._sync_strangers.take(peer, now, len(ordered))
            shared = self._sync_all_strangers.take(NON_MEMBERS, now, granted)
            self._sync_strangers.give_back(peer, granted - shared)
            granted = shared
        cut = len(ordered) - granted
        if cut:
            self.rejects[peer] += cut
            self.reject_reasons["rate-limited"] += cut
        return ordered[:granted]

    def merge_batch(
        self,
        records: Sequence[Record],
        *,
        announcements_checked: bool = False,
        rejected: Sequence[str] = (),
        source: str = LOCAL,
    ) -> Batch:
        """Merge decoded records that arrived together, and store them in one transaction.
        ``announcements_checked``: see :meth:`Membership.merge_batch`; ``source``: the pending
        pool's key for the peer that delivered them (:meth:`source_of`)."""
        batch = self.membership.merge_batch(
            records,
            self.clock(),
            announcements_checked=announcements_checked,
            rejected=rejected,
            source=source,
        )
        self._commit([batch] if batch.stored or batch.dropped else [], batch.events)
        for reason in batch.rejected:
            self.reject_reasons[reason] += 1
        return batch

    def add_local(self, record: Record) -> Outcome:
        """Merge a record made or handed in here (ours, or from the CLI) and store it."""
        outcome = self.membership.ingest(record, self.clock())
        self._persist([outcome])
        return outcome

    def sponsor(self, enrollment: Enrollment, remote_key: bytes) -> Admission:
        """Admit an enrolling peer on our clock; the admission is stored when this returns."""
        admission = enroll.sponsor(
            self.membership, self.node.node_key, enrollment, remote_key, self.clock()
        )
        self.add_local(admission)
        return admission

    def tick(self) -> None:
        self.feed.changed(self.membership.tick(self.clock()))

    # --- who is who ----------------------------------------------------------------------

    def member(self, key: bytes) -> Member | None:
        return self.membership.member(key, self.clock())

    def is_member(self, key: bytes) -> bool:
        """Admitted, or expired but not excluded: someone we sync with and keep connected."""
        member = self.member(key)
        return member is not None and member.state is not MemberState.REVOKED

    def is_revoked(self, key: bytes) -> bool:
        member = self.member(key)
        return member is not None and member.state is MemberState.REVOKED

    def members(self) -> list[Member]:
        return self.membership.members(self.clock())


def record_ref(raw: bytes) -> str:
    return record_id(raw).hex()
