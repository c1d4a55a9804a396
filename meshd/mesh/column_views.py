"""The ``values()`` and ``items()`` views of a mapping held as one tuple of its values in key
order (pure): shared by the tables kept that way (:mod:`meshd.mesh.desired`'s peers and
members by WireGuard key, :mod:`meshd.daemon.babel_peers`'s members by /128), whose values
are not copied into a view."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, ValuesView
from typing import Any, Protocol, TypeVar

V = TypeVar("V")
V_co = TypeVar("V_co", covariant=True)


class Column(Protocol[V_co]):
    """A mapping of this shape: its values a tuple in the order its keys iterate."""

    @property
    def _values(self) -> tuple[V_co, ...]: ...

    def __iter__(self) -> Iterator[Any]: ...


class ColumnValues(ValuesView[V]):
    _mapping: Column[V]

    def __iter__(self) -> Iterator[V]:
        return iter(self._mapping._values)


class ColumnItems(ItemsView[Any, V]):
    _mapping: Column[V]

    def __iter__(self) -> Iterator[tuple[Any, V]]:
        mapping = self._mapping
        return zip(iter(mapping), mapping._values, strict=True)
