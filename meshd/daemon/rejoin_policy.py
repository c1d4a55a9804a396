"""Never giving up on the mesh: whom an isolated node dials, and how often (pure).

A node with no member connected (every connection lost: its own link went down, or every
member it knew restarted, or it sits behind a NAT that nobody can dial in through) cannot
wait for others to find it. :class:`Rejoin` says whom it dials while it is isolated:

* every member it knows that is not revoked, **expired ones included**, at its last
  announced libp2p addresses: a member that went silent in our view because *we* were cut
  off is still where it was (expiry by silence must not cut a node off from everyone);
* the bootstrap addresses it joined with (kept in the state dir), which name the member
  behind them by its peer id (``/p2p/ID``): a public member is usually among them;

each target after its own capped backoff: doubling from 1 s up to ``cap`` (a few seconds),
times the jitter the caller passes, for as long as the node runs (read from the connection
policy's table of failed dials, :class:`~meshd.gossip.backoff.DialBackoff`, which it shares:
a target whose addresses changed starts again from 1 s). At most ``limit`` dials
in flight (a large membership is worked through, the least tried first). Once a member is
connected the ordinary policy (:class:`~meshd.daemon.connect_policy.ConnectionPolicy`,
``degree`` members, 60 s cap) takes over again; a success forgets the target's failures.
``now`` is given.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from meshd.gossip.backoff import DialBackoff
from meshd.membership import Member, MemberState

#: Seconds between two dials of one target while isolated, at most (before jitter).
ISOLATED_CAP: Final = 2.0
#: Dials in flight at most while isolated.
ISOLATED_LIMIT: Final = 16
#: Bootstrap addresses kept (the state dir's list, ``--bootstrap``).
MAX_BOOTSTRAP: Final = 16


def bootstrap_targets(
    addrs: Iterable[str], key_of: Callable[[str], bytes | None]
) -> dict[bytes, tuple[str, ...]]:
    """Bootstrap multiaddrs grouped by the member key their ``/p2p/ID`` names; addresses
    without one (nothing to check the answering node against) are left out."""
    out: dict[bytes, list[str]] = {}
    for addr in list(addrs)[:MAX_BOOTSTRAP]:
        head, sep, peer = addr.rpartition("/p2p/")
        if not sep or not head or "/" in peer:
            continue
        key = key_of(peer)
        if key is not None and addr not in out.setdefault(key, []):
            out[key].append(addr)
    return {key: tuple(found) for key, found in out.items()}


@dataclass(slots=True)
class Rejoin:
    """Whom an isolated node dials; see the module documentation."""

    cap: float = ISOLATED_CAP
    limit: int = ISOLATED_LIMIT
    bootstrap: dict[bytes, tuple[str, ...]] = field(default_factory=dict)
    # The failed dials, each target's in one int: the connection policy's own table
    # (ConnectionPolicy makes it share it), read with this policy's shorter waits; not a
    # second table (~70 bytes for every member an isolated node has failed to dial).
    dials: DialBackoff = field(default_factory=lambda: DialBackoff(ISOLATED_CAP))

    def __post_init__(self) -> None:
        if not self.cap > 0 or self.limit < 1:
            raise ValueError("Rejoin needs a positive cap and limit")

    def targets(
        self,
        now: float,
        members: Sequence[Member],
        own_key: bytes,
        skip: Iterable[bytes] = (),
    ) -> list[tuple[bytes, tuple[str, ...]]]:
        """The (member key, addresses) to dial now; ``skip``: keys being dialled already
        (they count against ``limit``).

        The least tried first, then by key; a member's announced addresses, then its
        bootstrap ones. Addresses are read (from an announcement's bytes) only for the
        members chosen: the ``budget`` least tried due, again twice as many while some
        chosen have none; nothing is kept of the others (keys are unique in ``members``)."""
        skipped = set(skip)
        budget = max(0, self.limit - len(skipped))  # dials in flight count against it
        chosen: list[tuple[bytes, tuple[str, ...]]] = []
        read, wanted = 0, budget
        while len(chosen) < budget:
            picked = heapq.nsmallest(wanted, self._due(now, members, own_key, skipped))
            for _, key, index in picked[read:]:  # the first ``read`` were read already
                found = self._addrs(key, None if index < 0 else members[index])
                if found:
                    chosen.append((key, found))
                    if len(chosen) == budget:
                        break
            if len(picked) < wanted:
                break  # every one due was read
            read, wanted = wanted, wanted * 2
        return chosen

    def _due(
        self, now: float, members: Sequence[Member], own_key: bytes, skipped: set[bytes]
    ) -> Iterator[tuple[int, bytes, int]]:
        """(failures, key, index in ``members``, -1 for a bootstrap key no member has) of
        every target due now that may have addresses, its addresses unread."""
        isolated, cap = self.dials.isolated, self.cap
        bootstrap = self.bootstrap
        members_booted: set[bytes] = set()  # bootstrap keys of members (revoked ones too)
        for index, member in enumerate(members):
            key = member.node_key
            if key in bootstrap:
                members_booted.add(key)
            elif member.announcement is None:
                continue  # no address to dial
            if member.state is MemberState.REVOKED or key == own_key or key in skipped:
                continue
            failed = isolated(key, now, cap)
            if failed >= 0:
                yield failed, key, index
        for booted in bootstrap:
            if booted in members_booted or booted == own_key or booted in skipped:
                continue
            failed = isolated(booted, now, cap)
            if failed >= 0:
                yield failed, booted, -1

    def _addrs(self, key: bytes, member: Member | None) -> tuple[str, ...]:
        """What ``key`` is dialled at: its announced addresses (read from the bytes), then
        its bootstrap ones not among them."""
        announcement = None if member is None else member.announcement
        announced = () if announcement is None else announcement.addrs
        extra = self.bootstrap.get(key)
        if not extra:
            return tuple(announced)
        found = list(announced)
        for addr in extra:
            if addr not in found:
                found.append(addr)
        return tuple(found)

    def failed(self, key: bytes, now: float, jitter: float) -> float:
        """A dial of ``key`` failed: the delay before the next one while isolated (the
        table's own, :meth:`DialBackoff.failed`, is the connected node's)."""
        self.dials.failed(key, (), now, jitter)
        return self.dials.isolated_wait(key, self.cap)

    def forget(self, key: bytes) -> None:
        self.dials.forget(key)

    def __len__(self) -> int:
        return len(self.dials)
