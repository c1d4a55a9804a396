"""When to announce ourselves (pure: ``now`` is given).

At start; at once when the addresses we would announce (WireGuard endpoints, libp2p addresses)
or whether we relay for other members (meshd.daemon.relaying) change; and otherwise only
every ``interval`` seconds, a slow refresh (two hours by default): members do not need our
announcements to know we are alive (a connection to us or a WireGuard handshake with us tells
them, meshd.daemon.liveness), and their TTL is a multiple of the interval. Addresses are
looked at every ``check`` seconds (``ADDRESS_CHECK`` at most).

And when we are back after an outage the others may have seen (:meth:`AnnouncePolicy.renew`:
cut off from every member for ``RENEW_AFTER`` seconds, meshd.daemon.connections; or this
host asleep, seen as the wall clock running ahead of the monotonic one by ``SLEPT`` seconds
between two looks): the members that found no route to us meanwhile stop asking the relays
for one (meshd.daemon.babel_wants, *parked*), and a new announcement from us is what makes
them ask again, at once. One announcement per outage, flooded as any other.

An announcement that could not be made (the store refused the write: a full or read-only
disk) is tried again after ``RETRY_FIRST`` seconds, doubling with each failure in a row up
to ``RETRY_MOST`` (:meth:`AnnouncePolicy.failed`), not at once: a due announcement that
failed stays due, and was tried again in a loop with no pause, a warning each time.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshd.records.types import U64

Addresses = tuple[tuple[str, ...], tuple[str, ...]]  # (endpoints, libp2p addresses)

ADDRESS_CHECK = 10.0  # seconds between looks at our addresses: a change goes out within this
RENEW_AFTER = 30.0  # seconds cut off from every member after which we announce anew when back
SLEPT = 30.0  # seconds the wall clock may run ahead of the monotonic one before we call it sleep
RETRY_FIRST = 1.0  # seconds before trying again an announcement that failed...
RETRY_MOST = 60.0  # ...doubling with each failure in a row, up to this


def next_seq(now_ns: int, held: int | None) -> int:
    """The sequence number of our next announcement: the wall clock in nanoseconds, or one
    more than the one the members hold (``held``) if that is not lower. A clock set back (an
    NTP step, a date fixed by hand, a board without a real-time clock) gave a lower number,
    and the members kept the announcement they held, newer by its number, until the clock
    passed it again: an hour set back, an hour during which our moves were not heard."""
    if held is None or now_ns > held:
        return now_ns
    return min(held + 1, U64)


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
    _renew: bool = False
    _clocks: tuple[float, float] | None = None
    _failures: int = 0  # announcements that failed in a row
    _retry_at: float | None = None  # not looked again before then (after a failure)

    def due(self, now: float, addresses: Addresses, relays: bool = False) -> bool:
        return self.why(now, addresses, relays) is not None

    def why(self, now: float, addresses: Addresses, relays: bool = False) -> str | None:
        """Why an announcement is due now (the daemon's log says it), or None."""
        if self._last is None:
            return "start"
        if addresses != self._addresses:
            return "addresses changed"
        if relays != self._relays:
            return "relay decision changed"
        if self._renew:
            return "back after an outage"
        if now - self._last >= self.interval:
            return "refresh"
        return None

    def announced(self, now: float, addresses: Addresses, relays: bool = False) -> None:
        self._failures, self._retry_at = 0, None
        self._last = now
        self._addresses = addresses
        self._relays = relays
        self._renew = False

    def renew(self) -> None:
        """Announce anew at the next look: we are back after an outage."""
        self._renew = True

    def looked(self, now: float, wall: float) -> None:
        """A look at ``now`` (monotonic) and ``wall`` (Unix time): if the wall clock ran
        ahead of the monotonic one by ``SLEPT`` since the last look, this host slept (a
        laptop's lid, a paused VM; the monotonic clock stands still meanwhile) and others
        saw us gone: renew."""
        if self._clocks is not None:
            last_now, last_wall = self._clocks
            if (wall - last_wall) - (now - last_now) >= SLEPT:
                self._renew = True
        self._clocks = (now, wall)

    def changed(self, addresses: Addresses) -> bool:
        """Whether these addresses differ from the last announced (the state dir keeps
        them for ``meshd invite``)."""
        return addresses != self._addresses

    def failed(self, now: float) -> None:
        """The look at ``now`` could not announce: the next one waits ``RETRY_FIRST``
        seconds, doubling with each failure in a row, ``RETRY_MOST`` at most."""
        self._retry_at = now + min(RETRY_FIRST * 2.0**self._failures, RETRY_MOST)
        self._failures = min(self._failures + 1, 30)  # (2.0**1024 overflows: a disk full for days)

    def wait(self, now: float) -> float:
        """Seconds until the next look at the addresses."""
        if self._retry_at is not None and now < self._retry_at:
            return self._retry_at - now
        if self._last is None:
            return 0.0
        return max(0.0, min(self.check, self._last + self.interval - now))
