"""When to dial a peer again after failed dials (pure: ``now`` and the jitter are given)."""

from __future__ import annotations

import struct
from typing import Final

_BITS64: Final = (1 << 64) - 1
_BITS32: Final = (1 << 32) - 1
_MAX_FAILURES: Final = 0xFFFF  # counted on, saturating: only the first 16 lengthen the wait
_FLOAT: Final = struct.Struct("<d")
_SINGLE: Final = struct.Struct("<f")


def _pack(said: int, failures: int, jitter: float, failed_at: float) -> int:
    """One peer's entry as one int: the hash of its addresses that failed (64 bits), its
    failures (16 bits), the jitter of its waits (a single-precision float's bits) and when
    it last failed (a float's bits, exact)."""
    at = int.from_bytes(_FLOAT.pack(failed_at), "little")
    jit = int.from_bytes(_SINGLE.pack(jitter), "little")
    return (said & _BITS64) << 112 | min(failures, _MAX_FAILURES) << 96 | jit << 64 | at


def _single(jitter: float) -> float:
    """``jitter`` as an entry keeps it (single precision): the waits are worked out from it."""
    value: float = _SINGLE.unpack(_SINGLE.pack(jitter))[0]
    return value


def _wait(entry: int, cap: float, lag: int) -> float:
    """The wait after the last failure ``entry`` holds: doubling from ``2 ** (1 - lag)``
    seconds up to ``cap``, times its jitter."""
    failures = entry >> 96 & _MAX_FAILURES
    jitter: float = _SINGLE.unpack((entry >> 64 & _BITS32).to_bytes(4, "little"))[0]
    return min(cap, 2.0 ** min(failures - lag, 16)) * jitter


def _failed_at(entry: int) -> float:
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
    and with its failures, jitter and last failure in one int (:func:`_pack`, 48 bytes): a
    node that tried every member (isolated, or members nobody can dial) keeps ~85 bytes
    each with the table's slot, not ~160 with an object, an int and a float of its own,
    nor ~280 with their strings. The same entries tell an isolated node's
    :class:`~meshd.daemon.rejoin_policy.Rejoin` whom it may dial again (:meth:`isolated`,
    its own shorter waits): one table of failed dials, not two (~70 bytes a member more).
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
        if entry >> 112 != hash(addrs) & _BITS64:
            del self._peers[peer]
            return True
        return now >= _failed_at(entry) + _wait(entry, self.cap, 0)

    def isolated(self, peer: bytes, now: float, cap: float) -> int:
        """For an isolated node, whose waits double from 1 s up to ``cap``: the failed dials
        of ``peer`` (0 for none) if it may be dialled again now, whatever its addresses;
        else -1."""
        entry = self._peers.get(peer)
        if entry is None:
            return 0
        if now < _failed_at(entry) + _wait(entry, cap, 1):
            return -1
        return entry >> 96 & _MAX_FAILURES

    def isolated_wait(self, peer: bytes, cap: float) -> float:
        """The wait after ``peer``'s last failed dial for an isolated node (0 if none)."""
        entry = self._peers.get(peer)
        return 0.0 if entry is None else _wait(entry, cap, 1)

    def failed(self, peer: bytes, addrs: tuple[str, ...], now: float, jitter: float) -> float:
        """Record a failed dial of ``addrs``; return the delay before the next one."""
        entry = self._peers.get(peer)
        said = hash(addrs)
        same = entry is not None and entry >> 112 == said & _BITS64
        failures = (entry >> 96 & _MAX_FAILURES) + 1 if entry is not None and same else 1
        jitter = _single(jitter)
        self._peers[peer] = _pack(said, failures, jitter, now)
        return min(self.cap, 2.0 ** min(failures, 16)) * jitter

    def forget(self, peer: bytes) -> None:
        """The peer is connected (or gone): its next failure starts from the beginning."""
        self._peers.pop(peer, None)
