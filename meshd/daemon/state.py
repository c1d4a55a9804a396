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
from dataclasses import dataclass, field
from typing import Any, Final

from meshd.daemon.lifecycle import revocation_text
from meshd.errors import DecodeError, VerifyError
from meshd.gossip import enroll
from meshd.gossip.sync import net_change
from meshd.keys import fingerprint
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
from meshd.records import Admission, Announcement, Enrollment, Kind, Record, record_id
from meshd.statedir import NodeDir
from meshd.wg.addresses import link_local_from_wg_key
from meshd.wg.model import PeerStatus

log = logging.getLogger(__name__)

EventSink = Callable[[Sequence[Event]], None]
"""Receives membership events (Admitted, Updated, Expired, Revoked) as they happen."""

RATE_PER_SECOND: Final = 20.0  # gossip, per author
RATE_BURST: Final = 100.0
FORWARDER_RATE: Final = 100.0  # gossip, per neighbour that delivered the message
FORWARDER_BURST: Final = 500.0
SYNC_MEMBER_RATE: Final = 1000.0  # records a member's sync sessions may push us, per second
SYNC_MEMBER_BURST: Final = 20000.0
SYNC_STRANGER_RATE: Final = 10.0  # the same for one peer that is not a member
SYNC_STRANGER_BURST: Final = 200.0
SYNC_STRANGERS_RATE: Final = 50.0  # and for all peers that are not members together
SYNC_STRANGERS_BURST: Final = 1000.0
MAX_TRACKED_PEERS: Final = 4096
NON_MEMBERS: Final = "non-members"
"""The one pending-pool source and sync bucket shared by every peer that is not a member: a
non-member chooses its peer id freely, so its ids must not multiply its budget."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class RateLimiter:
    """A token bucket per peer: ``rate`` tokens per second, bursts of ``burst``.

    At most MAX_TRACKED_PEERS buckets are kept; when a new peer comes and the table is full,
    the buckets that have refilled (the same as absent) go, else the oldest half.
    """

    rate: float = RATE_PER_SECOND
    burst: float = RATE_BURST
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def allow(self, peer: str, now: float) -> bool:
        return self.take(peer, now, 1) == 1

    def take(self, peer: str, now: float, wanted: int) -> int:
        """Take up to ``wanted`` tokens; return how many were granted."""
        bucket = self._bucket(peer, now)
        granted = min(wanted, int(bucket.tokens))
        bucket.tokens -= granted
        return granted

    def give_back(self, peer: str, count: int) -> None:
        bucket = self._buckets.get(peer)
        if bucket is not None:
            bucket.tokens = min(self.burst, bucket.tokens + count)

    def _bucket(self, peer: str, now: float) -> _Bucket:
        bucket = self._buckets.get(peer)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_PEERS:
                self._prune(now)
            bucket = self._buckets[peer] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        return bucket

    def _prune(self, now: float) -> None:
        full = [
            p for p, b in self._buckets.items() if b.tokens + (now - b.at) * self.rate >= self.burst
        ]
        if len(full) < len(self._buckets) // 2:
            full = list(self._buckets)[: len(self._buckets) // 2]
        for peer in full:
            del self._buckets[peer]


MAX_SYNC_PER_PEER: Final = 2  # sync sessions one peer may have us serve at once
MAX_SYNC_SESSIONS: Final = 64  # served at once, all peers together
MAX_STRANGER_SESSIONS: Final = 4  # served at once to peers that are not members, together
SYNC_STARTS_RATE: Final = 1.0  # sessions one peer may open per second
SYNC_STARTS_BURST: Final = 8.0


@dataclass(slots=True)
class SyncSessions:
    """The sync sessions we serve, bounded per peer and in total (pure: ``now`` is given).

    A peer may have MAX_SYNC_PER_PEER sessions open at once and open SYNC_STARTS_RATE a
    second (bursts of SYNC_STARTS_BURST); all peers together MAX_SYNC_SESSIONS, of which
    peers that are not members MAX_STRANGER_SESSIONS. Each session holds a snapshot of our
    record ids, and its own bounded queues (meshd.gossip.sync).
    """

    open_count: int = 0
    refused: int = 0  # sessions refused, since the start
    dropped: int = 0  # ids and range items sessions left out (their budgets), since the start
    _by_peer: Counter[str] = field(default_factory=Counter)
    _strangers: int = 0
    _starts: RateLimiter = field(
        default_factory=lambda: RateLimiter(SYNC_STARTS_RATE, SYNC_STARTS_BURST)
    )

    def open(self, peer: str, *, member: bool, now: float) -> str | None:
        """Count a session ``peer`` opens; None if it may, else why not."""
        if self._by_peer[peer] >= MAX_SYNC_PER_PEER:
            why: str | None = "sessions-per-peer"
        elif self.open_count >= MAX_SYNC_SESSIONS:
            why = "sessions"
        elif not member and self._strangers >= MAX_STRANGER_SESSIONS:
            why = "sessions-of-non-members"
        elif not self._starts.allow(peer, now):
            why = "session-rate"
        else:
            self._by_peer[peer] += 1
            self.open_count += 1
            self._strangers += not member
            return None
        self.refused += 1
        return why

    def close(self, peer: str, *, member: bool) -> None:
        self._by_peer[peer] -= 1
        if self._by_peer[peer] <= 0:
            del self._by_peer[peer]
        self.open_count -= 1
        self._strangers -= not member


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
        self._sinks: list[EventSink] = []
        # A peer id's member key; the daemon installs libp2p's (this module imports no libp2p).
        self.peer_key: Callable[[str], bytes | None] = _no_key

    @property
    def key(self) -> bytes:
        return self.node.node_key.public

    def add_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def _emit(self, events: Sequence[Event]) -> None:
        if events:
            for sink in self._sinks:
                sink(events)

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

    def adopt_stored_revocations(self) -> list[bytes]:
        """Merge revocations another process (``meshd revoke``) wrote to the store."""
        adopted = []
        for rid, raw in self.node.store.rows([Kind.REVOCATION]):
            if self.membership.record(rid) is not None:
                continue
            try:
                outcome = self.add_local_untrusted(raw)
            except (DecodeError, VerifyError) as exc:
                log.warning("a stored revocation does not verify: %s", exc)
                continue
            if outcome.new:
                adopted.append(raw)
        return adopted

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
