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
        candidates = []
        for member in members:
            key = member.node_key
            if key == own_key or member.state is not MemberState.ADMITTED:
                continue
            announcement = member.announcement
            addrs = () if announcement is None else announcement.addrs  # read from its bytes
            if not addrs:
                continue
            if key in self._dialling or self.peer_id(key) in connected:
                continue
            # Due again after its backoff, or at once when its addresses changed.
            if not self.backoff.due(key, addrs, now):
                continue
            candidates.append((key, addrs))
        return self.random.sample(candidates, min(wanted, len(candidates)))

    def dialled(self, key: bytes, addrs: tuple[str, ...], ok: bool, now: float) -> float:
        """A dial ended; the delay before the next one (0 when it connected)."""
        self._dialling.discard(key)
        if ok:
            self.backoff.forget(key)
            self.rejoin.forget(key)
            return 0.0
        jitter = 0.5 + self.random.random()
        self.rejoin.failed(key, now, jitter)
        return self.backoff.failed(key, addrs, now, jitter)

    @property
    def dialling(self) -> int:
        return len(self._dialling)
