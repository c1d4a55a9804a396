"""Answer rows read field by field (meshd/control/rows.py) and written by each type's encoder
(meshd/control/typed_json.py): the same values, and the same refusals, as the row-by-row reader
and the value-by-value writer they replace; and a control line's nesting checked level by
level as the recursive check did."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.control import commands as c
from meshd.control import typed_json
from meshd.control.protocol import MAX_NESTING, _check_depth
from meshd.control.rows import read_rows
from meshd.control.typed_json import decode_answer, to_json
from meshd.control.wire import Wire, fields
from meshd.errors import DecodeError
from tests.control.test_commands import ROW

# Values of every JSON type, and of each type a PeerRow field takes.
_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.lists(st.text(max_size=6), max_size=3),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_NAMES = [f.name for f in fields(c.PeerRow) if f.name != "routed"]


@st.composite
def _row(draw: st.DrawFn) -> Any:
    """A PeerRow as the daemon sends it, some of its values replaced, dropped or added to."""
    if draw(st.integers(0, 30)) == 0:
        return draw(st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2)))
    row: dict[str, Any] = dict(ROW)
    for name in draw(st.lists(st.sampled_from(_NAMES), max_size=3)):
        row[name] = draw(_VALUE)
    for name in draw(st.lists(st.sampled_from(_NAMES), max_size=1)):
        row.pop(name, None)
    if draw(st.booleans()):
        row["from_a_newer_daemon"] = draw(_VALUE)
    return row


def _row_by_row(rows: list[Any]) -> tuple[Any, ...]:
    build = typed_json._build
    return tuple(build(c.PeerRow, row, strict=False) for row in rows)


@settings(max_examples=400, deadline=None)
@given(st.lists(_row(), max_size=6))
def test_rows_read_field_by_field_are_what_row_by_row_reads(rows: list[Any]) -> None:
    try:
        expected: Any = _row_by_row(rows)
    except DecodeError as exc:
        expected = str(exc)
    read = read_rows(c.PeerRow)
    assert read is not None
    bulk = read(rows)
    if bulk is not None:  # it takes only what the row-by-row reader takes, and reads it alike
        assert bulk == expected
        assert [vars(r) for r in bulk] == [vars(r) for r in expected]
    try:
        answer: Any = decode_answer(c.PeersAnswer, rows).rows
    except DecodeError as exc:
        answer = str(exc)  # the same error, at the same row and field
    assert answer == expected


def test_well_formed_rows_are_read_without_a_check_a_row() -> None:
    # 10,000 rows of `meshd peers`, in the daemon (its own answer) and the command line.
    rows = [dict(ROW, name=f"m{n}", route="direct", metric=None) for n in range(10_000)]
    typed_json._build(c.PeerRow, rows[0], strict=False)  # the row-by-row builder made
    calls = 0
    by_row = typed_json._BUILDERS[c.PeerRow]

    def counted(value: Any, strict: bool) -> Any:
        nonlocal calls
        calls += 1
        return by_row(value, strict)

    typed_json._BUILDERS[c.PeerRow] = counted
    try:
        answer = decode_answer(c.PeersAnswer, rows)
        assert calls == 0
        assert answer.rows[9_999].name == "m9999"
        assert answer.rows[5].routed
        with pytest.raises(DecodeError, match="rx_bytes: str is not int"):
            decode_answer(c.PeersAnswer, [*rows, dict(ROW, rx_bytes="0")])
    finally:
        typed_json._BUILDERS[c.PeerRow] = by_row


def _value_by_value(value: Any) -> Any:
    """The writer every answer had before each type's encoder: fields looked up per value."""
    if isinstance(value, Wire):
        only = c.LISTS.get(type(value))
        if only is not None:
            return _value_by_value(getattr(value, only))
        out: dict[str, Any] = {}
        for f in fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("local"):
                continue
            shown = f.name in ("route", "metric") and getattr(value, "routed", False)
            if f.metadata.get("omit_if_none") and item is None and not shown:
                continue
            out[f.name] = _value_by_value(item)
        return out
    if isinstance(value, tuple | list):
        return [_value_by_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _value_by_value(v) for k, v in value.items()}
    return value


@settings(max_examples=300, deadline=None)
@given(st.lists(_row(), max_size=4))
def test_each_types_encoder_writes_what_the_value_by_value_writer_wrote(rows: list[Any]) -> None:
    try:
        answer = decode_answer(c.PeersAnswer, rows)
    except DecodeError:
        return
    assert to_json(answer) == _value_by_value(answer)
    nested = c.NetcheckAnswer(
        None, ("a",), True, (c.SeenRow("e", 2, False),), (), "cone", "", None, (), 3
    )
    anything: dict[Any, Any] = {"rows": answer, "pairs": [(1, "x")], 7: {"z": None}}
    routes = c.RoutesAnswer("r", ({"kept": answer},), (anything,), counters={"n": 1})
    for value in (nested, routes):
        assert to_json(value) == _value_by_value(value)


_JSON = st.recursive(
    st.none() | st.integers() | st.text(max_size=2),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=40,
)


def _deep(depth: int, leaf: Any) -> Any:
    for n in range(depth):
        leaf = [leaf] if n % 2 else {"k": leaf}
    return leaf


def _recursive_check(value: Any, depth: int) -> None:
    """The check a value had before: every value visited, one call each."""
    if depth > MAX_NESTING:
        raise DecodeError("nested too deeply")
    if isinstance(value, dict):
        for item in value.values():
            _recursive_check(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _recursive_check(item, depth + 1)


@settings(max_examples=300, deadline=None)
@given(_JSON, st.integers(0, MAX_NESTING + 2), st.sampled_from([1, [], {}, [1], {"a": {}}]))
def test_nesting_is_refused_level_by_level_as_value_by_value(
    value: Any, depth: int, leaf: Any
) -> None:
    for candidate in (value, _deep(depth, leaf), [value, _deep(depth, leaf)]):
        try:
            _recursive_check(candidate, 0)
            refused = False
        except DecodeError:
            refused = True
        if refused:
            with pytest.raises(DecodeError, match="nested too deeply"):
                _check_depth(candidate, 0, "response")
        else:
            _check_depth(candidate, 0, "response")


@st.composite
def _typed_row(draw: st.DrawFn) -> c.PeerRow:
    """A PeerRow as the daemon makes it, or with values only a caller in process gives it
    (an address for a text, a list for a tuple, a route Babel filled with None)."""
    row: dict[str, Any] = dict(ROW)
    for name in draw(st.lists(st.sampled_from(_NAMES), max_size=4)):
        row[name] = draw(
            _VALUE | st.sampled_from([None, ipaddress.IPv6Address("fd00::1"), ("a", None), [1.5]])
        )
    return c.PeerRow(**row, routed=draw(st.booleans()))


@settings(max_examples=300, deadline=None)
@given(st.lists(_typed_row(), max_size=6))
def test_rows_written_a_field_at_a_time_are_what_each_row_writes(rows: list[c.PeerRow]) -> None:
    """A list of rows of one type (meshd peers' 10,000) is written a column at a time: the
    same objects, their keys in the same order, the same values, of the same types."""
    expected = [to_json(row) for row in rows]  # each row by its type's encoder
    written = to_json(tuple(rows))
    assert written == expected
    assert [list(row.items()) for row in written] == [list(row.items()) for row in expected]
    assert [[type(value) for value in row.values()] for row in written] == [
        [type(value) for value in row.values()] for row in expected
    ]
    assert to_json(c.PeersAnswer(tuple(rows))) == expected
