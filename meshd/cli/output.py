"""Printing results: JSON for programs, aligned text for people."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Mapping, Sequence
from itertools import chain, compress, islice, repeat
from operator import not_
from typing import Any


def b64(data: bytes) -> str:
    """Standard base64, the way `wg` prints keys."""
    return base64.b64encode(data).decode("ascii")


def when(ts: int | None) -> str:
    if ts is None:
        return "-"
    import datetime  # here: the daemon-asking commands that print no date do not import it

    try:
        moment = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return "never"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def emit_json(value: Any) -> None:
    """Print ``value`` as one JSON document, or nothing: the whole text is made before any of
    it is written, so a value that is not JSON (NaN and the infinities included) fails the
    command with its one line and leaves stdout empty, never half a document."""
    sys.stdout.write(json_text(value) + "\n")
    sys.stdout.flush()


def json_text(value: Any) -> str:
    """``json.dumps(value, indent=2, sort_keys=True, allow_nan=False)``, the same text.

    A list of objects whose values are scalars or lists of scalars (``meshd peers --json``:
    10,000 rows of 26 keys) is written a column at a time (:func:`_rows_text`): the standard
    library's encoder runs in Python whenever it indents, four times slower than its C
    encoder, which writes each column here. Anything else, and anything the columns do not
    take (a value of another type, a key that is not a string, a float that is not finite),
    is written by ``json.dumps`` itself, which raises its own error for what is not JSON."""
    if type(value) is list and value:
        text = _rows_text(value)
        if text is not None:
            return text
    return json.dumps(value, indent=2, sort_keys=True, allow_nan=False)


_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
_SEPARATOR = "\x00"
"""Between the values of one column: the C encoder (``ensure_ascii``) escapes every control
character inside a string, so this one is never part of a value's text."""


def _rows_text(rows: list[Any]) -> str | None:
    """The indented text of a list of flat objects (see :func:`json_text`), or None."""
    if set(map(type, rows)) != {dict}:
        return None
    texts = _rows_texts(rows)
    return None if texts is None else "[\n  " + ",\n  ".join(texts) + "\n]"


def _rows_texts(rows: list[dict[Any, Any]]) -> list[str] | None:
    """Each row's text: the rows with the first one's keys (in its order) a column at a time,
    the others likewise, by their own first one's."""
    keys = tuple(rows[0])
    same = list(map(keys.__eq__, map(tuple, rows)))
    if all(same):
        return _group_text(keys, rows)
    ours = _group_text(keys, list(compress(rows, same)))
    others = _rows_texts(list(compress(rows, map(not_, same))))
    if ours is None or others is None:
        return None
    texts: list[str] = []
    add = texts.append
    mine, theirs = iter(ours), iter(others)
    for one in same:
        add(next(mine) if one else next(theirs))
    return texts


def _group_text(keys: tuple[Any, ...], rows: list[dict[Any, Any]]) -> list[str] | None:
    """Each row's text, all of them with the keys ``keys``, or None.

    The rows' texts are pieces of one list, each column's values laid into it by a slice
    (``pieces[k::stride]``), between them literal pieces: each key's text and, where every
    row has the same value (None, a boolean, an integer or a string), that value's."""
    count = len(rows)
    if not keys:
        return ["{}"] * count
    if set(map(type, keys)) != {str}:
        return None
    literal = "{\n    "
    literals: list[str] = []
    columns: list[list[str]] = []
    for n, key in enumerate(sorted(keys)):
        literal += (",\n    " if n else "") + json.dumps(key) + ": "
        values = list(map(dict.__getitem__, rows, repeat(key)))
        kinds = set(map(type, values))
        encoded: list[str] | None
        if len(kinds) == 1 and kinds <= _SAME_WHEN_EQUAL and len(set(values)) == 1:
            encoded = _scalars_text(values[:1])
            if encoded is None:
                return None
            literal += encoded[0]
            continue
        if kinds <= _SCALAR_TYPES:
            encoded = _scalars_text(values)
        elif kinds == {list}:
            encoded = _lists_text(values)
        else:
            return None
        if encoded is None:
            return None
        literals.append(literal)
        columns.append(encoded)
        literal = ""
    literals.append(literal + "\n  }")
    if not columns:
        return [literals[0]] * count
    stride = 2 * len(columns) + 1
    pieces = [""] * (stride * count)
    for k, text in enumerate(literals):
        pieces[2 * k :: stride] = [text] * count
    for k, column in enumerate(columns):
        pieces[2 * k + 1 :: stride] = column
    # Each row's last piece ends with the separator, split at once (never inside a value).
    pieces[stride - 1 :: stride] = [literals[-1] + _SEPARATOR] * count
    return "".join(pieces).split(_SEPARATOR)[:count]


_SAME_WHEN_EQUAL = frozenset({str, int, bool, type(None)})
"""The types whose equal values have the same JSON text (not floats: 0.0 == -0.0)."""


def _scalars_text(values: list[Any]) -> list[str] | None:
    """Each scalar's JSON text (the C encoder's, as ``json.dumps`` writes it), or None for
    a float that is not finite."""
    try:
        text = json.dumps(values, separators=(_SEPARATOR, ":"), allow_nan=False)
    except ValueError:
        return None
    encoded = text[1:-1].split(_SEPARATOR) if values else []
    return encoded if len(encoded) == len(values) else None


def _lists_text(values: list[list[Any]]) -> list[str] | None:
    """Each list of scalars' indented text, as a value of a row's key, or None."""
    items = list(chain.from_iterable(values))
    if not set(map(type, items)) <= _SCALAR_TYPES:
        return None
    encoded = _scalars_text(items)
    if encoded is None:
        return None
    texts: list[str] = []
    add = texts.append
    each = iter(encoded)
    for count in map(len, values):
        if count == 1:
            add("[\n      " + next(each) + "\n    ]")
        elif count:
            add("[\n      " + ",\n      ".join(islice(each, count)) + "\n    ]")
        else:
            add("[]")
    return texts


def emit_fields(fields: Mapping[str, Any]) -> None:
    width = max((len(k) for k in fields), default=0)
    for key, value in fields.items():
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value) or "-"
        print(f"{key:<{width}}  {value}")


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Aligned columns; on a terminal (or with COLUMNS set) the widest columns are cut, with
    an ellipsis, so that every line fits its width. JSON output is never cut. The lines are
    written at once (10,000 rows of ``meshd peers``: one write, not one per line)."""
    widths = [len(h) for h in headers]
    if rows:
        columns = zip(*rows, strict=True)
        widths = [max(w, *map(len, c)) for w, c in zip(widths, columns, strict=True)]
    limit = terminal_width()
    if limit is not None:
        widths = fit_widths(
            widths, [min(len(h), w) for h, w in zip(headers, widths, strict=True)], limit
        )
    lines = ["  ".join(_cut(h.upper(), w).ljust(w) for h, w in zip(headers, widths, strict=True))]
    if limit is None:  # every cell fits its column
        lines.extend("  ".join(map(str.ljust, row, widths)) for row in rows)
    else:
        lines.extend(
            "  ".join(_cut(c, w).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
        )
    sys.stdout.write("\n".join(map(str.rstrip, lines)) + "\n")


def terminal_width() -> int | None:
    """The width to fit tables to: COLUMNS if set, else the terminal's; None when stdout is
    not a terminal (a pipe or file gets whole lines)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        if not os.isatty(sys.stdout.fileno()):
            return None
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (AttributeError, ValueError, OSError):  # no real stdout (a test's capture)
        return None


def fit_widths(widths: Sequence[int], minimum: Sequence[int], limit: int) -> list[int]:
    """Column widths whose line (two spaces between columns) fits ``limit``: the widest
    column loses a character at a time, none below its ``minimum`` (its header)."""
    fitted = list(widths)
    excess = sum(fitted) + 2 * (len(fitted) - 1) - limit
    while excess > 0:
        shrinkable = [i for i, w in enumerate(fitted) if w > max(minimum[i], 3)]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: fitted[i])
        fitted[widest] -= 1
        excess -= 1
    return fitted


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "\u2026"


def note(text: str) -> None:
    """A line for the person at the terminal, on stderr so stdout stays machine-readable."""
    print(text, file=sys.stderr)
