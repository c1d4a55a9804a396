"""What each peer may make this node do, and what it was refused (the owner's gatekeeper).

The gossip validator asks :meth:`PeerGate.allow_gossip` before it decodes anything: rate
limits per author and per forwarder (the neighbour that delivered the message, which Noise
authenticates and the sender cannot choose per message). Anti-entropy asks
:meth:`PeerGate.admit_sync_records` how much of a sync message it may verify. Every refusal
is counted per peer and per reason (``meshd status`` shows the reasons). The per-peer table
is bounded: past MAX_TRACKED_PEERS peers it starts again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from meshd.daemon.budgets import (
    FORWARDER_BURST,
    FORWARDER_RATE,
    GOSSIP_STRANGERS_BURST,
    GOSSIP_STRANGERS_RATE,
    MAX_TRACKED_PEERS,
    NON_MEMBERS,
    SYNC_MEMBER_BURST,
    SYNC_MEMBER_RATE,
    SYNC_STRANGER_BURST,
    SYNC_STRANGER_RATE,
    SYNC_STRANGERS_BURST,
    SYNC_STRANGERS_RATE,
    RateLimiter,
)
from meshd.records import Announcement, Record


class PeerGate:
    """The budgets of gossip and sync per peer, and the refusals counted."""

    def __init__(self, is_member_peer: Callable[[str], bool]) -> None:
        self.is_member_peer = is_member_peer
        self.rejects: Counter[str] = Counter()  # by peer id
        self.reject_reasons: Counter[str] = Counter()
        self._authors = RateLimiter()
        self._forwarders = RateLimiter(FORWARDER_RATE, FORWARDER_BURST)
        self._gossip_strangers = RateLimiter(GOSSIP_STRANGERS_RATE, GOSSIP_STRANGERS_BURST)
        self._sync_members = RateLimiter(SYNC_MEMBER_RATE, SYNC_MEMBER_BURST)
        self._sync_strangers = RateLimiter(SYNC_STRANGER_RATE, SYNC_STRANGER_BURST)
        self._sync_all_strangers = RateLimiter(SYNC_STRANGERS_RATE, SYNC_STRANGERS_BURST)

    def allow_gossip(self, author: str, forwarder: str, now: float) -> bool:
        """Whether a gossip message of ``author`` delivered by ``forwarder`` may be checked:
        within the forwarder's rate and the author's, and a forwarder that is not a member
        within the one rate all of them share too."""
        if (
            self._forwarders.allow(forwarder, now)
            and self._authors.allow(author, now)
            and (self.is_member_peer(forwarder) or self._gossip_strangers.allow(NON_MEMBERS, now))
        ):
            return True
        self.reject(forwarder, "rate-limited")
        return False

    def reject(self, peer: str, reason: str, count: int = 1) -> None:
        if len(self.rejects) >= MAX_TRACKED_PEERS:
            self.rejects.clear()
        self.rejects[peer] += count
        self.reject_reasons[reason] += count

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
        if self.is_member_peer(peer):
            granted = self._sync_members.take(peer, now, len(ordered))
        else:
            granted = self._sync_strangers.take(peer, now, len(ordered))
            shared = self._sync_all_strangers.take(NON_MEMBERS, now, granted)
            self._sync_strangers.give_back(peer, granted - shared)
            granted = shared
        cut = len(ordered) - granted
        if cut:
            self.reject(peer, "rate-limited", cut)
        return ordered[:granted]
