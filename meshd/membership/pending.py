"""The pending pool: records that wait for something this node does not know yet (pure).

An announcement can arrive before its member's credential, an admission before its sponsor's.
Such records wait here, outside the record set, filed under the key they wait for, and are
merged when a credential for that key arrives. Nothing here is forwarded or stored: the pool
only spares a round of anti-entropy, which delivers every record again with what it needs.

The pool is bounded, and anyone can fill it (a fresh key can sign an announcement that will
wait forever). So a full pool never refuses: the record that has waited longest makes room.
An attacker can churn the pool only as fast as the daemon's per-peer rate limit lets it, and
cannot freeze it: every honest record still gets in, and whatever is pushed out comes back
through anti-entropy once what it waits for is known.
"""

from __future__ import annotations


class PendingPool:
    """Raw records by the key they wait for, in the order they came."""

    __slots__ = ("_by_key", "_order", "evicted", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.evicted = 0  # records pushed out to make room, since the start
        self._by_key: dict[bytes, dict[bytes, tuple[bytes, bool]]] = {}
        self._order: dict[tuple[bytes, bytes], None] = {}  # oldest first

    def __len__(self) -> int:
        return len(self._order)

    def park(self, waiting_for: bytes, rid: bytes, raw: bytes, *, own: bool) -> None:
        """Keep ``raw`` until ``waiting_for`` is known; ``own``: it is that key's own record."""
        bucket = self._by_key.get(waiting_for)
        if bucket is not None and rid in bucket:
            return
        if self.limit <= 0:
            self.evicted += 1
            return
        while len(self._order) >= self.limit:
            self._evict_oldest()
        self._by_key.setdefault(waiting_for, {})[rid] = (raw, own)
        self._order[(waiting_for, rid)] = None

    def take(self, key: bytes) -> list[tuple[bytes, bytes]]:
        """Remove and return, by record id, everything that waited for ``key``."""
        bucket = self._by_key.pop(key, {})
        for rid in bucket:
            del self._order[(key, rid)]
        return sorted((rid, raw) for rid, (raw, _) in bucket.items())

    def drop_own(self, key: bytes) -> None:
        """Forget ``key``'s own records (it was revoked: they can never be merged). Records
        that others made and that wait for ``key`` (admissions it countersigned) stay."""
        bucket = self._by_key.get(key)
        if not bucket:
            return
        for rid in [rid for rid, (_, own) in bucket.items() if own]:
            del bucket[rid]
            del self._order[(key, rid)]
        if not bucket:
            del self._by_key[key]

    def _evict_oldest(self) -> None:
        key, rid = next(iter(self._order))
        del self._order[(key, rid)]
        bucket = self._by_key[key]
        del bucket[rid]
        if not bucket:
            del self._by_key[key]
        self.evicted += 1
