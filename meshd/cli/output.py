"""Printing results: JSON for programs, aligned text for people."""

from __future__ import annotations

import base64
import datetime
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any


def b64(data: bytes) -> str:
    """Standard base64, the way `wg` prints keys."""
    return base64.b64encode(data).decode("ascii")


def when(ts: int | None) -> str:
    if ts is None:
        return "-"
    try:
        moment = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return "never"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def emit_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def emit_fields(fields: Mapping[str, Any]) -> None:
    width = max((len(k) for k in fields), default=0)
    for key, value in fields.items():
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value) or "-"
        print(f"{key:<{width}}  {value}")


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def note(text: str) -> None:
    """A line for the person at the terminal, on stderr so stdout stays machine-readable."""
    print(text, file=sys.stderr)
