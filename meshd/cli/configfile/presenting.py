"""The config file shown to people: the table of its keys, and what a command would run with.

:func:`markdown_table` is the table of docs/config.md (``meshd config keys --markdown``),
:func:`as_json` the same for programs; :func:`effective` is what ``meshd config show`` prints:
each key's value from the environment, the file or the default, secrets masked, and
:func:`toml_value` writes a value back as TOML.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from meshd.cli.configfile.checking import Checked
from meshd.cli.configfile.keys import DEPRECATED_ENV, Key
from meshd.cli.configfile.settling import load
from meshd.cli.configfile.validators import DURATIONS


def markdown_table(known: Sequence[Key]) -> str:
    """The table of docs/config.md: one row per key."""
    rows = [
        "| key | type | command line | environment | default | commands | what |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in known:
        kind = {str: "string", Path: "path", int: "integer", float: "number", bool: "boolean"}
        what = "duration" if key.name in DURATIONS else kind.get(key.kind, "string")
        if key.many:
            what = f"list of {what}s"
        env = f"`{key.env}`"
        old = DEPRECATED_ENV.get(key.name)
        if old:
            env += f" (or `{old}`, deprecated)"
        default = f"`{key.default}`" if key.default else ("required" if key.required else "-")
        text = key.help.replace("|", "\\|")
        rows.append(
            f"| `{key.name}` | {what} | `{key.flag}` | {env} | {default} | "
            f"{', '.join(key.commands)} | {text} |"
        )
    return "\n".join(rows) + "\n"


def as_json(known: Sequence[Key]) -> list[dict[str, Any]]:
    kinds = {str: "string", Path: "path", int: "integer", float: "number", bool: "boolean"}
    return [
        {
            "key": key.name,
            "type": ("list of " if key.many else "")
            + ("duration" if key.name in DURATIONS else kinds.get(key.kind, "string")),
            "flag": key.flag,
            "env": key.env,
            "default": key.default or None,
            "commands": list(key.commands),
            "help": key.help,
        }
        for key in known
    ]


@dataclass(frozen=True, slots=True)
class Effective:
    """A key's value without command-line options, and where it comes from."""

    key: Key
    value: Any
    source: str
    """``env MESHD_X``, ``PATH:LINE`` or ``default``."""


def effective(path: Path | None, known: Sequence[Key], env: Mapping[str, str]) -> list[Effective]:
    """Every key's value from ``env`` over the file at ``path`` over the default (the
    command line would override any of them); ConfigError if the file has a problem."""
    checked = load(path, known) if path is not None else Checked()
    out = []
    for key in known:
        old = DEPRECATED_ENV.get(key.name)
        if env.get(key.env):
            raw = env[key.env]
            value = [_from_env(key, r) for r in raw.split()] if key.many else _from_env(key, raw)
            out.append(Effective(key, value, f"env {key.env}"))
        elif old and env.get(old):
            out.append(Effective(key, env[old].lower(), f"env {old} (deprecated)"))
        elif key.name in checked.values:
            line = checked.lines.get(key.name, 1)
            out.append(Effective(key, checked.values[key.name], f"{path}:{line}"))
        else:
            out.append(Effective(key, None, "default"))
    return [_masked(item) for item in out]


SECRETS: Final = frozenset({"invite"})
"""Keys whose value is a secret unless it names where to read it (``-``, ``@FILE``)."""
KEYS: Final = frozenset({"babel_key"})
"""Keys whose values are ``ID:ALGORITHM:SECRET``: shown without their secret part."""


def _masked(item: Effective) -> Effective:
    value = item.value
    if item.key.name in SECRETS and isinstance(value, str) and value[:1] not in ("@", "-"):
        return dataclasses.replace(item, value="(secret)")
    if item.key.name in KEYS and value is not None:
        values = value if isinstance(value, list | tuple) else [value]
        shown = [":".join([*str(v).split(":")[:2], "(secret)"]) for v in values]
        return dataclasses.replace(
            item, value=shown if isinstance(value, list | tuple) else shown[0]
        )
    return item


def _from_env(key: Key, raw: str) -> Any:
    """A variable's text as the key's type, where it reads as one (else the text)."""
    try:
        if key.kind is bool:
            return {"1": True, "true": True, "yes": True, "on": True}.get(raw.lower(), False)
        if key.kind is int:
            return int(raw)
        if key.kind is float:
            return float(raw)
    except ValueError:
        return raw
    return raw


def toml_value(value: Any) -> str:
    """``value`` written as TOML (strings, paths, numbers, booleans and lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)
