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
from meshd.daemon.clock_notice import AheadOfMembers, ClockNotices
from meshd.daemon.disksync import DiskSync
from meshd.daemon.feed import MembershipFeed, Snapshot
from meshd.daemon.gate import PeerGate
from meshd.daemon.standing import OwnStanding
from meshd.errors import DecodeError, StoreError, VerifyError
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
from meshd.membership.grants import GrantTable
from meshd.membership.pending import LOCAL
from meshd.metrics.snapshot import Traffic
from meshd.node.statedir import NodeDir
from meshd.node.store import NetEffect
from meshd.records import Admission, Announcement, Enrollment, Record, record_id

log = logging.getLogger(__name__)

UNWRITTEN_RETRY = 10.0
"""Seconds between two tries to write what the store could not take (a full disk)."""

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
        judged: Callable[[Membership, int], object] | None = None,
    ) -> None:
        """Load the store and judge it; ``judged`` is called with the membership and the
        moment, once judged, before the first snapshot of it is made (a start's early
        WireGuard keys: meshd.daemon.early_keys)."""
        self.node = node
        self.clock = clock
        self.membership = Membership(node.anchor, announce_ttl=announce_ttl)
        report = node.store.load_into(self.membership, clock())
        log.info(
            "loaded %d records (%d refused, %d pending, %d without this node's seal verified"
            " in full) from %s",
            report.loaded,
            report.rejected,
            report.pending,
            report.checked,
            node.paths.db,
        )
        now = clock()
        self.membership.tick(now)
        if judged is not None:
            judged(self.membership, now)
        # Who may make us do what (rate limits of gossip and sync), and what was refused.
        self.gate = PeerGate(lambda peer: self.source_of(peer) == peer)
        self.rejects: Counter[str] = self.gate.rejects  # by peer id
        self.reject_reasons: Counter[str] = self.gate.reject_reasons
        self.clock_notices = ClockNotices()  # records refused as dated ahead of our clock
        self.clock_ahead = AheadOfMembers(self.membership.clock_skew)  # ours ahead of theirs
        self.accepted = 0
        # Our own records being published: the validator lets them pass (meshd.daemon.flooding).
        self.outgoing: set[bytes] = set()
        self.traffic = Traffic()  # gossip and sync counters, for the metrics
        self.feed = MembershipFeed(self._snapshot)
        self.disk = DiskSync(node.store, self.feed.changed)  # started by meshd.daemon.launch
        # What the store could not take (a full disk): kept, written first at the next try.
        self._unwritten: NetEffect | None = None
        self._unwritten_at = 0
        self._unwritten_said = ""  # the failure last logged: one ERROR line for each
        # Whether our own standing ended (revoked, left, handed over): one watcher, run with
        # the lifecycle services (meshd.daemon.renewer); the daemon's stop waits for it.
        self.standing = OwnStanding(self)
        # A peer id's member key; the daemon installs libp2p's (this module imports no libp2p).
        self.peer_key: Callable[[str], bytes | None] = _no_key

    @property
    def key(self) -> bytes:
        return self.node.node_key.public

    def _snapshot(self, version: int, revocations: int) -> Snapshot:
        at = self.clock()
        members = tuple(self.membership.members(at))
        # The admitted members' grants, each /128 alone where it is all they are granted.
        grants = GrantTable(
            (m.node_key, self.membership.grants(m.node_key))
            for m in members
            if m.state is MemberState.ADMITTED
        )
        return Snapshot(version, at, members, grants, revocations)

    def _persist(self, outcomes: Sequence[Outcome], *, received: bool = False) -> None:
        change = net_change(self.membership, outcomes)
        if change is not None:
            self._commit([change], change.events, received=received)

    def _commit(
        self, changes: Sequence[Change], events: Sequence[Event], *, received: bool = False
    ) -> None:
        """Commit ``changes`` now; hand ``events`` to the feed once they are on disk (at once
        when the disk-sync service does not run: then the commit itself waits for the disk).

        A store that cannot be written (its disk full, say) holds back neither the feed nor
        the record: the membership in memory is what the daemon acts on (a revocation takes
        its peer out at once) and what it forwards; what was not written is kept (its net
        effect, bounded by the records it names) and written first, before anything later,
        at the next commit or :meth:`write_unwritten`. One ERROR line until it is written.
        A record made here (``received`` False: ours, or a command's) fails with the
        StoreError as well, so that whoever made it hears of it."""
        if not self.disk.running:
            if changes:
                self.node.store.apply(changes)
            self.feed.changed(events)
            return
        effect = self._unwritten if self._unwritten is not None else NetEffect()
        for change in changes:
            effect.add(change)
        try:
            needs_disk = self.node.store.write(effect, fsync=False)
        except StoreError as exc:
            self._not_written(effect, exc)
            self.feed.changed(events)
            if not received:
                raise
            return
        self._written_again(effect)
        if needs_disk or (events and not self.disk.idle):
            self.disk.after_sync(events)  # after what waits already, in order
        else:
            self.feed.changed(events)

    def _not_written(self, effect: NetEffect, exc: StoreError) -> None:
        self._unwritten, self._unwritten_at = effect, self.clock()
        if str(exc) != self._unwritten_said:
            log.error(
                "%s; the records it could not take (%d rows so far) are kept in memory, acted "
                "on and forwarded, and written once it can be: %s",
                exc,
                len(effect),
                exc.hint or f"check the disk of {self.node.paths.root}",
            )
            self._unwritten_said = str(exc)

    def _written_again(self, effect: NetEffect) -> None:
        if self._unwritten is None:
            return
        log.info("the store is written again: the %d rows kept meanwhile are stored", len(effect))
        self._unwritten, self._unwritten_said = None, ""

    @property
    def unwritten_rows(self) -> int:
        """The rows the store could not take, kept in memory until it can (0: none)."""
        return 0 if self._unwritten is None else len(self._unwritten)

    def write_unwritten(self) -> None:
        """Write what the store could not take earlier, if anything, at most every
        :data:`UNWRITTEN_RETRY` s (the disk full: each try costs a failed transaction)."""
        effect = self._unwritten
        if effect is None or 0 <= self.clock() - self._unwritten_at < UNWRITTEN_RETRY:
            return  # (a clock set back tries at once)
        try:
            needs_disk = self.node.store.write(effect, fsync=not self.disk.running)
        except StoreError as exc:
            self._not_written(effect, exc)
            return
        self._written_again(effect)
        if needs_disk and self.disk.running:
            self.disk.after_sync([])

    # --- what arrives ------------------------------------------------------------------------

    def validate(self, data: bytes, author: str, forwarder: str) -> bool:
        """The gossip validator: accept (and forward) only new, valid records, once stored.

        Rate limits apply per author and per forwarder (the neighbour that delivered the
        message, which Noise authenticates and the sender cannot choose per message); a
        record that has to wait counts against the forwarder's share of the pending pool.
        """
        if data in self.outgoing:
            return True  # our own publish, already merged and stored
        if not self.gate.allow_gossip(author, forwarder, time.monotonic()):
            return False
        try:
            outcome = self.membership.ingest_untrusted(
                data, self.clock(), source=self.source_of(forwarder)
            )
        except (DecodeError, VerifyError) as exc:
            reason = exc.reason if isinstance(exc, VerifyError) else "decode"
            self.gate.reject(forwarder, reason)
            if reason == "not-yet-valid":
                self._dated_ahead(lambda: self.who(author), str(exc))
            return False
        if outcome.stored or outcome.dropped:
            self._persist([outcome], received=True)
        if not outcome.new:
            return False  # known already, or waiting for its credential: not forwarded
        self.accepted += 1
        record = outcome.record
        if type(record) is Announcement:  # a fresh one, flooded as it was made
            lag = self.clock() - record.issued_at
            line = self.clock_ahead.heard(record.node_key, lag, time.monotonic())
            if line is not None:
                log.warning("%s", line)
        return True

    def source_of(self, peer: str) -> str:
        """The pending pool's source key for what ``peer`` delivers: its peer id if it is a
        member, else the one key all non-members share."""
        key = self.peer_key(peer)
        return peer if key is not None and self.is_member(key) else NON_MEMBERS

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
        self._commit([batch] if batch.stored or batch.dropped else [], batch.events, received=True)
        for reason in batch.rejected:
            self.reject_reasons[reason] += 1
        ahead = batch.rejected.count("not-yet-valid")
        if ahead and source != LOCAL:
            why = (
                f"dated more than {self.membership.clock_skew} s ahead of this node's clock: "
                "their makers' clocks or this node's is wrong"
            )

            def whose() -> str:
                by = self.who(source) if source != NON_MEMBERS else "a non-member"
                return "a sync with " + by

            self._dated_ahead(whose, why, ahead)
        return batch

    def who(self, peer: str) -> str:
        """A peer as the log names it: its member's name (and peer id), else its peer id."""
        key = self.peer_key(peer)
        member = self.member(key) if key is not None else None
        return f"{member.name} ({peer})" if member is not None and member.name else peer

    def _dated_ahead(self, whose: Callable[[], str], why: str, count: int = 1) -> None:
        line = self.clock_notices.refused(whose, why, time.monotonic(), count)
        if line is not None:
            log.warning("%s", line)

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
        self.write_unwritten()
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
