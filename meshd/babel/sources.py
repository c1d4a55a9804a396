"""Sequence numbers, the source table and the feasibility condition (RFC 8966 2.4, 3.5.1, 3.7.3).

A route is named by its key, ``(prefix, source prefix)`` (RFC 9079: the source prefix is None
for an ordinary route), and comes from one originator, its router-id. For each key and
router-id that we have announced with a finite metric, the source table holds the
*feasibility distance*: the best ``(seqno, metric)`` we ever announced. An update is feasible
when it is a retraction, or when nothing was announced yet, or when its seqno is newer, or
when its seqno is the same and its metric strictly smaller. Selecting only feasible routes is
what keeps Babel loop-free at every instant, whatever the neighbours still believe.

An entry is forgotten ``gc_time`` after it was last announced (RFC 8966 3.2.5, three minutes
by default), which must stay longer than any route's hold time.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Final

from meshd.babel.numbers import INFINITY

SEQNO_MODULUS: Final = 1 << 16
_HALF: Final = 1 << 15

IPNetwork = IPv4Network | IPv6Network
RouteKey = tuple[IPNetwork, IPNetwork | None]
"""A route's identity: its prefix and its source prefix (None: any source)."""


def seqno_diff(a: int, b: int) -> int:
    """``a - b`` modulo 2^16 as a signed number in ``[-32768, 32767]``."""
    diff = (a - b) % SEQNO_MODULUS
    return diff - SEQNO_MODULUS if diff >= _HALF else diff


def seqno_newer(a: int, b: int) -> bool:
    """True if seqno ``a`` is newer than ``b`` (modulo 2^16)."""
    return seqno_diff(a, b) > 0


def seqno_plus(a: int, n: int = 1) -> int:
    """``a + n`` modulo 2^16."""
    return (a + n) % SEQNO_MODULUS


@dataclass(frozen=True, slots=True)
class Distance:
    """A feasibility distance: a seqno and a metric, compared seqno first."""

    seqno: int
    metric: int


def feasible(distance: Distance | None, seqno: int, metric: int) -> bool:
    """The feasibility condition of RFC 8966 3.5.1 for an update ``(seqno, metric)``."""
    if metric >= INFINITY or distance is None:
        return True
    diff = seqno_diff(seqno, distance.seqno)
    return diff > 0 or (diff == 0 and metric < distance.metric)


@dataclass(slots=True)
class _Entry:
    distance: Distance
    refreshed: float


class SourceTable:
    """Feasibility distances by route key and router-id."""

    def __init__(self, gc_time: float = 180.0) -> None:
        self._gc_time = gc_time
        self._entries: dict[tuple[RouteKey, bytes], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def distance(self, key: RouteKey, router_id: bytes) -> Distance | None:
        """The feasibility distance for a key and originator, if we ever announced it."""
        entry = self._entries.get((key, router_id))
        return entry.distance if entry is not None else None

    def feasible(self, key: RouteKey, router_id: bytes, seqno: int, metric: int) -> bool:
        """True if an update ``(seqno, metric)`` from ``router_id`` is feasible."""
        return feasible(self.distance(key, router_id), seqno, metric)

    def announced(
        self, key: RouteKey, router_id: bytes, seqno: int, metric: int, now: float
    ) -> None:
        """Record that we announce ``(seqno, metric)``: keep the better distance (3.7.3)."""
        if metric >= INFINITY:
            return
        entry = self._entries.get((key, router_id))
        if entry is None:
            self._entries[(key, router_id)] = _Entry(Distance(seqno, metric), now)
            return
        old = entry.distance
        diff = seqno_diff(seqno, old.seqno)
        if diff > 0 or (diff == 0 and metric < old.metric):
            entry.distance = Distance(seqno, metric)
        entry.refreshed = now

    def reset_if_ahead(
        self, key: RouteKey, router_id: bytes, seqno: int, metric: int, now: float
    ) -> None:
        """Set the distance back to ``(seqno, metric)`` if it holds a seqno ahead of
        ``seqno``: for a route we hear from its originator itself, whose seqno is the truth
        (a carrier may have claimed one far ahead), and which cannot loop through us. A
        distance at that seqno or older is left to :meth:`announced`, which only improves
        it."""
        entry = self._entries.get((key, router_id))
        if metric >= INFINITY or entry is None or seqno_diff(entry.distance.seqno, seqno) <= 0:
            return
        self._entries[(key, router_id)] = _Entry(Distance(seqno, metric), now)

    def expire(self, now: float) -> None:
        """Forget the distances not announced for ``gc_time`` seconds."""
        limit = now - self._gc_time
        stale = [name for name, entry in self._entries.items() if entry.refreshed <= limit]
        for name in stale:
            del self._entries[name]
