"""When to announce ourselves (pure: ``now`` is given).

At start; at once when the addresses we would announce (WireGuard endpoints, libp2p addresses)
or whether we relay for other members (meshd.daemon.relaying) change; and otherwise only
every ``interval`` seconds, a slow refresh (two hours by default): members do not need our
announcements to know we are alive (a connection to us or a WireGuard handshake with us tells
them, meshd.daemon.liveness), and their TTL is a multiple of the interval. Addresses are
looked at every ``check`` seconds (``ADDRESS_CHECK`` at most).
"""

from __future__ import annotations

from dataclasses import dataclass

Addresses = tuple[tuple[str, ...], tuple[str, ...]]  # (endpoints, libp2p addresses)

ADDRESS_CHECK = 10.0  # seconds between looks at our addresses: a change goes out within this


def check_every(interval: float) -> float:
    """How often to look at the addresses for a refresh every ``interval`` seconds."""
    return min(interval, ADDRESS_CHECK)


@dataclass(slots=True)
class AnnouncePolicy:
    interval: float
    check: float = 5.0
    _last: float | None = None
    _addresses: Addresses | None = None
    _relays: bool = False

    def due(self, now: float, addresses: Addresses, relays: bool = False) -> bool:
        if self._last is None or addresses != self._addresses or relays != self._relays:
            return True
        return now - self._last >= self.interval

    def announced(self, now: float, addresses: Addresses, relays: bool = False) -> None:
        self._last = now
        self._addresses = addresses
        self._relays = relays

    def changed(self, addresses: Addresses) -> bool:
        """Whether these addresses differ from the last announced (the state dir keeps
        them for ``meshd invite``)."""
        return addresses != self._addresses

    def wait(self, now: float) -> float:
        """Seconds until the next look at the addresses."""
        if self._last is None:
            return 0.0
        return max(0.0, min(self.check, self._last + self.interval - now))
