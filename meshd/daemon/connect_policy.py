"""Whom to keep connected, whom to drop and whom to dial (pure: ``now`` is given).

The connections service (:mod:`meshd.daemon.connections`) asks this core on every peer event
and on every connection pass, and does what it answers:

* a peer whose id is not an Ed25519 key, or a revoked member, is dropped REVOKED_GRACE after
  it connected (long enough to hear why it is refused), at once once it has been told;
* a peer that is not a member gets :class:`~meshd.gossip.enroll.GracePolicy`'s grace, then is
  dropped;
* members are kept, and ``degree`` of them are wanted connected: those missing are dialled
  from their announced addresses, each after its :class:`~meshd.gossip.backoff.DialBackoff`;
* with no member connected at all, :class:`~meshd.daemon.rejoin_policy.Rejoin` says whom to
  dial instead: expired members and bootstrap addresses too, every few seconds at most.
"""

from __future__ import annotations

import enum
import heapq
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from meshd.daemon.rejoin_policy import Rejoin
from meshd.gossip.backoff import DialBackoff
from meshd.gossip.enroll import GracePolicy
from meshd.membership import Member, MemberState

REVOKED_GRACE: Final = 1.0  # seconds a revoked member that dials in is kept, to hear why


class Standing(enum.Enum):
    """What a connected peer is to us."""

    MEMBER = "member"
    STRANGER = "stranger"  # not (yet) a member: it gets a grace
    REFUSED = "refused"  # revoked, or its peer id names no Ed25519 key


@dataclass(frozen=True, slots=True)
class Peer:
    """A connected peer as the policy sees it."""

    peer_id: str
    standing: Standing
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Pass:
    """What one connection pass decided."""

    drop: tuple[tuple[str, str], ...] = ()  # (peer id, why)
    dial: tuple[tuple[bytes, tuple[str, ...]], ...] = ()  # (member key, its addresses)


@dataclass(slots=True)
class ConnectionPolicy:
    """The memory of the connections service: first seen, told, grace, backoff."""

    grace: GracePolicy
    backoff: DialBackoff
    degree: int
    peer_id: Callable[[bytes], str]  # a member key's peer id
    random: random.Random = field(default_factory=random.Random)
    rejoin: Rejoin = field(default_factory=Rejoin)
    _first_seen: dict[str, float] = field(default_factory=dict)
    _told: set[str] = field(default_factory=set)
    _dialling: set[bytes] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rejoin.dials = self.backoff  # one table of failed dials for both policies

    def connected(self, peer: str, now: float) -> None:
        self._first_seen.setdefault(peer, now)

    def disconnected(self, peer: str) -> None:
        self._first_seen.pop(peer, None)
        self._told.discard(peer)

    def told(self, peer: str) -> None:
        """``peer`` was told why it is refused (a revocation, a refused enrollment): it goes
        at the next pass."""
        self._told.add(peer)

    def sweep(
        self, now: float, peers: Iterable[Peer], members: Sequence[Member], own_key: bytes
    ) -> Pass:
        """Whom to drop now, and whom to dial to have ``degree`` members connected."""
        drop: list[tuple[str, str]] = []
        connected_members = 0
        connected_ids: set[str] = set()
        for peer in peers:
            connected_ids.add(peer.peer_id)
            seen = self._first_seen.setdefault(peer.peer_id, now)
            if peer.standing is Standing.REFUSED:
                if now - seen >= REVOKED_GRACE or peer.peer_id in self._told:
                    drop.append((peer.peer_id, "revoked"))
            elif peer.standing is Standing.MEMBER:
                connected_members += 1
                self.grace.forget(peer.peer_id)
                if peer.key is not None:
                    self.backoff.forget(peer.key)
            elif self.grace.expired(peer.peer_id, now):
                drop.append((peer.peer_id, "not a member"))
        # What a disconnection event would have forgotten, had it not been dropped (the
        # peer events' channel sheds when full): peers no longer connected leave the tables.
        if len(self._first_seen) > len(connected_ids):
            for gone in [p for p in self._first_seen if p not in connected_ids]:
                self.disconnected(gone)
        wanted = self.degree - connected_members - len(self._dialling)
        if connected_members == 0:  # isolated: never give up (meshd.daemon.rejoin_policy)
            dial = self.rejoin.targets(now, members, own_key, self._dialling)
        else:
            dial = self._choose(wanted, members, own_key, connected_ids, now) if wanted > 0 else []
        for key, _ in dial:
            self._dialling.add(key)
        return Pass(tuple(drop), tuple(dial))

    def _choose(
        self,
        wanted: int,
        members: Sequence[Member],
        own_key: bytes,
        connected: set[str],
        now: float,
    ) -> list[tuple[bytes, tuple[str, ...]]]:
        """``wanted`` members to dial: a uniform random sample, in random order, of those
        that can be dialled now (``random.sample`` of them), their addresses read (from an
        announcement's bytes) only for a few dozen members a pass, not every one.

        The first ``wanted`` that can be dialled are kept; from the next one on, each
        candidate draws a random priority (the kept ones too) and the ``wanted`` lowest are
        kept: a member's addresses, backoff and peer id are looked at only when its
        priority would be kept. When no more than ``wanted`` can be dialled, they are
        sampled as before (the same draws)."""
        if wanted < 1:
            return []
        first: list[tuple[bytes, tuple[str, ...]]] = []
        kept: list[tuple[float, int, bytes, tuple[str, ...]]] = []  # a heap: -priority, ...
        draw = self.random.random
        for index, member in enumerate(members):
            key = member.node_key
            announcement = member.announcement
            if (
                announcement is None
                or member.state is not MemberState.ADMITTED
                or key == own_key
                or key in self._dialling
            ):
                continue
            priority = -draw() if kept else 0.0
            if kept and priority <= kept[0][0]:
                continue  # it could not be kept, whatever it is
            addrs = announcement.addrs  # read from its bytes
            # Due again after its backoff, or at once when its addresses changed (a
            # connected member has no backoff: the sweep forgot it). Its peer id, dearer
            # to make than its addresses to read, last.
            if not addrs or not self.backoff.due(key, addrs, now):
                continue
            if self.peer_id(key) in connected:
                continue
            if kept:
                heapq.heapreplace(kept, (priority, index, key, addrs))
            elif len(first) < wanted:
                first.append((key, addrs))
            else:  # one more than wanted: priorities from here on
                kept = [(-draw(), i, k, a) for i, (k, a) in enumerate(first)]
                heapq.heapify(kept)
                priority = -draw()
                if priority > kept[0][0]:
                    heapq.heapreplace(kept, (priority, len(first), key, addrs))
        if not kept:
            return self.random.sample(first, min(wanted, len(first)))
        kept.sort(reverse=True)  # the lowest priority first
        return [(key, addrs) for _, _, key, addrs in kept]

    def dialled(self, key: bytes, addrs: tuple[str, ...], ok: bool, now: float) -> float:
        """A dial ended; the delay before the next one (0 when it connected)."""
        self._dialling.discard(key)
        if ok:
            self.backoff.forget(key)  # the rejoin policy's too: they share it
            return 0.0
        return self.backoff.failed(key, addrs, now, 0.5 + self.random.random())

    @property
    def dialling(self) -> int:
        return len(self._dialling)
