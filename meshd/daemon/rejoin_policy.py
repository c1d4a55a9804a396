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
times the jitter the caller passes, for as long as the node runs. At most ``limit`` dials
in flight (a large membership is worked through, the least tried first). Once a member is
connected the ordinary policy (:class:`~meshd.daemon.connect_policy.ConnectionPolicy`,
``degree`` members, 60 s cap) takes over again; a success forgets the target's failures.
``now`` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from meshd.membership import Member, MemberState

#: Seconds between two dials of one target while isolated, at most (before jitter).
ISOLATED_CAP: Final = 2.0
#: Dials in flight at most while isolated.
ISOLATED_LIMIT: Final = 16
#: Bootstrap addresses kept (the state dir's list, ``--bootstrap``).
MAX_BOOTSTRAP: Final = 16


@dataclass(slots=True)
class _Failures:
    count: int
    next_try: float


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
    _failures: dict[bytes, _Failures] = field(default_factory=dict)

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
        (they count against ``limit``)."""
        skipped = set(skip)
        addrs: dict[bytes, list[str]] = {}
        revoked: set[bytes] = set()
        for member in members:
            if member.state is MemberState.REVOKED:
                revoked.add(member.node_key)
                continue
            announcement = member.announcement
            announced = () if announcement is None else announcement.addrs  # from its bytes
            if announced:
                addrs[member.node_key] = list(announced)
        for key, extra in self.bootstrap.items():
            known = addrs.setdefault(key, [])
            known.extend(a for a in extra if a not in known)
        due: list[tuple[int, bytes, tuple[str, ...]]] = []
        for key, found in addrs.items():
            if key == own_key or key in revoked or key in skipped or not found:
                continue
            failures = self._failures.get(key)
            if failures is not None and now < failures.next_try:
                continue
            due.append((failures.count if failures else 0, key, tuple(found)))
        due.sort(key=lambda d: (d[0], d[1]))  # the least tried first
        budget = max(0, self.limit - len(skipped))  # dials in flight count against it
        return [(key, found) for _, key, found in due[:budget]]

    def failed(self, key: bytes, now: float, jitter: float) -> float:
        """A dial of ``key`` failed: the delay before the next one."""
        before = self._failures.get(key)
        count = before.count + 1 if before is not None else 1
        delay = min(self.cap, 2.0 ** min(count - 1, 16)) * jitter
        self._failures[key] = _Failures(count, now + delay)
        return delay

    def forget(self, key: bytes) -> None:
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)
