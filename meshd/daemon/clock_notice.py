"""Saying in the log that records were refused as dated ahead of this node's clock (pure).

A member whose clock runs more than the allowed skew (300 s) ahead has its records refused
by every other node, and a node whose clock runs behind (a board without a real-time clock,
booted before NTP answered) refuses everyone's: either way the mesh stops hearing from it,
and nothing said why but a counter (``meshd_records_refused_total{reason="not-yet-valid"}``).
:class:`ClockNotices` makes a WARNING of it, at most one every :data:`INTERVAL` seconds,
naming whose record and how far ahead, with how many more were refused so since the last.

A node whose own clock runs ahead learns nothing from that: the others refuse its records
and say so in their logs, and a sync does not report refusals back. What it can see is the
members' fresh announcements (flooded as they are made) arriving dated well behind its
clock, all by about the same lag: :class:`AheadOfMembers` says so, once the lags of at
least :data:`WITNESSES` members, most of those heard from lately, agree within
:data:`AGREE` seconds beyond the allowed skew, at most once every :data:`INTERVAL` seconds.
An announcement re-flooded long after it was made (a member's held one, to a newcomer) has
a lag of its own, and members whose clocks run behind are fewer than those heard from.
"""

from __future__ import annotations

from collections.abc import Callable

#: Seconds between two notices at least (the refusals between them are counted).
INTERVAL = 600.0


class ClockNotices:
    """When to say that records dated ahead of our clock were refused, and what."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._said_at: float | None = None
        self._unsaid = 0  # refused since the last notice, and not said

    def refused(
        self, whose: str | Callable[[], str], why: str, now: float, count: int = 1
    ) -> str | None:
        """``count`` records of ``whose`` (a member's name, or where a sync came from; a
        function giving it, asked only when a line is due) refused at ``now`` (monotonic
        seconds) for ``why``: the line to log, or None while the last notice is more recent
        than :attr:`interval` (the refusals counted)."""
        if self._said_at is not None and 0 <= now - self._said_at < self.interval:
            self._unsaid += count
            return None
        more, self._unsaid, self._said_at = self._unsaid, 0, now
        since = f"; {more} more refused so since the last notice" if more else ""
        name = whose if isinstance(whose, str) else whose()
        return (
            f"refused {_records(count)} from {name}: {why} (check both clocks: timedatectl, "
            f"NTP){since}"
        )


#: Members whose announcements must agree before this node says its clock runs ahead.
WITNESSES = 3
#: How far apart their lags may be and still be one clock's offset (plus flooding's seconds).
AGREE = 60.0
#: Members whose latest lag is kept (the most recently heard).
KEEP = 16


class AheadOfMembers:
    """Whether this node's clock looks ahead of the members' (see the module documentation)."""

    def __init__(self, skew: int, interval: float = INTERVAL) -> None:
        self.skew = skew
        self.interval = interval
        self._lags: dict[bytes, float] = {}  # member -> its latest lag, the oldest first
        self._said_at: float | None = None

    def heard(self, member: bytes, lag: float, now: float) -> str | None:
        """A fresh announcement of ``member`` arrived ``lag`` seconds after the date it
        carries, by our clock, at ``now`` (monotonic seconds): the line to log, or None."""
        lags = self._lags
        lags.pop(member, None)
        lags[member] = lag
        if len(lags) > KEEP:
            del lags[next(iter(lags))]
        behind = sorted(v for v in lags.values() if v > self.skew)
        if len(behind) < WITNESSES:
            return None
        middle = behind[len(behind) // 2]
        agreeing = [v for v in behind if abs(v - middle) <= AGREE]
        if len(agreeing) < WITNESSES or 2 * len(agreeing) <= len(lags):
            return None
        if self._said_at is not None and 0 <= now - self._said_at < self.interval:
            return None
        self._said_at = now
        return (
            f"announcements of {len(agreeing)} members arrived dated about {int(middle)} s "
            f"behind this node's clock, more than the {self.skew} s members allow: this "
            "node's clock is probably ahead, and the members refuse its records as dated in "
            "the future (check this machine's clock: timedatectl, NTP)"
        )


def _records(count: int) -> str:
    return "a record" if count == 1 else f"{count} records"
