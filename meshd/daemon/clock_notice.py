"""Saying in the log that records were refused as dated ahead of this node's clock (pure).

A member whose clock runs more than the allowed skew (300 s) ahead has its records refused
by every other node, and a node whose clock runs behind (a board without a real-time clock,
booted before NTP answered) refuses everyone's: either way the mesh stops hearing from it,
and nothing said why but a counter (``meshd_records_refused_total{reason="not-yet-valid"}``).
:class:`ClockNotices` makes a WARNING of it, at most one every :data:`INTERVAL` seconds,
naming whose record and how far ahead, with how many more were refused so since the last.
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


def _records(count: int) -> str:
    return "a record" if count == 1 else f"{count} records"
