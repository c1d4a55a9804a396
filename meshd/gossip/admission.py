"""Upgraded inbound connections of peers that are not members, bounded per source (pure).

A peer that completes Noise with a fresh key is a new peer id: keyed by peer id, nothing
bounds how many such peers one address brings. What a remote cannot choose is its source
(:func:`~meshd.gossip.libp2p_workarounds.inbound.source_of`: its IPv4 address or its IPv6
/64), so :class:`StrangerBudget` counts the established inbound connections of non-members
per source and in total, and the graces (docs/daemon.md, "Connections") given to fresh keys
per source. Members, authenticated by their key against the membership, are never counted:
the caller passes the check (``is_member``), and an entry whose peer has become a member
since it was counted is dropped before anyone is shed for it.

Pure: no clock, no I/O; times are arguments.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

__all__ = ["StrangerBudget", "Verdict"]

C = TypeVar("C", bound=Hashable)

_MAX_GRACE_SOURCES: Final = 4096


@dataclass(frozen=True, slots=True)
class Verdict(Generic[C]):
    """:meth:`StrangerBudget.admit`'s answer: the connection to close now, if any."""

    close: C | None
    why: str = ""
    """``"source"`` (the new connection: its source is at its limit), ``"total"`` (the new
    connection: everyone is at the limit and its source is among the heaviest) or ``"room"``
    (the heaviest source's oldest connection, closed to make room)."""


@dataclass(slots=True)
class _Entry:
    peer: str
    source: str


class StrangerBudget(Generic[C]):
    """Established inbound connections of non-members, per source and in total; and the
    graces given to fresh peer ids, per source.

    ``per_source`` connections from one source at most: the newest one past it is closed
    at once. ``total`` in all: past it, a source that holds fewer than the heaviest one (by
    two or more, counting the new connection) still gets in, and the heaviest source's
    oldest connection is closed to make room; otherwise the new one is closed. So one
    source never holds more than ``per_source`` slots, and filling the total takes
    ``total`` sources with one connection each.

    A source is given at most ``graces_per_source`` graces per ``grace_window`` seconds
    (:meth:`grant_grace`); past it, a fresh key from that source gets none (a peer that had
    one reconnecting within the window takes no more).
    """

    def __init__(
        self,
        per_source: int = 8,
        total: int = 128,
        *,
        graces_per_source: int = 8,
        grace_window: float = 30.0,
        max_grace_sources: int = _MAX_GRACE_SOURCES,
    ) -> None:
        if per_source < 1 or total < per_source:
            raise ValueError("need 1 <= per_source <= total")
        if graces_per_source < 1 or grace_window <= 0:
            raise ValueError("need graces_per_source >= 1 and grace_window > 0")
        self.per_source = per_source
        self.total = total
        self.graces_per_source = graces_per_source
        self.grace_window = grace_window
        self.max_grace_sources = max_grace_sources
        self._conns: dict[C, _Entry] = {}
        self._sources: dict[str, dict[C, None]] = {}  # connections per source, oldest first
        self._graces: dict[str, deque[tuple[float, str]]] = {}  # (when, peer) per source
        self.shed = 0
        """New connections closed because their source, or everyone, was at the limit."""
        self.evicted = 0
        """Connections closed to make room for a source that held fewer."""
        self.graces_refused = 0
        """Fresh peer ids given no grace because their source had had its share."""

    def __len__(self) -> int:
        return len(self._conns)

    def held_by(self, source: str) -> int:
        return len(self._sources.get(source, ()))

    def admit(
        self, conn: C, peer: str, source: str, is_member: Callable[[str], bool]
    ) -> Verdict[C]:
        """A non-member's inbound connection ``conn`` from ``source`` is up: count it, or
        say which connection to close (the new one, or one handed over to make room)."""
        if conn in self._conns:
            return Verdict(None)
        self._drop_members(self._sources.get(source, {}), is_member)
        held = self.held_by(source)
        if held >= self.per_source:
            self.shed += 1
            return Verdict(conn, "source")
        evicted: C | None = None
        if len(self._conns) >= self.total:
            self._drop_members(dict.fromkeys(self._conns), is_member)
        if len(self._conns) >= self.total:
            heaviest = max(self._sources, key=self.held_by)
            if self.held_by(heaviest) <= held + 1:
                self.shed += 1
                return Verdict(conn, "total")
            evicted = next(iter(self._sources[heaviest]))
            self.release(evicted)
            self.evicted += 1
        self._conns[conn] = _Entry(peer, source)
        self._sources.setdefault(source, {})[conn] = None
        return Verdict(evicted, "room" if evicted is not None else "")

    def release(self, conn: C) -> None:
        """``conn`` closed (or its peer is a member now): its slot is free."""
        entry = self._conns.pop(conn, None)
        if entry is None:
            return
        held = self._sources[entry.source]
        del held[conn]
        if not held:
            del self._sources[entry.source]

    def release_peer(self, peer: str) -> None:
        """``peer`` became a member: none of its connections count any more."""
        for conn in [c for c, e in self._conns.items() if e.peer == peer]:
            self.release(conn)

    def _drop_members(self, conns: dict[C, None], is_member: Callable[[str], bool]) -> None:
        members = {e.peer for c in conns if (e := self._conns.get(c)) is not None}
        for peer in [p for p in members if is_member(p)]:
            self.release_peer(peer)

    # -- graces --------------------------------------------------------------------------------

    def grant_grace(self, source: str, peer: str, now: float) -> bool:
        """``peer``, connected from ``source``, asks for a grace: False past the source's
        share. A peer given one from this source within the window (a reconnect) takes no
        more of the share."""
        given = self._graces.get(source)
        if given is None:
            if len(self._graces) >= self.max_grace_sources:
                self._prune_graces(now)
            given = self._graces[source] = deque()
        while given and now - given[0][0] >= self.grace_window:
            given.popleft()
        if any(p == peer for _, p in given):
            return True
        if len(given) >= self.graces_per_source:
            self.graces_refused += 1
            return False
        given.append((now, peer))
        return True

    def _prune_graces(self, now: float) -> None:
        stale = [s for s, d in self._graces.items() if not d or now - d[-1][0] >= self.grace_window]
        for source in stale or list(self._graces)[: max(1, len(self._graces) // 8)]:
            del self._graces[source]
