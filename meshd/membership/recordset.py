"""The set of verified records, and the digests that anti-entropy compares (pure).

Record ids are SHA-256 output, so they spread evenly over the id space: the set is cut into
:data:`BUCKETS` buckets by the first byte of the id, and each bucket's digest is the XOR of its
ids (an order-free set hash) with its count. Equal sets give equal digests whatever order the
records joined in.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from meshd.records.types import RECORD_ID_LEN

BUCKETS = 256


class HasRaw(Protocol):
    """A record's holder that puts its bytes back together when asked (a credential, an
    announcement: meshd.records.elide)."""

    @property
    def raw(self) -> bytes: ...


KeptBytes = bytes | HasRaw
"""What the set keeps of a record: its bytes, or the object that holds them elided (one copy,
not a second one whole)."""


def raw_of(kept: KeptBytes) -> bytes:
    """A record's bytes from what was kept of it."""
    return kept if kept.__class__ is bytes else kept.raw  # type: ignore[union-attr]


class RecordSet:
    """Record id -> raw record bytes, with per-bucket digests kept up to date.

    A record is added as its bytes or as the object that holds them (:data:`KeptBytes`): the
    set then keeps that object and asks it for the bytes when they are wanted (a sync).

    Each bucket keeps its ids packed in one ``bytearray`` (16 bytes an id, in no order) and
    the raw records in a list in the same order, not a table of id objects: ~24 bytes a
    record where a dict entry and a 16-byte ``bytes`` object took ~90 (an announcement's id
    was kept by the set alone). An id is found with ``bytearray.find`` at a multiple of 16
    (a bucket holds a 256th of the set: ~80 ids at 10,000 members); :meth:`ids` makes the
    id objects when asked."""

    __slots__ = ("_acc", "_ids", "_len", "_raws")

    def __init__(self) -> None:
        self._ids = [bytearray() for _ in range(BUCKETS)]
        self._raws: list[list[KeptBytes]] = [[] for _ in range(BUCKETS)]
        self._acc = [0] * BUCKETS
        self._len = 0

    def _at(self, rid: object) -> int:
        """Where ``rid`` is in its bucket's ids (a byte offset), or -1."""
        if not isinstance(rid, bytes) or len(rid) != RECORD_ID_LEN:
            return -1
        ids = self._ids[rid[0]]
        at = ids.find(rid)
        while at > 0 and at % RECORD_ID_LEN:  # found across two ids: look further on
            at = ids.find(rid, at + 1)
        return at

    def __contains__(self, rid: object) -> bool:
        # _at's lines again: this runs for every record merged.
        if not isinstance(rid, bytes) or len(rid) != RECORD_ID_LEN:
            return False
        ids = self._ids[rid[0]]
        at = ids.find(rid)
        while at > 0 and at % RECORD_ID_LEN:
            at = ids.find(rid, at + 1)
        return at >= 0

    def __len__(self) -> int:
        return self._len

    def get(self, rid: bytes) -> bytes | None:
        at = self._at(rid)
        if at < 0:
            return None
        return raw_of(self._raws[rid[0]][at // RECORD_ID_LEN])

    def add(self, rid: bytes, raw: KeptBytes) -> None:
        if self._at(rid) >= 0:
            return
        self._put(rid, raw)

    def add_new(self, rid: bytes, raw: KeptBytes) -> None:
        """Add ``rid``, known not to be in the set (not looked for again)."""
        self._put(rid, raw)

    def _put(self, rid: bytes, raw: KeptBytes) -> None:
        bucket = rid[0]
        self._ids[bucket] += rid
        self._raws[bucket].append(raw)
        self._acc[bucket] ^= int.from_bytes(rid, "big")
        self._len += 1

    def remove(self, rid: bytes) -> bool:
        """Remove ``rid``; return whether it was in the set."""
        at = self._at(rid)
        if at < 0:
            return False
        bucket = rid[0]
        ids, raws = self._ids[bucket], self._raws[bucket]
        last = len(ids) - RECORD_ID_LEN
        if at != last:  # the last id and record take its place
            ids[at : at + RECORD_ID_LEN] = ids[last:]
            raws[at // RECORD_ID_LEN] = raws[-1]
        del ids[last:]
        raws.pop()
        self._acc[bucket] ^= int.from_bytes(rid, "big")
        self._len -= 1
        return True

    def replace(self, old: bytes, rid: bytes, raw: KeptBytes) -> None:
        """Swap ``old`` (in the set) for ``rid`` (not in it): a member's newer announcement."""
        self.remove(old)
        self._put(rid, raw)

    def ids(self, bucket: int | None = None) -> list[bytes]:
        """Every id, or those of one bucket, sorted."""
        buckets = self._ids if bucket is None else (self._ids[bucket],)
        found = [
            packed[at : at + RECORD_ID_LEN]
            for ids in buckets
            for packed in (bytes(ids),)
            for at in range(0, len(packed), RECORD_ID_LEN)
        ]
        found.sort()
        return found

    def digest(self) -> bytes:
        """A digest of the whole set: equal sets give equal digests."""
        h = hashlib.sha256(b"meshd digest v1\x00")
        for acc, ids in zip(self._acc, self._ids, strict=True):
            h.update(acc.to_bytes(16, "big") + (len(ids) // RECORD_ID_LEN).to_bytes(4, "big"))
        return h.digest()[:16]

    def bucket_digests(self) -> list[bytes]:
        """One digest per bucket of record ids (bucket = first byte of the id)."""
        return [
            acc.to_bytes(16, "big") + (len(ids) // RECORD_ID_LEN).to_bytes(4, "big")
            for acc, ids in zip(self._acc, self._ids, strict=True)
        ]
