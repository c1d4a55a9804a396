"""The field cursor and the item parsers under every record decoder (meshd.records.decode,
meshd.records.flat): untrusted values out of a decoded body, each checked for type and bounds
as it is read; DecodeError, never anything else.

- ``_Fields``: a cursor over a body's fields (integers, bytes, text, arrays, an
  announcement's tail);
- ``_prefix_untrusted``, ``_text_item``, ``_record_id_item``: one array entry each;
- ``_share``: one shared copy of the keys and ids that most records repeat.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, TypeVar

from meshd.addressing import Prefix, interned
from meshd.encoding import check_types_untrusted
from meshd.errors import DecodeError
from meshd.records.types import (
    MAX_ADDR_LEN,
    MAX_ENDPOINT_LEN,
    MAX_EXTENSIONS,
    MAX_RECORD,
    RECORD_ID_LEN,
    U64,
    Kind,
)

T = TypeVar("T")

# Keys and ids that most records repeat (the network id in every record; the root's and the
# admins' keys as issuers and sponsors): each decoded record refers to one shared copy
# instead of holding 65 bytes of its own. Bounded: when full it starts again (values seen
# in refused records only cost their place until then).
_SHARED: dict[bytes, bytes] = {}
_MAX_SHARED = 64


def _share(value: bytes) -> bytes:
    found = _SHARED.get(value)
    if found is None:
        if len(_SHARED) >= _MAX_SHARED:
            _SHARED.clear()
        _SHARED[value] = found = value
    return found


class _Fields:
    """A cursor over the fields of a decoded body; every accessor checks type and bounds."""

    __slots__ = ("_items", "_kind", "_pos")

    def __init__(self, items: list[Any], kind: Kind) -> None:
        self._items = items
        self._pos = 0
        self._kind = kind

    @property
    def _what(self) -> str:
        return f"record ({self._kind.name.lower()})"

    def _next(self) -> Any:
        if self._pos >= len(self._items):
            raise DecodeError(f"{self._what}: too few fields")
        item = self._items[self._pos]
        self._pos += 1
        return item

    def more(self) -> bool:
        """Whether fields are left (for a trailing field that older records lack)."""
        return self._pos < len(self._items)

    def end(self) -> None:
        if self._pos != len(self._items):
            raise DecodeError(f"{self._what}: too many fields")

    def relays_and_extensions(self) -> bool:
        """An announcement's tail: the ``relays`` flag, then up to ``MAX_EXTENSIONS`` items
        a later release may add, which this one checks for type and ignores (the signature
        covers them all the same). The flag is absent (False) or ``true``; ``false`` only
        where extensions follow, so that each content still has one encoding."""
        if not self.more():
            return False
        relays = self._next()
        extensions = self._items[self._pos :]
        if relays is not True and (relays is not False or not extensions):
            raise DecodeError(f"{self._what}: relays must be true, or absent")
        if len(extensions) > MAX_EXTENSIONS:
            raise DecodeError(f"{self._what}: too many fields")
        for item in extensions:
            check_types_untrusted(item, f"{self._what}: extension")
        self._pos = len(self._items)
        return relays

    def uint(self, name: str, maximum: int = U64) -> int:
        value = self._next()
        if type(value) is not int or not 0 <= value <= maximum:
            raise DecodeError(f"{self._what}: {name} must be an integer up to {maximum}")
        return value

    def blob(self, name: str, length: int | None = None, maximum: int = MAX_RECORD) -> bytes:
        value = self._next()
        if not isinstance(value, bytes):
            raise DecodeError(f"{self._what}: {name} must be bytes")
        if length is not None and len(value) != length:
            raise DecodeError(f"{self._what}: {name} must be {length} bytes")
        if len(value) > maximum:
            raise DecodeError(f"{self._what}: {name} is over {maximum} bytes")
        return value

    def text(self, name: str, maximum: int) -> str:
        value = self._next()
        if not isinstance(value, str):
            raise DecodeError(f"{self._what}: {name} must be text")
        if len(value.encode()) > maximum:
            raise DecodeError(f"{self._what}: {name} is over {maximum} bytes")
        if not value.isprintable():
            # Also refuses C1 controls and bidi overrides, which would mislead a terminal.
            raise DecodeError(f"{self._what}: {name} holds unprintable characters")
        return value

    def array(self, name: str, maximum: int, item: Callable[[Any], T]) -> tuple[T, ...]:
        value = self._next()
        if not isinstance(value, list):
            raise DecodeError(f"{self._what}: {name} must be an array")
        if len(value) > maximum:
            raise DecodeError(f"{self._what}: {name} has more than {maximum} entries")
        return tuple(item(v) for v in value)


def _prefix_untrusted(value: Any) -> Prefix:
    if not (isinstance(value, list) and len(value) == 2):
        raise DecodeError("prefix: must be [address, length]")
    address, length = value
    if not isinstance(address, bytes) or len(address) not in (4, 16):
        raise DecodeError("prefix: address must be 4 or 16 bytes")
    if type(length) is not int or not 0 <= length <= len(address) * 8:
        raise DecodeError("prefix: length out of range")
    try:
        if len(address) == 4:
            return interned(ipaddress.IPv4Network((address, length), strict=True))
        return interned(ipaddress.IPv6Network((address, length), strict=True))
    except ValueError:
        raise DecodeError("prefix: host bits set") from None


def _text_item(maximum: int) -> Callable[[Any], str]:
    def item(value: Any) -> str:
        if type(value) is str and value.isascii():  # the usual case: length in bytes is len()
            if len(value) <= maximum and value.isprintable():
                return value
        elif isinstance(value, str) and len(value.encode()) <= maximum and value.isprintable():
            return value
        raise DecodeError(f"text entry must be printable and at most {maximum} bytes")

    return item


def _record_id_item(value: Any) -> bytes:
    if type(value) is not bytes or len(value) != RECORD_ID_LEN:
        raise DecodeError(f"record id must be {RECORD_ID_LEN} bytes")
    return value


_ENDPOINT_ITEM = _text_item(MAX_ENDPOINT_LEN)
_ADDR_ITEM = _text_item(MAX_ADDR_LEN)
