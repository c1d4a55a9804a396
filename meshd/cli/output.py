"""Printing results: JSON for programs, aligned text for people."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Mapping, Sequence
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
    text = json.dumps(value, indent=2, sort_keys=True, allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def emit_fields(fields: Mapping[str, Any]) -> None:
    width = max((len(k) for k in fields), default=0)
    for key, value in fields.items():
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value) or "-"
        print(f"{key:<{width}}  {value}")


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Aligned columns; on a terminal (or with COLUMNS set) the widest columns are cut, with
    an ellipsis, so that every line fits its width. JSON output is never cut."""
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
