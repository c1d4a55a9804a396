"""The set of verified records, and the digests that anti-entropy compares (pure).

Record ids are SHA-256 output, so they spread evenly over the id space: the set is cut into
:data:`BUCKETS` buckets by the first byte of the id, and each bucket's digest is the XOR of its
ids (an order-free set hash) with its count. Equal sets give equal digests whatever order the
records joined in.
"""

from __future__ import annotations

import hashlib

BUCKETS = 256


class RecordSet:
    """Record id -> raw record bytes, with per-bucket digests kept up to date."""

    __slots__ = ("_acc", "_count", "_raw")

    def __init__(self) -> None:
        self._raw: dict[bytes, bytes] = {}
        self._acc = [0] * BUCKETS
        self._count = [0] * BUCKETS

    def __contains__(self, rid: object) -> bool:
        return rid in self._raw

    def __len__(self) -> int:
        return len(self._raw)

    def get(self, rid: bytes) -> bytes | None:
        return self._raw.get(rid)

    def add(self, rid: bytes, raw: bytes) -> None:
        if rid in self._raw:
            return
        self._raw[rid] = raw
        self._acc[rid[0]] ^= int.from_bytes(rid, "big")
        self._count[rid[0]] += 1

    def remove(self, rid: bytes) -> bool:
        """Remove ``rid``; return whether it was in the set."""
        if self._raw.pop(rid, None) is None:
            return False
        self._acc[rid[0]] ^= int.from_bytes(rid, "big")
        self._count[rid[0]] -= 1
        return True

    def replace(self, old: bytes, rid: bytes, raw: bytes) -> None:
        """Swap ``old`` (in the set) for ``rid`` (not in it): a member's newer announcement."""
        raw_of, acc, count = self._raw, self._acc, self._count
        del raw_of[old]
        acc[old[0]] ^= int.from_bytes(old, "big")
        count[old[0]] -= 1
        raw_of[rid] = raw
        acc[rid[0]] ^= int.from_bytes(rid, "big")
        count[rid[0]] += 1

    def ids(self, bucket: int | None = None) -> list[bytes]:
        """Every id, or those of one bucket, sorted."""
        if bucket is None:
            return sorted(self._raw)
        return sorted(rid for rid in self._raw if rid[0] == bucket)

    def digest(self) -> bytes:
        """A digest of the whole set: equal sets give equal digests."""
        h = hashlib.sha256(b"meshd digest v1\x00")
        for acc, count in zip(self._acc, self._count, strict=True):
            h.update(acc.to_bytes(16, "big") + count.to_bytes(4, "big"))
        return h.digest()[:16]

    def bucket_digests(self) -> list[bytes]:
        """One digest per bucket of record ids (bucket = first byte of the id)."""
        return [
            acc.to_bytes(16, "big") + count.to_bytes(4, "big")
            for acc, count in zip(self._acc, self._count, strict=True)
        ]
