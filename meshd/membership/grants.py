"""What each admitted member of a membership snapshot may route, by node key."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from meshd.addressing import Prefix
from meshd.trust.keys import NodeKey


class GrantTable(Mapping[NodeKey, tuple[Prefix, ...]]):
    """Node key -> the prefixes the member may route (``Membership.grants``), for the
    members of one snapshot, held as two columns in node key order: the keys (the members'
    own objects) and, beside each, what it is granted, a member granted its /128 alone
    (most) the interned /128 itself (its tuple of one made when asked, not kept a member:
    48 bytes). 16 bytes a member, where a table of them cost ~29 (its entry and its share
    of the index); a key is looked up by bisection (~0.5 us a `get` at 10,000, a table's
    ~0.25). Iterated in key order."""

    __slots__ = ("_keys", "_values")

    def __init__(self, grants: Iterable[tuple[NodeKey, tuple[Prefix, ...]]] = ()) -> None:
        # Of a key given twice, the last one's (as a table would keep it); each tuple of one
        # let go as it comes (not all held until the columns are made).
        table: dict[NodeKey, Prefix | tuple[Prefix, ...]] = {
            key: prefixes[0] if len(prefixes) == 1 else prefixes for key, prefixes in grants
        }
        keys = sorted(table)
        self._keys: tuple[NodeKey, ...] = tuple(keys)
        self._values: tuple[Prefix | tuple[Prefix, ...], ...] = tuple(map(table.__getitem__, keys))

    def _find(self, key: object) -> Prefix | tuple[Prefix, ...] | None:
        if type(key) is not bytes:
            if not isinstance(key, bytes):
                return None
            key = bytes(key)
        keys = self._keys
        i = bisect_left(keys, key)
        return self._values[i] if i < len(keys) and keys[i] == key else None

    def __getitem__(self, key: NodeKey) -> tuple[Prefix, ...]:
        found = self._find(key)
        if found is None:
            raise KeyError(key)
        return found if found.__class__ is tuple else (found,)  # type: ignore[return-value]

    def get(self, key: NodeKey, default: object = None) -> Any:
        found = self._find(key)
        if found is None:
            return default
        return found if found.__class__ is tuple else (found,)

    def __contains__(self, key: object) -> bool:
        return self._find(key) is not None

    def __iter__(self) -> Iterator[NodeKey]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GrantTable):
            return self._keys == other._keys and self._values == other._values
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GrantTable({dict(self)!r})"
