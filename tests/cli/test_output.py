"""What the command line prints (meshd/cli/output.py): ``--json`` written a column at a time
is the text ``json.dumps`` indents, and a table written at once is the one printed line by
line."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.cli import output
from meshd.cli.output import _cut, emit_json, emit_table, fit_widths, json_text, terminal_width

_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),  # NaN and the infinities too: refused alike
    st.sampled_from([0.0, -0.0, 1, 1.0, True, "", "{}", "}{", "\x00", "é", "\u2028"]),
    st.text(max_size=4),
)
_ROW_VALUE = _SCALAR | st.lists(_SCALAR, max_size=3) | st.dictionaries(st.text(max_size=2), _SCALAR)
_KEYS = st.sampled_from(["a", "b", "path", "{x}", "\x00", "é", "a b", ""]) | st.text(max_size=3)


def _dumped(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, sort_keys=True, allow_nan=False)
    except ValueError as exc:
        return f"ValueError: {exc}"


def _written(value: Any) -> str:
    try:
        return json_text(value)
    except ValueError as exc:
        return f"ValueError: {exc}"


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.dictionaries(_KEYS, _ROW_VALUE, max_size=5),
            st.sampled_from([{"a": 1, "b": 2}, {"b": 3, "a": 4}, {"a": None}, {1: 2}]),
            _SCALAR,
        ),
        max_size=6,
    )
)
def test_rows_are_written_as_json_dumps_indents_them(rows: list[Any]) -> None:
    """The same text for every list (flat objects or not, keys in any order, values equal
    but for their type or sign, non-finite floats refused with the same error)."""
    assert _written(rows) == _dumped(rows)
    assert _written([*rows, *rows]) == _dumped([*rows, *rows])


def test_the_peers_rows_are_written_a_column_at_a_time() -> None:
    """10,000 rows of meshd peers: most of them share their keys, one (this node's) has
    fewer; the columns, not json.dumps, write them."""
    row: dict[str, Any] = {
        "name": "m1",
        "addrs": ["/ip4/198.18.0.1/tcp/7100"],
        "endpoints": [],
        "connected": False,
        "last_seen": None,
        "not_after": 2_000_000_000,
        "last_handshake": 1.5,
        "path": "none",
    }
    rows = [dict(row, name=f"m{n}", last_handshake=n / 3) for n in range(10_000)]
    rows[7] = {k: v for k, v in rows[7].items() if k != "path"}
    rows[9] = dict(reversed(list(rows[9].items())))
    rows[11]["endpoints"] = ["a", "b"]
    assert output._rows_text(rows) == json.dumps(rows, indent=2, sort_keys=True)
    assert json_text(rows) == json.dumps(rows, indent=2, sort_keys=True)
    assert output._rows_text([{"a": {"b": 1}}]) is None  # json.dumps writes what nests


def test_json_is_printed_whole_or_not_at_all(capsys: pytest.CaptureFixture[str]) -> None:
    emit_json([{"a": 1}, {"a": [2]}])
    assert capsys.readouterr().out == json.dumps([{"a": 1}, {"a": [2]}], indent=2) + "\n"
    with pytest.raises(ValueError, match="Out of range float values"):
        emit_json([{"a": 1}, {"a": math.nan}])
    assert capsys.readouterr().out == ""


def _line_by_line(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """The table as it was printed before: a line at a time."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    limit = terminal_width()
    if limit is not None:
        widths = fit_widths(
            widths, [min(len(h), w) for h, w in zip(headers, widths, strict=True)], limit
        )
    print(
        "  ".join(
            _cut(h.upper(), w).ljust(w) for h, w in zip(headers, widths, strict=True)
        ).rstrip()
    )
    for row in rows:
        print("  ".join(_cut(c, w).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


_CELL = st.text(st.sampled_from("ab é-"), max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 5).flatmap(
        lambda n: st.tuples(
            st.lists(_CELL, min_size=n, max_size=n),
            st.lists(st.lists(_CELL, min_size=n, max_size=n), max_size=6),
        )
    ),
    st.sampled_from(["", "20", "80"]),
)
def test_a_table_written_at_once_is_the_one_printed_line_by_line(
    table: tuple[list[str], list[list[str]]], columns: str
) -> None:
    headers, rows = table
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", columns)
        printed = _captured(_line_by_line, headers, rows)
        written = _captured(emit_table, headers, rows)
    assert written == printed


def test_a_row_of_another_width_is_refused() -> None:
    with pytest.raises(ValueError, match="zip"):
        _captured(emit_table, ["a", "b"], [["1", "2"], ["3"]])
    with pytest.raises(ValueError, match="zip"):
        _captured(emit_table, ["a", "b"], [["1", "2", "3"]])


def _captured(emit: Any, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        emit(headers, rows)
    return out.getvalue()
