"""Which WireGuard key each member holds now: its newest rotation, else its credential's.

A member replaces its WireGuard key with a :class:`~meshd.records.WgRotation` signed by its
node key. Rotations of one member are ordered by ``(counter, record id)``, last writer wins,
and only the newest is kept in the record set: an older one, replayed or late, is refused
(``stale-rotation``), so a key once replaced is never programmed again, whatever order the
records come in. A rotation is in the set only while its member stands (like an
announcement): a revoked member's rotation is dropped with it, and refused after it.
"""

from __future__ import annotations

from meshd.records import WgRotation


class WgKeys:
    """The newest rotation of each member, by node key (pure)."""

    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: dict[bytes, tuple[int, bytes, WgRotation]] = {}

    def current(self, node: bytes) -> WgRotation | None:
        entry = self._current.get(node)
        return entry[2] if entry is not None else None

    def newer(self, rotation: WgRotation, rid: bytes) -> bool:
        """Whether ``rotation`` (with record id ``rid``) orders after the one kept."""
        entry = self._current.get(rotation.node_key)
        return entry is None or (entry[0], entry[1]) < (rotation.counter, rid)

    def put(self, rotation: WgRotation, rid: bytes) -> bytes | None:
        """Keep ``rotation`` as its member's newest; returns the record id it replaces."""
        entry = self._current.get(rotation.node_key)
        self._current[rotation.node_key] = (rotation.counter, rid, rotation)
        return entry[1] if entry is not None else None

    def pop(self, node: bytes) -> tuple[bytes, WgRotation] | None:
        """Forget a member's rotation (it no longer stands): its record id and the rotation."""
        entry = self._current.pop(node, None)
        return (entry[1], entry[2]) if entry is not None else None

    def key_of(self, node: bytes, enrolled: bytes) -> tuple[bytes, int, int]:
        """The member's WireGuard key, its rotation counter (0: the enrolled key) and when
        the rotation was issued (0 for the enrolled key)."""
        entry = self._current.get(node)
        if entry is None:
            return enrolled, 0, 0
        rotation = entry[2]
        return rotation.wg_key, rotation.counter, rotation.issued_at
