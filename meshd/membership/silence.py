"""When each member was last heard from, and this node's own silence (pure: ``now`` is given).

A member silent for longer than the announcement TTL is ``expired`` (meshd.membership.standing
judges it from what this module says).

When a member was last heard from is the date of the latest record it took part in, bounded
by when we got it (:func:`heard_at`): an announcement's ``issued_at``, a credential's
``admitted_at``, plus the clock skew we allow (a member whose clock is behind ours by up to
that much loses nothing), never after its arrival. So a node that restarts, or joins, and
takes a dead member's last announcement from its store or from anti-entropy expires it a TTL
after the member last spoke, as every other node does, not a TTL after the record reached it
(docs/threat-model.md §3.23). What a node sees of a member itself (a connection, a
handshake: :meth:`Silence.heard`) is on its own clock.

Silence does not count while no member reaches this node (:meth:`Silence.cut_off`): then the
silence is ours, and expiring everyone would also cut the node's own way back. Once a member
reaches us again (:meth:`Silence.reconnected`), the time we were cut off is left out of every
member's silence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar


class Heard:
    """When a member was last heard from (None: not yet): the first slot of its entry in the
    membership tables (meshd.membership.tables.MemberEntry), which keeps what else is known
    of the member in the same object, so one table by node key holds it all."""

    __slots__ = ("last_seen",)

    def __init__(self) -> None:
        self.last_seen: int | None = None


E = TypeVar("E", bound=Heard)


def heard_at(issued_at: int, arrival: int, clock_skew: int) -> int:
    """When a record dated ``issued_at`` by its member, received at ``arrival``, says the
    member was last heard from: its date with ``clock_skew`` of slack, never after arrival."""
    return min(arrival, issued_at + clock_skew)


class Silence(Generic[E]):
    """Last-heard times by member key, and since when this node is cut off (if it is).

    The times are kept in the members' entries (``entries``, shared with the tables that own
    it); ``new`` makes the entry of a member heard from for the first time."""

    def __init__(self, entries: dict[bytes, E], new: Callable[[], E]) -> None:
        self._entries = entries
        self._new = new
        # Since when no member reaches us (cut_off): silence stops counting until we are back.
        self._cut_off_since: int | None = None

    def credential(self, node: bytes, admitted_at: int, now: int, clock_skew: int) -> None:
        """A credential of ``node`` (admitted at ``admitted_at``) joined the set at ``now``:
        the member took part in it (its enrollment, its hand-over), so it was heard from then
        (:func:`heard_at`). The latest of its credentials and announcements counts, whatever
        the order they arrive in."""
        self.heard(node, heard_at(admitted_at, now, clock_skew))

    def announced(self, node: bytes, issued_at: int, now: int, clock_skew: int) -> None:
        """An announcement of ``node`` dated ``issued_at`` arrived at ``now``: heard from
        then (:func:`heard_at`, and :meth:`heard`, inline: this runs once per announcement
        on the ingest hot path)."""
        at = issued_at + clock_skew
        if at > now:
            at = now
        entry = self._entries.get(node)
        if entry is None:
            entry = self._entries[node] = self._new()
        last = entry.last_seen
        if last is None or at > last:
            entry.last_seen = at

    def heard(self, node: bytes, at: int) -> None:
        """``node`` was heard from at ``at`` (a later time is never moved back)."""
        entry = self._entries.get(node)
        if entry is None:
            entry = self._entries[node] = self._new()
        last = entry.last_seen
        if last is None or at > last:
            entry.last_seen = at

    def last(self, node: bytes) -> int | None:
        """When ``node`` was last heard from, as shown in its view."""
        entry = self._entries.get(node)
        return None if entry is None else entry.last_seen

    def for_judging(self, node: bytes, now: int) -> int | None:
        """When ``node`` was last heard from, with the time we are cut off left out."""
        entry = self._entries.get(node)
        last = None if entry is None else entry.last_seen
        if last is not None and self._cut_off_since is not None:
            last += max(0, now - self._cut_off_since)  # our silence is not theirs
        return last

    def cut_off(self, now: int) -> None:
        """No member reaches this node since ``now`` (the first call of a cut-off counts)."""
        if self._cut_off_since is None:
            self._cut_off_since = now

    def reconnected(self, now: int) -> None:
        """A member reaches us again: silence counts from here on, with the time we were cut
        off left out of every member's."""
        since, self._cut_off_since = self._cut_off_since, None
        if since is None:
            return
        gap = max(0, now - since)
        for entry in self._entries.values():
            if entry.last_seen is not None:
                entry.last_seen = min(now, entry.last_seen + gap)
