"""Root rollover: which root keys stand, and until when (pure; judged from the record set).

A :class:`~meshd.records.Rollover` is the root's signed hand-over of the network to a new root
key, with an overlap window. Every rollover whose signer is a root known here is kept in the
set (a rollover from a key not known as a root yet waits in the pending pool), so the set is
the same whatever order they arrive in. From the set:

* the **chain** starts at the network's first root (the network record's, which the network
  id, the gossip topic and the overlay /48 stay derived from: a rollover changes none of them)
  and follows, from each root, its rollover with the smallest ``(issued_at, record id)``: two
  rollovers from one root are decided by that rule, the same on every node; the other one,
  and anything under the key it names, stands nowhere;
* a root on the chain is accepted until the ``overlap_until`` of its own rollover (the last
  root: for good). A credential whose chain ends at a root is ``expired`` (``root-retired``)
  after that root's end, and does not stand at all (``root-superseded``) when its root is not
  on the chain;
* what a root signed counts only while it is accepted: a credential's and a renewal's end are
  capped at their root's (so a renewal under the new root carries a member of the old one over
  the overlap: meshd.membership.lifecycle), and revocations and renewals under a root past its
  end, or off the chain, leave the set and are refused (``root-retired``,
  ``root-superseded``; meshd.membership.state). A revocation outlives its root through its
  copy under the new root (``meshd root rollover``, ``--auto-renew``).
"""

from __future__ import annotations

from meshd.records import U64, Rollover


class RootChain:
    """The rollovers in the set and the chain of roots they make."""

    __slots__ = ("_chain", "_from", "first")

    def __init__(self, first: bytes) -> None:
        self.first = first
        self._from: dict[bytes, list[tuple[int, bytes, Rollover]]] = {}
        self._chain: dict[bytes, int] | None = None

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._from.values())

    def add(self, rollover: Rollover, rid: bytes) -> None:
        entries = self._from.setdefault(rollover.old_root, [])
        entries.append((rollover.issued_at, rid, rollover))
        entries.sort(key=lambda e: e[:2])
        self._chain = None

    def rollovers(self) -> list[Rollover]:
        return [e[2] for entries in self._from.values() for e in entries]

    def _ends(self) -> dict[bytes, int]:
        """Each root on the chain and the end of its acceptance."""
        if self._chain is None:
            chain: dict[bytes, int] = {}
            root = self.first
            while root not in chain:
                entries = self._from.get(root)
                if not entries:
                    chain[root] = U64
                    break
                winner = entries[0][2]
                chain[root] = winner.overlap_until
                root = winner.new_root
            self._chain = chain
        return self._chain

    def on_chain(self, root: bytes) -> bool:
        """Whether ``root`` is the first root or one the chain of rollovers reaches."""
        return root in self._ends()

    def end(self, root: bytes) -> int:
        """Until when credentials under ``root`` are accepted (0 if it is not on the chain)."""
        return self._ends().get(root, 0)

    def current(self) -> bytes:
        """The last root of the chain: the one that certifies from now on."""
        return list(self._ends())[-1]

    def winner_from(self, root: bytes) -> Rollover | None:
        entries = self._from.get(root)
        return entries[0][2] if entries else None

    def chain(self) -> list[tuple[bytes, int | None, int]]:
        """The roots on the chain, first to current: each key, when the rollover that named
        it was issued (None for the first root) and until when it is accepted."""
        found: list[tuple[bytes, int | None, int]] = []
        since: int | None = None
        for root, end in self._ends().items():
            found.append((root, since, end))
            winner = self.winner_from(root)
            since = winner.issued_at if winner is not None else None
        return found
