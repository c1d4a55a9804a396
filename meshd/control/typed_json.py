"""The typed control commands to and from their JSON (pure).

:func:`to_json` gives a request's ``args`` or an answer as the JSON value on the wire.
:func:`decode_request` reads the daemon's untrusted input, a command name and its arguments
from the control socket, into the command's request type: an unknown command or malformed
arguments is a :class:`~meshd.errors.ControlDecodeError`, which the server answers as a typed
error. :func:`decode_answer` reads the daemon's answer back into the answer type the CLI asked
for.

Answers decode leniently in one way only: keys this CLI does not know (a newer daemon's) are
ignored; a missing key or a value of the wrong type is a DecodeError.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union

from meshd.control.commands import LISTS, REQUESTS, PeerRow, Request
from meshd.control.wire import MISSING, Wire, fields, is_wire
from meshd.errors import ControlDecodeError, DecodeError

A = TypeVar("A")


# --- encoding -------------------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """A request's args, or an answer, as the JSON value on the wire."""
    if isinstance(value, Wire):
        only = LISTS.get(type(value))
        if only is not None:
            return to_json(getattr(value, only))
        out: dict[str, Any] = {}
        for f in fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("local"):
                continue
            if f.metadata.get("omit_if_none") and item is None and not _shown(value, f.name):
                continue
            out[f.name] = to_json(item)
        return out
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def _shown(value: Any, name: str) -> bool:
    """``route`` and ``metric`` are on the wire whenever Babel filled them, None or not."""
    return name in ("route", "metric") and bool(getattr(value, "routed", False))


# --- decoding -------------------------------------------------------------------------------


def decode_request(cmd: str, args: Mapping[str, Any]) -> Request:
    """The typed request for a decoded control request. ControlDecodeError for an unknown
    command or arguments that are not the command's."""
    cls = REQUESTS.get(cmd)
    if cls is None:
        raise ControlDecodeError(f"the daemon knows no command {cmd!r}", hint="update the CLI")
    try:
        return typing.cast(Request, _build(cls, args, strict=True))
    except DecodeError as exc:
        raise ControlDecodeError(f"{cmd}: {exc}", hint="update the CLI") from None


def decode_answer(cls: type[A], value: Any) -> A:
    """Read an answer the daemon sent into ``cls``. Raises DecodeError only."""
    only = LISTS.get(cls)
    if only is not None:
        value = {only: value}
    return typing.cast(A, _build(cls, value, strict=False))


def _build(cls: type[Any], value: Any, *, strict: bool) -> Any:
    if not isinstance(value, Mapping):
        raise DecodeError(f"{cls.__name__}: expected an object")
    hints = _hints(cls)
    known = {f.name: f for f in fields(cls) if not f.metadata.get("local")}
    if strict:
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise DecodeError(f"unknown argument {str(unknown[0])[:40]!r}")
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        if name not in value:
            if f.default is MISSING:
                raise DecodeError(f"{cls.__name__}: {name} is missing")
            continue
        kwargs[name] = _check(hints[name], value[name], name, strict=strict)
    if cls is PeerRow and ("route" in value or "metric" in value):
        kwargs["routed"] = True
    return cls(**kwargs)


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = typing.get_type_hints(cls)
    return found


def _check(hint: Any, value: Any, name: str, *, strict: bool) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _check(option, value, name, strict=strict)
            except DecodeError:
                continue
        raise DecodeError(f"{name}: {type(value).__name__} is not {hint}")
    if hint is type(None):
        if value is None:
            return None
        raise DecodeError(f"{name}: expected null")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise DecodeError(f"{name}: expected a list")
        (item, _) = typing.get_args(hint)
        return tuple(_check(item, v, name, strict=strict) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise DecodeError(f"{name}: expected an object")
        _, item = typing.get_args(hint)
        return {k: _check(item, v, name, strict=strict) for k, v in value.items()}
    if is_wire(hint):
        return _build(typing.cast(type[Any], hint), value, strict=strict)
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise DecodeError(f"{name}: {type(value).__name__} is not {getattr(hint, '__name__', hint)}")
