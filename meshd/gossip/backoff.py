"""When to dial a peer again after failed dials (pure: ``now`` and the jitter are given)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Backoff:
    addrs: int  # the hash of the addresses that failed, not them (a member's decoded strings)
    failures: int
    next_try: float


class DialBackoff:
    """When to dial a peer again after failed dials: per peer, doubling, capped, and reset
    when the peer's addresses change.

    Pure: the caller passes ``now`` and the jitter factor. A failure at the same addresses
    waits ``min(cap, 2 ** failures)`` seconds times the jitter; a peer whose addresses are
    not those that failed is due at once (it moved: the old failures say nothing about the
    new addresses). What failed is kept as the hash of its addresses (process-keyed: a
    member cannot choose addresses that pass for others), not the addresses themselves: a
    node that tried every member keeps ~60 bytes each, not ~280 with their strings.
    """

    def __init__(self, cap: float) -> None:
        if not cap > 0:
            raise ValueError("cap must be positive")
        self.cap = cap
        self._peers: dict[bytes, _Backoff] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def due(self, peer: bytes, addrs: tuple[str, ...], now: float) -> bool:
        entry = self._peers.get(peer)
        if entry is None:
            return True
        if entry.addrs != hash(addrs):
            del self._peers[peer]
            return True
        return now >= entry.next_try

    def failed(self, peer: bytes, addrs: tuple[str, ...], now: float, jitter: float) -> float:
        """Record a failed dial of ``addrs``; return the delay before the next one."""
        entry = self._peers.get(peer)
        said = hash(addrs)
        failures = entry.failures + 1 if entry is not None and entry.addrs == said else 1
        delay = min(self.cap, 2.0 ** min(failures, 16)) * jitter
        self._peers[peer] = _Backoff(said, failures, now + delay)
        return delay

    def forget(self, peer: bytes) -> None:
        """The peer is connected (or gone): its next failure starts from the beginning."""
        self._peers.pop(peer, None)
