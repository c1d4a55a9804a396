"""The daemon's per-peer budgets (pure: ``now`` is given): token buckets per peer, and the
sync sessions we serve, bounded per peer and in total."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

RATE_PER_SECOND: Final = 20.0  # gossip, per author
RATE_BURST: Final = 100.0
FORWARDER_RATE: Final = 100.0  # gossip, per neighbour that delivered the message
FORWARDER_BURST: Final = 500.0
# and for all forwarders that are not members together (their peer ids cost nothing: 128
# stranger connections at a forwarder's rate each were 12,800 checks a second)
GOSSIP_STRANGERS_RATE: Final = 50.0
GOSSIP_STRANGERS_BURST: Final = 500.0
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
    """The sync sessions with peers, served or ours, bounded per peer and in total (pure:
    ``now`` is given).

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

    def open(self, peer: str, *, member: bool, now: float, ours: bool = False) -> str | None:
        """Count a session with ``peer``, one it opens or one we open (``ours``: a start is
        ours to pace, not counted against its rate); None if it may be, else why not. A
        session of ours with a peer that is no member counts against the same budget as
        theirs: each holds a snapshot of our ids and reads what that peer sends."""
        if self._by_peer[peer] >= MAX_SYNC_PER_PEER:
            why: str | None = "sessions-per-peer"
        elif self.open_count >= MAX_SYNC_SESSIONS:
            why = "sessions"
        elif not member and self._strangers >= MAX_STRANGER_SESSIONS:
            why = "sessions-of-non-members"
        elif not ours and not self._starts.allow(peer, now):
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
