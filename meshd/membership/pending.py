"""The pending pool: records that wait for something this node does not know yet (pure).

An announcement can arrive before its member's credential, an admission before its sponsor's.
Such records wait here, outside the record set, filed under the key they wait for, and are
merged when a credential for that key arrives. Nothing here is forwarded or stored: the pool
only spares a round of anti-entropy, which delivers every record again with what it needs.

The pool is bounded, and anyone can fill it (a fresh key can sign an announcement that will
wait forever). So a full pool never refuses: it makes room. Who loses a slot is decided by
the record's *source*, the authenticated peer that delivered it (the gossip neighbour it came
from, the peer of a sync session), never by its author, which the sender chooses:

* each source holds at most ``share`` records; a source at its share makes room by pushing
  out its own oldest record (records from no peer, :data:`LOCAL`, have no share);
* a source under its share that finds the pool full pushes out the oldest record of the
  largest holder (ties: the holder of the oldest record).

So one peer flooding the pool can take at most ``share`` slots, once, and after that churns
only its own records; honest sources keep theirs. Whatever is pushed out comes back through
anti-entropy once what it waits for is known.
"""

from __future__ import annotations

from itertools import count
from typing import Final

DEFAULT_SHARES: Final = 8
"""A source's share of the pool is ``limit // DEFAULT_SHARES`` unless given."""

LOCAL: Final = ""
"""The source of records that did not come from a peer (the store, the CLI, our own): it has
no share of its own and only the full-pool rule applies to it."""

_Slot = tuple[bytes, bytes]  # (waiting_for, rid)


class PendingPool:
    """Raw records by the key they wait for, in the order they came, with a quota per source."""

    __slots__ = (
        "_by_key", "_by_source", "_order", "_rids", "_seq", "evicted", "limit", "share",
    )  # fmt: skip

    def __init__(self, limit: int, *, share: int | None = None) -> None:
        self.limit = limit
        self.share = max(1, min(limit, share if share is not None else limit // DEFAULT_SHARES))
        self.evicted = 0  # records pushed out to make room, since the start
        self._by_key: dict[bytes, dict[bytes, tuple[bytes, bool]]] = {}
        self._order: dict[_Slot, tuple[str, int]] = {}  # slot -> (source, arrival), oldest first
        self._by_source: dict[str, dict[_Slot, int]] = {}  # source -> its slots, oldest first
        self._seq = count()
        self._rids: dict[bytes, int] = {}  # rid -> the slots it holds (one a key it waits for)

    def holds(self, rid: bytes) -> bool:
        """Whether ``rid`` waits here (under any key)."""
        return rid in self._rids

    def __len__(self) -> int:
        return len(self._order)

    def held_by(self, source: str) -> int:
        """How many records ``source`` has parked here."""
        return len(self._by_source.get(source, ()))

    def park(
        self, waiting_for: bytes, rid: bytes, raw: bytes, *, own: bool, source: str = LOCAL
    ) -> None:
        """Keep ``raw`` until ``waiting_for`` is known; ``own``: it is that key's own record;
        ``source``: the peer that delivered it."""
        bucket = self._by_key.get(waiting_for)
        if bucket is not None and rid in bucket:
            return
        if self.limit <= 0:
            self.evicted += 1
            return
        mine = self._by_source.get(source)
        if mine is not None and len(mine) >= self.share and source != LOCAL:
            self._evict(next(iter(mine)))
        elif len(self._order) >= self.limit:
            self._evict(self._largest_holders_oldest())
        slot = (waiting_for, rid)
        seq = next(self._seq)
        self._by_key.setdefault(waiting_for, {})[rid] = (raw, own)
        self._order[slot] = (source, seq)
        self._by_source.setdefault(source, {})[slot] = seq
        self._rids[rid] = self._rids.get(rid, 0) + 1

    def take(self, key: bytes) -> list[tuple[bytes, bytes]]:
        """Remove and return, by record id, everything that waited for ``key``."""
        bucket = self._by_key.pop(key, {})
        for rid in bucket:
            self._forget((key, rid))
        return sorted((rid, raw) for rid, (raw, _) in bucket.items())

    def waited_for(self, key: bytes) -> bool:
        """Whether a record that is not ``key``'s own waits here for it (an admission it
        countersigned, a hand-over from it)."""
        bucket = self._by_key.get(key)
        return bucket is not None and not all(own for _, own in bucket.values())

    def drop_own(self, key: bytes) -> None:
        """Forget ``key``'s own records (it was revoked: they can never be merged). Records
        that others made and that wait for ``key`` (admissions it countersigned) stay."""
        bucket = self._by_key.get(key)
        if not bucket:
            return
        for rid in [rid for rid, (_, own) in bucket.items() if own]:
            del bucket[rid]
            self._forget((key, rid))
        if not bucket:
            del self._by_key[key]

    def _largest_holders_oldest(self) -> _Slot:
        largest = max(len(slots) for slots in self._by_source.values())
        firsts = (next(iter(s.items())) for s in self._by_source.values() if len(s) == largest)
        return min(firsts, key=lambda item: item[1])[0]

    def _forget(self, slot: _Slot) -> None:
        rid = slot[1]
        if self._rids[rid] <= 1:
            del self._rids[rid]
        else:
            self._rids[rid] -= 1
        source, _ = self._order.pop(slot)
        slots = self._by_source[source]
        del slots[slot]
        if not slots:
            del self._by_source[source]

    def _evict(self, slot: _Slot) -> None:
        key, rid = slot
        self._forget(slot)
        bucket = self._by_key[key]
        del bucket[rid]
        if not bucket:
            del self._by_key[key]
        self.evicted += 1
