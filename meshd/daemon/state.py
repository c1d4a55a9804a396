"""The daemon's membership owner: the CRDT, its store, and who may talk to us.

Everything here is synchronous. trio runs one task at a time and none of these methods
awaits, so each call sees and leaves a whole state: the gossip validator (which libp2p calls
synchronously), the sync and enrollment handlers and the timers all go through this one
object and never interleave inside it. Whatever changes the record set is written to the
store before the call returns, so a record is durable before we forward or act on it.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

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
from meshd.daemon.feed import MembershipFeed, Snapshot
from meshd.daemon.lifecycle import revocation_text
from meshd.errors import DecodeError, VerifyError
from meshd.gossip import enroll
from meshd.gossip.sync import net_change
from meshd.membership import (
    Batch,
    Event,
    Member,
    Membership,
    MemberState,
    Outcome,
    decode_batch_untrusted,
)
from meshd.membership.pending import LOCAL
from meshd.metrics.snapshot import Traffic
from meshd.node.statedir import NodeDir
from meshd.records import Admission, Announcement, Enrollment, Record, record_id
from meshd.trust.keys import fingerprint
from meshd.wg.addresses import link_local_from_wg_key
from meshd.wg.model import PeerStatus

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
        self._outgoing: set[bytes] = set()
        self.traffic = Traffic()  # gossip and sync counters, for the metrics
        self.feed = MembershipFeed(self._snapshot)
        # A peer id's member key; the daemon installs libp2p's (this module imports no libp2p).
        self.peer_key: Callable[[str], bytes | None] = _no_key

    @property
    def key(self) -> bytes:
        return self.node.node_key.public

    def _emit(self, events: Sequence[Event]) -> None:
        self.feed.changed(events)

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
            self.node.store.apply([change])
            self._emit(change.events)

    # --- what arrives ------------------------------------------------------------------------

    def validate(self, data: bytes, author: str, forwarder: str) -> bool:
        """The gossip validator: accept (and forward) only new, valid records, once stored.

        Rate limits apply per author and per forwarder (the neighbour that delivered the
        message, which Noise authenticates and the sender cannot choose per message); a
        record that has to wait counts against the forwarder's share of the pending pool.
        """
        if data in self._outgoing:
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

    def ingest_batch(self, raws: Iterable[bytes], *, source: str = LOCAL) -> Batch:
        """Merge what a sync brought, and store it in one transaction."""
        records, rejected = decode_batch_untrusted(raws)
        return self.merge_batch(records, rejected=rejected, source=source)

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
        if batch.stored or batch.dropped:
            self.node.store.apply([batch])
        self._emit(batch.events)
        for reason in batch.rejected:
            self.reject_reasons[reason] += 1
        return batch

    def add_local(self, record: Record) -> Outcome:
        """Merge a record made or handed in here (ours, or from the CLI) and store it."""
        outcome = self.membership.ingest(record, self.clock())
        self._persist([outcome])
        return outcome

    def add_local_untrusted(self, raw: bytes) -> Outcome:
        outcome = self.membership.ingest_untrusted(raw, self.clock())
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
        self._emit(self.membership.tick(self.clock()))

    def mark_outgoing(self, raw: bytes) -> None:
        self._outgoing.add(raw)

    def unmark_outgoing(self, raw: bytes) -> None:
        self._outgoing.discard(raw)

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

    # --- views for the control socket ---------------------------------------------------------

    def peers_view(
        self, connected: set[bytes], wireguard: Mapping[bytes, PeerStatus] | None = None
    ) -> list[dict[str, Any]]:
        """One row per member; ``wireguard`` (the device's peers by key) fills the
        ``wg_peer``, ``wg_endpoint``, ``last_handshake``, ``rx_bytes`` and ``tx_bytes``
        columns."""
        rows = []
        device = wireguard or {}
        for m in self.members():
            ann = m.announcement
            peer = device.get(m.wg_key) if m.node_key != self.key else None
            rows.append(
                {
                    "name": m.name,
                    "node_id": m.node_id,
                    "node_key": base64.b64encode(m.node_key).decode("ascii"),
                    "state": _state_label(m, self.key),
                    "reason": m.reason,
                    "revocation_reason": revocation_text(self.membership, m),
                    "overlay_ip": str(m.overlay),
                    "link_local": str(link_local_from_wg_key(m.wg_key)),
                    "wg_public_key": base64.b64encode(m.wg_key).decode("ascii"),
                    "endpoints": list(ann.endpoints) if ann else [],
                    "addrs": list(ann.addrs) if ann else [],
                    "last_seen": m.last_seen,
                    "admitted_at": m.admitted_at,
                    "not_after": m.not_after,
                    "credentials_end": self.membership.credentials_end(m.node_key),
                    "connected": m.node_key in connected,
                    "wg_peer": peer is not None,
                    "wg_endpoint": peer.config.endpoint if peer is not None else None,
                    "last_handshake": peer.last_handshake if peer is not None else None,
                    "rx_bytes": peer.rx_bytes if peer is not None else None,
                    "tx_bytes": peer.tx_bytes if peer is not None else None,
                }
            )
        return rows

    def status_view(self) -> dict[str, Any]:
        members = self.members()
        states = Counter(m.state for m in members)
        anchor = self.node.anchor
        return {
            "node_id": fingerprint(self.key),
            "name": self.node.name,
            "network": anchor.network.name,
            "network_id": fingerprint(anchor.root_key),
            "members": states[MemberState.ADMITTED],
            "expired": states[MemberState.EXPIRED],
            "revoked": states[MemberState.REVOKED],
            "records": len(self.membership),
            "pending": self.membership.pending_count,
            "pending_evicted": self.membership.pending_evicted,
            "digest": self.membership.digest().hex(),
            "accepted": self.accepted,
            "rejected": dict(self.reject_reasons),
        }


def _state_label(member: Member, own_key: bytes) -> str:
    """``self`` for this node while it stands; its true state once it does not."""
    if member.node_key == own_key and member.state is MemberState.ADMITTED:
        return "self"
    return member.state.value


def record_ref(raw: bytes) -> str:
    return record_id(raw).hex()
