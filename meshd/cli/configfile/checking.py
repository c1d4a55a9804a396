"""Checking a config file's text: what it sets, converted to what the command takes, and each
problem on its line.

:func:`check_bytes` and :func:`check_text` never raise: a file's bytes become a
:class:`Checked` (its values by key, the line of each, and every :class:`Problem`). A value's
TOML type is checked against the option's Python type, its range against the option's, then
its meaning with the parsers the command uses (meshd.cli.configfile.validators); tomllib
reports no positions, so the lines are found here (:func:`key_lines`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from meshd.cli.configfile.keys import Key
from meshd.cli.configfile.validators import DURATIONS, MEANING
from meshd.errors import UsageError

MAX_SIZE: Final = 1 << 20
MAX_PROBLEMS: Final = 100


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    message: str
    key: str = ""

    def format(self, path: Path | str) -> str:
        return f"{path}:{self.line}: {self.message}"


@dataclass(slots=True)
class Checked:
    """A file's values by key (converted to what the command takes), and what is wrong."""

    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def check_bytes(data: bytes, known: Sequence[Key]) -> Checked:
    """What a file holding ``data`` sets, and what is wrong with it (never raises)."""
    if len(data) > MAX_SIZE:
        return Checked(problems=[Problem(1, f"the file is too large ({len(data)} bytes)")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return Checked(problems=[Problem(line, "not UTF-8 text (TOML files are UTF-8)")])
    if text.startswith("\ufeff"):  # what some editors write first; TOML has no place for it
        return Checked(
            problems=[
                Problem(1, "the file starts with a byte order mark; save it as UTF-8 without one")
            ]
        )
    return check_text(text, known)


def check_text(text: str, known: Sequence[Key]) -> Checked:
    """What TOML ``text`` sets, and what is wrong with it (never raises)."""
    import tomllib

    checked = Checked(lines=key_lines(text))
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        checked.problems.append(_syntax_problem(text, str(exc)))
        return checked
    except RecursionError:
        checked.problems.append(Problem(_deepest_line(text), "values nested too deeply"))
        return checked
    except ValueError as exc:  # an integer of more digits than Python converts (4,300)
        checked.problems.append(Problem(1, f"a value is out of any range: {exc}"))
        return checked
    by_name = {key.name: key for key in known}
    seen: dict[str, str] = {}
    for written, value in document.items():
        name = written.replace("-", "_")
        line = checked.lines.get(written, 1)
        if len(checked.problems) >= MAX_PROBLEMS:
            checked.problems.append(Problem(line, "more problems from here on; fix these first"))
            break
        key = by_name.get(name)
        if key is None:
            checked.problems.append(Problem(line, _unknown(written, by_name), written))
            continue
        if name in seen:
            checked.problems.append(
                Problem(line, f"{written} and {seen[name]} are the same key; keep one", name)
            )
            continue
        seen[name] = written
        checked.lines[name] = line
        converted = _convert(key, value, text, line, checked.problems)
        if converted is not None:
            checked.values[name] = converted
    _check_together(checked, by_name)
    checked.problems.sort(key=lambda problem: problem.line)
    return checked


def key_lines(text: str) -> dict[str, int]:
    """The line of each top-level key (and table header) of TOML ``text``; a best effort
    that needs no valid TOML (tomllib reports no positions of what it parsed)."""
    found: dict[str, int] = {}
    in_table = False
    open_quote = ""
    for number, line in enumerate(text.split("\n"), 1):
        if open_quote:
            if line.count(open_quote) % 2:
                open_quote = ""
            continue
        table = _TABLE.match(line)
        if table:
            found.setdefault(_first(table), number)
            in_table = True
            continue
        if not in_table:
            key = _KEY.match(line)
            if key:
                found.setdefault(_first(key), number)
        for quote in ('"""', "'''"):
            if line.count(quote) % 2:
                open_quote = quote
    return found


_NAME = r"""(?:"([^"\n]*)"|'([^'\n]*)'|([A-Za-z0-9_-]+))"""
_KEY = re.compile(rf"^[ \t]*{_NAME}[ \t]*[=.]")
_TABLE = re.compile(rf"^[ \t]*\[\[?[ \t]*{_NAME}")
_AT_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def _first(match: re.Match[str]) -> str:
    return next(group for group in match.groups() if group is not None)


def _last_line(text: str) -> int:
    lines = text.split("\n")
    return max((i for i, line in enumerate(lines, 1) if line.strip()), default=1)


def _syntax_problem(text: str, message: str) -> Problem:
    at = _AT_LINE.search(message)
    line = int(at.group(1)) if at else _last_line(text)
    line = min(max(line, 1), text.count("\n") + 1)
    reason = message[: at.start()].strip() if at else message.split(" (at ")[0].strip()
    return Problem(line, f"TOML syntax: {reason or 'invalid'}")


def _deepest_line(text: str) -> int:
    lines = text.split("\n")
    depth = [line.count("[") + line.count("{") for line in lines]
    return depth.index(max(depth)) + 1


def _unknown(written: str, by_name: Mapping[str, Key]) -> str:
    import difflib  # here: `meshd up`'s daemon runs in the interpreter that read its file

    guess = difflib.get_close_matches(written.replace("-", "_"), list(by_name), n=1)
    hint = f"; did you mean {guess[0]}?" if guess else "; `meshd config keys` lists them"
    return f"unknown key {written!r}{hint}"


_KIND_NAMES: Final[dict[type, str]] = {
    str: "a string",
    Path: "a path (a string)",
    int: "an integer",
    float: "a number",
    bool: "true or false",
}


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _convert(key: Key, value: Any, text: str, line: int, problems: list[Problem]) -> Any:
    """The value as the command takes it, or None after adding what is wrong to ``problems``."""
    if key.many:
        items = value if isinstance(value, list) else [value]
        out = []
        for item in items:
            found: list[Problem] = []
            one = _convert_one(key, item, line, found)
            if found:  # the item's own line, searched for only now (a list may be long)
                where = _item_line(text, line, item)
                problems.extend(dataclasses.replace(p, line=where) for p in found)
                return None
            out.append(one)
        return out
    return _convert_one(key, value, line, problems)


def _convert_one(key: Key, value: Any, line: int, problems: list[Problem]) -> Any:
    want = _KIND_NAMES.get(key.kind, "a string")
    if key.name in DURATIONS and isinstance(value, int) and not isinstance(value, bool):
        value = f"{value}s"  # a number of seconds
    ok = (
        (key.kind is bool and isinstance(value, bool))
        or (key.kind is int and isinstance(value, int) and not isinstance(value, bool))
        or (key.kind is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (key.kind in (str, Path) and isinstance(value, str))
    )
    if not ok:
        plain = isinstance(value, str | int | float) and not isinstance(value, bool)
        shown = f" ({value!r})" if plain else ""
        if key.many:
            want = f"{want} or a list of them"
        problems.append(
            Problem(line, f"{key.name} must be {want}, not {_toml_type(value)}{shown}", key.name)
        )
        return None
    if key.kind is float:
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):  # nan, inf: TOML has them
            problems.append(
                Problem(line, f"{key.name} must be a finite number, not {value}", key.name)
            )
            return None
    low, high = key.minimum, key.maximum
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and ((low is not None and value < low) or (high is not None and value > high)):
        problems.append(
            Problem(line, f"{key.name} {value} is out of range ({low} to {high})", key.name)
        )
        return None
    meaning = MEANING.get(key.name)
    if meaning is not None:
        try:
            meaning(value)
        except (UsageError, ValueError) as exc:
            problems.append(Problem(line, _about(key, exc), key.name))
            return None
    if key.kind is Path:
        if not value.startswith("/"):
            problems.append(
                Problem(
                    line,
                    f"{key.name} {value!r} is not an absolute path; a config file's paths "
                    "must not depend on the directory meshd starts in",
                    key.name,
                )
            )
            return None
        return Path(value)
    return value


def _about(key: Key, exc: Exception) -> str:
    """A parser's message about a value, said of the key rather than of the flag."""
    text = exc.one_line() if isinstance(exc, UsageError) else str(exc)
    if text.startswith(key.flag + " "):
        return key.name + text[len(key.flag) :]
    text = text.replace(key.flag, key.name)
    return f"{key.name}: {text}"


def _item_line(text: str, start: int, item: Any) -> int:
    """The line of a list's item, searched from its key's line (the key's line if not found)."""
    if not isinstance(item, str):
        return start
    lines = text.split("\n")
    wanted = (json.dumps(item), f"'{item}'")
    for number in range(start, len(lines) + 1):
        if any(w in lines[number - 1] for w in wanted):
            return number
    return start


def _check_together(checked: Checked, by_name: Mapping[str, Key]) -> None:
    """What no single value shows: the announce TTL must outlast the interval."""
    from meshd.cli.parse import duration

    names = ("announce_interval", "announce_ttl")
    if not any(n in checked.values for n in names) or not all(n in by_name for n in names):
        return
    try:
        interval, ttl = (
            duration(checked.values.get(n) or by_name[n].default, option=n) for n in names
        )
    except UsageError:
        return
    if ttl <= interval:
        line = max(checked.lines.get(n, 0) for n in names if n in checked.values)
        checked.problems.append(
            Problem(
                line,
                f"announce_ttl ({ttl} s) must be longer than announce_interval ({interval} s): "
                "members would expire between two of their announcements",
                "announce_ttl",
            )
        )
