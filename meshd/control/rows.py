"""A list of answer rows read field by field, not row by row (pure).

``meshd peers`` reads 10,000 rows at once, in the daemon (the answer it built, checked before
it is sent) and in the command line (the daemon's untrusted answer). :func:`read_rows` gives,
for a :class:`~meshd.control.wire.Wire` type whose fields are all scalars (``str``, ``int``,
``float``, ``bool``, None and their unions) or tuples of scalars, a reader of a list of JSON
objects into a tuple of that type. It checks each field over every row at once: the set of the
types of its values, found by loops that run in C (``map``, ``set``), not a check called for
each value; and it makes each row without ``Wire.__init__``'s handling of its arguments.

It accepts only what the row-by-row reader of :mod:`meshd.control.typed_json` accepts, and
gives the same values; for anything else (a value of another type, a missing key, a row that is
not an object) it answers None, and that reader reads the list again, to raise its own
DecodeError at the first wrong value. tests/control/test_rows.py compares the two.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Sequence
from itertools import chain, repeat
from typing import Any, Union

from meshd.control.commands import PeerRow
from meshd.control.wire import MISSING, Wire, fields, made

Reader = Callable[[Sequence[Any]], tuple[Any, ...] | None]
"""A list of rows -> the tuple of typed rows, or None: read it row by row."""

_MissingType = type(MISSING)
_SCALARS: dict[Any, frozenset[type]] = {
    str: frozenset({str}),
    bool: frozenset({bool}),
    int: frozenset({int}),  # not bool: the row-by-row check refuses True for an int
    float: frozenset({int, float}),
    type(None): frozenset({type(None)}),
}
_LISTS = frozenset({list, tuple})
_READERS: dict[type[Any], Reader | None] = {}


class _Unsupported(Exception):
    """A field this reader does not read: the type is read row by row."""


def read_rows(cls: type[Any]) -> Reader | None:
    """The reader of a list of ``cls`` rows (made once a type), or None if ``cls`` has a
    field that is neither a scalar nor a tuple of scalars."""
    if cls not in _READERS:
        try:
            _READERS[cls] = _reader(cls)
        except _Unsupported:
            _READERS[cls] = None
    return _READERS[cls]


def _scalar(hint: Any) -> frozenset[type]:
    """The exact types of the JSON values a scalar hint takes as they are."""
    if hint in _SCALARS:
        return _SCALARS[hint]
    if typing.get_origin(hint) in (Union, types.UnionType):
        return frozenset().union(*(_scalar(option) for option in typing.get_args(hint)))
    raise _Unsupported(hint)


def _reader(cls: type[Wire]) -> Reader:
    hints = typing.get_type_hints(cls)
    plan: list[tuple[str, bool, Any, frozenset[type] | None, frozenset[type] | None]] = []
    for f in fields(cls):
        if f.metadata.get("local"):
            continue
        hint = hints[f.name]
        allowed: frozenset[type] | None
        items: frozenset[type] | None = None
        if hint is Any:
            allowed = None
        elif typing.get_origin(hint) is tuple:
            allowed, items = _LISTS, _scalar(typing.get_args(hint)[0])
        else:
            allowed = _scalar(hint)
        plan.append((f.name, f.default is MISSING, f.default, allowed, items))
    routed = cls is PeerRow  # route and metric on the wire: Babel filled them

    def read(rows: Sequence[Any]) -> tuple[Any, ...] | None:
        if not set(map(type, rows)) <= {dict}:
            return None
        count = len(rows)
        columns: dict[str, list[Any]] = {}
        for name, required, default, allowed, items in plan:
            column = list(map(dict.get, rows, repeat(name, count), repeat(MISSING, count)))
            found = set(map(type, column))
            if _MissingType in found:
                if required:
                    return None
                found.discard(_MissingType)
                column = [default if value is MISSING else value for value in column]
            if allowed is not None and not found <= allowed:
                return None
            if items is not None:
                if not set(map(type, chain.from_iterable(column))) <= items:
                    return None
                column = list(map(tuple, column))
            columns[name] = column
        if routed:
            columns["routed"] = [("route" in row or "metric" in row) for row in rows]
        ordered = [columns.get(f.name, [f.default] * count) for f in fields(cls)]
        return tuple(made(cls, zip(*ordered, strict=True) if ordered else [()] * count))

    return read
