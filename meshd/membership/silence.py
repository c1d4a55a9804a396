"""When each member was last heard from, and this node's own silence (pure: ``now`` is given).

A member silent for longer than the announcement TTL is ``expired`` (meshd.membership.standing
judges it from what this module says). Silence does not count while no member reaches this
node (:meth:`Silence.cut_off`): then the silence is ours, and expiring everyone would also cut
the node's own way back. Once a member reaches us again (:meth:`Silence.reconnected`), the
time we were cut off is left out of every member's silence.
"""

from __future__ import annotations


class Silence:
    """Last-heard times by member key, and since when this node is cut off (if it is)."""

    def __init__(self) -> None:
        self._last_seen: dict[bytes, int] = {}
        # Since when no member reaches us (cut_off): silence stops counting until we are back.
        self._cut_off_since: int | None = None

    def credential(self, node: bytes, now: int) -> None:
        """A credential of ``node`` joined the set: its silence counts from ``now`` unless it
        was heard from before."""
        self._last_seen.setdefault(node, now)

    def heard(self, node: bytes, now: int) -> None:
        """``node`` announced at ``now`` (a later time is never moved back)."""
        last = self._last_seen.get(node)
        if last is None or now > last:
            self._last_seen[node] = now

    def last(self, node: bytes) -> int | None:
        """When ``node`` was last heard from, as shown in its view."""
        return self._last_seen.get(node)

    def for_judging(self, node: bytes, now: int) -> int | None:
        """When ``node`` was last heard from, with the time we are cut off left out."""
        last = self._last_seen.get(node)
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
        for node, last in self._last_seen.items():
            self._last_seen[node] = min(now, last + gap)
