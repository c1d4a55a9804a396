"""Tables of key -> keys where most keys have one (pure): an invite's members, the members
that depend on a key, what a sponsor countersigned.

``meshd invite`` makes invites of one use, so in a network joined that way each invite has
one member and each invite key one dependent, and a dict of one entry takes ~230 bytes: two
such tables were ~520 bytes a member. :class:`KeySets` holds a key's only member as that
member itself, and its members as a dict's keys (an ordered set: ~43 bytes a key in one of
a hundred, where a set takes ~82 (it grows fourfold), ~29 in one of 10,000, a set ~52)
from the second on. The order is the order of adding.
"""

from __future__ import annotations

from collections.abc import Iterator

Keys = dict[bytes, None]


class KeySets:
    """key -> an ordered set of keys, a key with one held as that key alone."""

    __slots__ = ("_table",)

    def __init__(self) -> None:
        self._table: dict[bytes, bytes | Keys] = {}

    def add(self, key: bytes, member: bytes) -> None:
        """Add ``member`` to ``key``'s (kept where it was if there)."""
        table = self._table
        held = table.get(key)
        if held is None:
            table[key] = member
        elif isinstance(held, dict):
            held[member] = None
        elif held != member:
            table[key] = {held: None, member: None}

    def discard(self, key: bytes, member: bytes) -> None:
        """Take ``member`` out of ``key``'s, if there (a key left with none is forgotten)."""
        table = self._table
        held = table.get(key)
        if held is None:
            return
        if isinstance(held, dict):
            held.pop(member, None)
            if len(held) == 1:
                table[key] = next(iter(held))
            elif not held:
                del table[key]
        elif held == member:
            del table[key]

    def get(self, key: bytes) -> tuple[bytes, ...] | Keys:
        """``key``'s members, in the order they were added (empty: none)."""
        held = self._table.get(key)
        if held is None:
            return ()
        if isinstance(held, dict):
            return held
        return (held,)

    def count(self, key: bytes) -> int:
        held = self._table.get(key)
        if held is None:
            return 0
        return len(held) if isinstance(held, dict) else 1

    def __iter__(self) -> Iterator[bytes]:
        """The keys with members."""
        return iter(self._table)

    def __contains__(self, key: object) -> bool:
        return key in self._table

    def __len__(self) -> int:
        return len(self._table)
