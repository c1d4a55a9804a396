"""The control protocol (pure): one JSON request and one JSON response per connection.

Over the unix socket ``<state-dir>/meshd.sock`` a client sends one line::

    {"v": 1, "cmd": "peers", "args": {}}

and the daemon answers with one line, then closes the connection::

    {"v": 1, "ok": true, "result": ...}
    {"v": 1, "ok": false, "error": {"type": "UsageError", "message": "...", "hint": "..."}}

Lines end with ``\\n`` and are UTF-8 JSON objects. A request is at most
:data:`MAX_REQUEST` bytes, a response at most :data:`MAX_RESPONSE`. The ``*_untrusted``
decoders raise :class:`DecodeError` and nothing else, whatever the bytes; another protocol
version or a bad command name is a :class:`ControlDecodeError`, also a ControlError with a
hint.
"""

from __future__ import annotations

import json
import math
import re
from itertools import chain, compress
from typing import Any, Final

from meshd.errors import (
    CommandLineError,
    ControlDecodeError,
    ControlError,
    DecodeError,
    MeshdError,
    VerifyError,
)

VERSION: Final = 1
MAX_REQUEST: Final = 64 * 1024
MAX_RESPONSE: Final = 64 * 1024 * 1024
MAX_NESTING: Final = 16
_COMMAND: Final = re.compile(r"[a-z][a-z0-9-]{0,31}")
_MAX_TEXT: Final = 4096


class _Frozen:
    """Equality, hash and repr over ``__slots__``, assignment refused: a frozen record without
    ``dataclasses`` (which, with ``inspect``, would cost every ``meshd peers`` and ``meshd
    revoke`` about 10 ms at start, a sixth of its time)."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Frozen)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({inner})"


class Request(_Frozen):
    """One command for the daemon, with its JSON arguments."""

    __slots__ = ("args", "cmd")
    cmd: str
    args: dict[str, Any]

    def __init__(self, cmd: str, args: dict[str, Any] | None = None) -> None:
        if not isinstance(cmd, str) or not _COMMAND.fullmatch(cmd):
            raise ControlError(f"not a control command name: {str(cmd)[:40]!r}")
        args = {} if args is None else args
        if not isinstance(args, dict):
            raise ControlError("control arguments must be a JSON object")
        self._set(cmd=cmd, args=args)

    def __hash__(self) -> int:
        return hash((type(self), self.cmd))


class Failure(_Frozen):
    """An error the daemon reports: the exception's class name, message and hint."""

    __slots__ = ("hint", "message", "reason", "type")
    type: str
    message: str
    hint: str
    reason: str

    def __init__(self, type: str, message: str, hint: str = "", reason: str = "") -> None:
        self._set(type=type, message=message, hint=hint, reason=reason)

    @classmethod
    def of(cls, exc: MeshdError) -> Failure:
        reason = exc.reason if isinstance(exc, VerifyError) else ""
        return cls(type(exc).__name__, str(exc), exc.hint, reason)

    def to_exception(self) -> MeshdError:
        """The daemon's error as a local exception of the same class where we know it."""
        if self.type == "VerifyError":
            return VerifyError(self.reason or "refused", self.message, hint=self.hint)
        cls = _known_errors().get(self.type, MeshdError)
        return cls(self.message, hint=self.hint)


class Response(_Frozen):
    """The daemon's answer: a JSON result, or a failure."""

    __slots__ = ("failure", "result")
    result: Any
    failure: Failure | None

    def __init__(self, result: Any = None, failure: Failure | None = None) -> None:
        self._set(result=result, failure=failure)

    def __hash__(self) -> int:
        return hash((type(self), self.failure))

    @property
    def ok(self) -> bool:
        return self.failure is None


def _known_errors() -> dict[str, type[MeshdError]]:
    found: dict[str, type[MeshdError]] = {}
    pending: list[type[MeshdError]] = [MeshdError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    found.pop("VerifyError", None)
    return found


# --- encoding ---------------------------------------------------------------------------


def _line(value: dict[str, Any], limit: int, what: str) -> bytes:
    try:
        data = json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, sort_keys=True, allow_nan=False
        ).encode()
    except UnicodeEncodeError as exc:
        if what == "request" and "surrogate" in exc.reason:
            # Bytes that are no UTF-8 in an argument (a member's name), which Python hands
            # over as surrogates: the user's input, whether or not a daemon runs.
            raise CommandLineError(
                "an argument holds bytes that are not UTF-8 text",
                hint="give names and other text in UTF-8",
            ) from None
        raise ControlError(f"the {what} is not JSON: {exc}") from None
    except (TypeError, ValueError, RecursionError) as exc:  # the decoder would refuse it
        raise ControlError(f"the {what} is not JSON: {exc}") from None
    if len(data) + 1 > limit:
        raise ControlError(f"the {what} is {len(data)} bytes, over the limit of {limit}")
    return data + b"\n"


def encode_request(request: Request) -> bytes:
    return _line({"v": VERSION, "cmd": request.cmd, "args": request.args}, MAX_REQUEST, "request")


def encode_response(response: Response) -> bytes:
    if response.failure is None:
        value = {"v": VERSION, "ok": True, "result": response.result}
        return _line(value, MAX_RESPONSE, "response")
    f = response.failure
    error = {"type": f.type, "message": f.message, "hint": f.hint}
    if f.reason:
        error["reason"] = f.reason
    return _line({"v": VERSION, "ok": False, "error": error}, MAX_RESPONSE, "response")


# --- decoding -----------------------------------------------------------------------------


def _object_untrusted(data: bytes, limit: int, what: str) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray):
        raise DecodeError(f"control {what}: expected bytes")
    if len(data) > limit:
        raise DecodeError(f"control {what}: {len(data)} bytes is over the limit of {limit}")
    body = bytes(data)
    if body.endswith(b"\n"):
        body = body[:-1]
    if b"\n" in body:
        raise DecodeError(f"control {what}: more than one line")
    try:
        text = body.decode("utf-8")
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError(f"control {what}: not JSON ({type(exc).__name__})") from None
    _check_depth(value, 0, what)
    if not isinstance(value, dict):
        raise DecodeError(f"control {what}: not a JSON object")
    if value.get("v") != VERSION or isinstance(value.get("v"), bool):
        raise ControlDecodeError(
            f"control {what}: protocol version {str(value.get('v'))[:20]!r} is not {VERSION}",
            hint="the CLI and the daemon must be the same meshd version; restart the daemon",
        )
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    """A JSON number as a float, refused if it does not fit one (``1e9999`` reads as
    infinity, which no answer may carry back: the encoder refuses it)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number out of range")
    return value


_CONTAINERS: Final = frozenset({dict, list})


def _check_depth(value: Any, depth: int, what: str) -> None:
    """Refuse a value nested deeper than :data:`MAX_NESTING` (a value at depth ``depth``).

    One level at a time, and only its objects and arrays: the values of a level are listed
    and their containers picked out by loops that run in C, not a call for each value (an
    answer of 10,000 rows holds some 300,000)."""
    level = [value] if type(value) in _CONTAINERS else []
    while level:
        # What this level's containers hold is one level deeper.
        if depth >= MAX_NESTING and any(level):
            raise DecodeError(f"control {what}: nested too deeply")
        dicts = (item.values() for item in level if type(item) is dict)
        lists = (item for item in level if type(item) is list)
        inner = list(chain(chain.from_iterable(dicts), chain.from_iterable(lists)))
        level = list(compress(inner, map(_CONTAINERS.__contains__, map(type, inner))))
        depth += 1


def decode_request_untrusted(data: bytes) -> Request:
    """Parse one request line. Raises DecodeError only."""
    value = _object_untrusted(data, MAX_REQUEST, "request")
    if set(value) != {"v", "cmd", "args"}:
        raise DecodeError("control request: expected exactly the keys v, cmd, args")
    cmd, args = value["cmd"], value["args"]
    if not isinstance(cmd, str) or not isinstance(args, dict):
        raise DecodeError("control request: cmd must be a string and args an object")
    if not _COMMAND.fullmatch(cmd):
        raise ControlDecodeError(f"not a control command name: {cmd[:40]!r}")
    return Request(cmd, args)


def decode_response_untrusted(data: bytes) -> Response:
    """Parse one response line. Raises DecodeError only."""
    value = _object_untrusted(data, MAX_RESPONSE, "response")
    ok = value.get("ok")
    if ok is True and set(value) == {"v", "ok", "result"}:
        return Response(result=value["result"])
    if ok is False and set(value) == {"v", "ok", "error"}:
        error = value["error"]
        if not isinstance(error, dict):
            raise DecodeError("control response: error must be an object")
        texts = [error.get(k, "") for k in ("type", "message", "hint", "reason")]
        if not all(isinstance(t, str) and len(t) <= _MAX_TEXT for t in texts):
            raise DecodeError("control response: error fields must be short strings")
        if not texts[0] or not texts[1]:
            raise DecodeError("control response: an error needs a type and a message")
        return Response(failure=Failure(*texts))
    raise DecodeError("control response: expected ok with result, or not ok with error")
