"""Admin key hand-overs: which admin keys were replaced, from when, and by whom (pure).

An :class:`~meshd.records.AdminHandover` (``meshd admin rotate``) is signed by a root: it
certifies a successor key with the old admin key's grants and sets the old key's **cut-off**
(its ``issued_at``). From the record set alone:

* an admin key's cut-off is that of its earliest hand-over by ``(issued_at, record id)``:
  two hand-overs of one key are decided by that rule on every node (both successors are
  admins the root certified; the earliest cut-off applies);
* what the old key signed dated up to its cut-off keeps standing (invites, member
  certificates, renewals, revocations); a credential under a certificate or invite it signed
  dated later does not stand (``admin-handed-over``), and a renewal or revocation it signed
  dated later is refused and leaves the set (meshd.membership.state);
* a revocation of the old key wins over its hand-overs, in any order: every successor (and
  theirs) counts as revoked with it, as a node key's successor does (§6.12).
"""

from __future__ import annotations

from collections.abc import Container

from meshd.records import AdminHandover
from meshd.trust.credential import Credential


class AdminHandovers:
    """The admin key hand-overs in the set, by old key and by successor."""

    __slots__ = ("_from", "_heirs", "_records")

    def __init__(self) -> None:
        # old admin key -> its hand-overs, earliest first: (cut-off, record id, successor)
        self._from: dict[bytes, list[tuple[int, bytes, bytes]]] = {}
        self._heirs: dict[bytes, set[bytes]] = {}  # old admin key -> its successors
        self._records: dict[bytes, AdminHandover] = {}  # record id -> the hand-over

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._from.values())

    def __bool__(self) -> bool:
        return bool(self._from)

    def add(self, handover: AdminHandover, rid: bytes) -> None:
        old, new = handover.old_key, handover.new_key
        entries = self._from.setdefault(old, [])
        entries.append((handover.issued_at, rid, new))
        entries.sort()
        self._heirs.setdefault(old, set()).add(new)
        self._records[rid] = handover

    def records(self) -> list[AdminHandover]:
        """Every hand-over in the set."""
        return list(self._records.values())

    def signed_by(self, roots: Container[bytes]) -> list[bytes]:
        """Record ids of the hand-overs signed by one of ``roots``."""
        return [rid for rid, h in self._records.items() if h.root in roots]

    def old_keys(self, rids: set[bytes]) -> set[bytes]:
        """The admin keys these hand-overs replace."""
        return {self._records[rid].old_key for rid in rids if rid in self._records}

    def drop(self, rids: set[bytes]) -> None:
        """Forget these hand-overs (their root is no longer accepted)."""
        for rid in rids:
            handover = self._records.pop(rid, None)
            if handover is None:
                continue
            old = handover.old_key
            entries = [e for e in self._from.get(old, []) if e[1] != rid]
            if entries:
                self._from[old] = entries
                self._heirs[old] = {e[2] for e in entries}
            else:
                self._from.pop(old, None)
                self._heirs.pop(old, None)

    def cutoff(self, key: bytes) -> int | None:
        """When ``key`` was handed over (its earliest hand-over's date), None if it was not."""
        entries = self._from.get(key)
        return entries[0][0] if entries else None

    def signed_late(self, key: bytes, at: int) -> bool:
        """Whether a record ``key`` signed dated ``at`` is after the key's hand-over."""
        cutoff = self.cutoff(key)
        return cutoff is not None and at > cutoff

    def late(self, credential: Credential) -> bool:
        """Whether ``credential`` was issued under an admin key after that key's hand-over."""
        return bool(credential.admin) and self.signed_late(credential.admin, credential.admin_at)

    def successors(self, key: bytes) -> set[bytes]:
        """The keys ``key`` was handed over to, and theirs, transitively."""
        found: set[bytes] = set()
        queue = [key]
        while queue:
            for heir in self._heirs.get(queue.pop(), ()):
                if heir not in found:
                    found.add(heir)
                    queue.append(heir)
        return found

    def revoked_heirs(self, revoked: Container[bytes]) -> dict[bytes, bytes]:
        """Each successor of a revoked admin key that is not revoked itself, with the revoked
        key it descends from (the revocation wins over the hand-over)."""
        heirs: dict[bytes, bytes] = {}
        for old in self._heirs:
            if old in revoked:
                for heir in self.successors(old):
                    if heir not in revoked and (heir not in heirs or old < heirs[heir]):
                        heirs[heir] = old  # the smallest: the same on every node
        return heirs
