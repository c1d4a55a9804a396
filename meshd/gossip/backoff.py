"""When to dial a peer again after failed dials (pure: ``now`` and the jitter are given)."""

from __future__ import annotations

import struct
from typing import Final

_BITS64: Final = (1 << 64) - 1
_MAX_FAILURES: Final = 0xFFFF  # counted on, saturating: only the first 16 lengthen the wait
_FLOAT: Final = struct.Struct("<d")


def _pack(said: int, failures: int, next_try: float) -> int:
    """One peer's entry as one int: the hash of its addresses that failed (64 bits), its
    failures (16 bits) and the bits of its next try (a float, exact)."""
    bits = int.from_bytes(_FLOAT.pack(next_try), "little")
    return (said & _BITS64) << 80 | min(failures, _MAX_FAILURES) << 64 | bits


def _next_try(entry: int) -> float:
    value: float = _FLOAT.unpack((entry & _BITS64).to_bytes(8, "little"))[0]
    return value


class DialBackoff:
    """When to dial a peer again after failed dials: per peer, doubling, capped, and reset
    when the peer's addresses change.

    Pure: the caller passes ``now`` and the jitter factor. A failure at the same addresses
    waits ``min(cap, 2 ** failures)`` seconds times the jitter; a peer whose addresses are
    not those that failed is due at once (it moved: the old failures say nothing about the
    new addresses). What failed is kept as the hash of its addresses (process-keyed: a
    member cannot choose addresses that pass for others), not the addresses themselves,
    and with its failures and next try in one int (:func:`_pack`, 48 bytes): a node that
    tried every member (isolated, or members nobody can dial) keeps ~85 bytes each with the
    table's slot, not ~160 with an object, an int and a float of its own, nor ~280 with
    their strings.
    """

    def __init__(self, cap: float) -> None:
        if not cap > 0:
            raise ValueError("cap must be positive")
        self.cap = cap
        self._peers: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def due(self, peer: bytes, addrs: tuple[str, ...], now: float) -> bool:
        entry = self._peers.get(peer)
        if entry is None:
            return True
        if entry >> 80 != hash(addrs) & _BITS64:
            del self._peers[peer]
            return True
        return now >= _next_try(entry)

    def failed(self, peer: bytes, addrs: tuple[str, ...], now: float, jitter: float) -> float:
        """Record a failed dial of ``addrs``; return the delay before the next one."""
        entry = self._peers.get(peer)
        said = hash(addrs)
        same = entry is not None and entry >> 80 == said & _BITS64
        failures = (entry >> 64 & _MAX_FAILURES) + 1 if entry is not None and same else 1
        delay = min(self.cap, 2.0 ** min(failures, 16)) * jitter
        self._peers[peer] = _pack(said, failures, now + delay)
        return delay

    def forget(self, peer: bytes) -> None:
        """The peer is connected (or gone): its next failure starts from the beginning."""
        self._peers.pop(peer, None)
