"""Canonical msgpack: the one encoding of every signed record.

A record is signed over the exact bytes that are sent, so there must be exactly one encoding of
each value. meshd records use only msgpack arrays, unsigned integers, byte strings and UTF-8
strings (never maps, floats or extension types; one boolean, a relay's announcement's last
item, which its decoder checks itself), and always the shortest form msgpack offers.
:func:`unpack_canonical_untrusted` decodes and then re-encodes: any input that is not exactly
the canonical encoding of what it decodes to is rejected.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from meshd.errors import DecodeError

MAX_NESTING = 8

# One packer for the canonical re-encode of everything decoded: building one per call costs
# as much again as packing. pack() runs start to end under the GIL (the values come from
# msgpack itself, so no callback runs), so threads can share it.
_CANONICAL = msgpack.Packer(use_bin_type=True)


def pack(value: Any) -> bytes:
    """Encode ``value`` canonically (the shortest msgpack form; bytes as bin, str as str)."""
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def _refuse_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"msgpack extension type {code} is not allowed")


def unpack_canonical_untrusted(
    data: bytes, *, max_size: int, what: str, check_types: bool = True
) -> Any:
    """Decode ``data``, which must be one canonical msgpack value of at most ``max_size`` bytes.

    Raises DecodeError for anything else: oversized, truncated, trailing bytes, maps, floats,
    extension types, or any encoding that is not the shortest form. A caller that checks the
    type of every field itself (as the record decoders do) may pass ``check_types=False``.
    """
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"{what}: expected bytes")
        data = bytes(data)
    if len(data) > max_size:
        raise DecodeError(f"{what}: {len(data)} bytes is over the limit of {max_size}")
    if not data:
        raise DecodeError(f"{what}: empty")
    try:
        # msgpack bounds every length by the input's size; maps are refused below.
        value = msgpack.unpackb(data, raw=False, ext_hook=_refuse_ext)
    except DecodeError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException) as exc:
        raise DecodeError(f"{what}: not valid msgpack ({type(exc).__name__})") from None
    if check_types:
        _check_types(value, what, 0)
    if _CANONICAL.pack(value) != data:
        raise DecodeError(f"{what}: not in canonical encoding")
    return value


def unpack_body_untrusted(body: bytes) -> Any:
    """:func:`unpack_canonical_untrusted` for a record body already cut from its envelope
    (bytes, and bounded by the envelope's own limit), whose decoder checks every field's type.
    """
    try:
        value = msgpack.unpackb(body, raw=False, ext_hook=_refuse_ext)
    except DecodeError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException) as exc:
        raise DecodeError(f"record: not valid msgpack ({type(exc).__name__})") from None
    if _CANONICAL.pack(value) != body:
        raise DecodeError("record: not in canonical encoding")
    return value


def check_types_untrusted(value: Any, what: str) -> None:
    """Refuse (DecodeError) a decoded value holding anything but arrays, unsigned integers,
    bin and str, or nested deeper than ``MAX_NESTING``."""
    _check_types(value, what, 0)


def _check_types(value: Any, what: str, depth: int) -> None:
    if depth > MAX_NESTING:
        raise DecodeError(f"{what}: nested too deeply")
    if isinstance(value, list):
        for item in value:
            _check_types(item, what, depth + 1)
    elif isinstance(value, bool) or not isinstance(value, int | bytes | str):
        raise DecodeError(f"{what}: value of type {type(value).__name__} is not allowed")
    elif isinstance(value, int) and value < 0:
        raise DecodeError(f"{what}: negative integers are not allowed")


def b64url(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode_untrusted(text: str, *, what: str) -> bytes:
    """Inverse of :func:`b64url`; refuses anything that :func:`b64url` would not produce."""
    if not text or any(c not in _B64URL_ALPHABET for c in text) or len(text) % 4 == 1:
        raise DecodeError(f"{what}: not URL-safe base64")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(raw) != text:
        raise DecodeError(f"{what}: not in canonical base64")
    return raw


_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b32(data: bytes) -> str:
    """Lower-case base32 without padding: the text form of fingerprints."""
    return base64.b32encode(data).rstrip(b"=").decode("ascii").lower()


def b32_each(items: Sequence[bytes]) -> list[str]:
    """``[b32(item) for item in items]``, the items all of one length, written together.

    ``base64.b32encode`` runs in Python, a loop over each 5 bytes (~3 us a fingerprint:
    30 ms for the 10,000 node ids of ``meshd peers``). Here every item is padded with zero
    bytes to a multiple of 5 (what base32 pads it with), and each of the 8 characters of
    every 5 bytes is taken from the bytes at its offset at once: their bits moved by
    ``bytes.translate`` tables and put together by ``|`` on the ints they make, then
    laid into their place with a slice, all loops that run in C."""
    if not items:
        return []
    size = len(items[0])
    if any(len(item) != size for item in items):
        raise ValueError("b32_each: the items differ in length")
    if not size:
        return [""] * len(items)
    width = -(-size // 5) * 5  # bytes an item takes, padded
    data = b"".join(items) if width == size else b"".join(i + bytes(width - size) for i in items)
    chunks = len(data) // 5
    offsets = [data[k::5] for k in range(5)]
    out = bytearray(8 * chunks)
    for place, parts in enumerate(_B32_BITS):
        column = 0
        for offset, table in parts:
            column |= int.from_bytes(offsets[offset].translate(table), "big")
        out[place::8] = column.to_bytes(chunks, "big")
    text = out.translate(_B32_LETTERS).decode("ascii")
    step, length = width * 8 // 5, -(-size * 8 // 5)
    return [text[start : start + length] for start in range(0, len(text), step)]


def _moved(move: Callable[[int], int]) -> bytes:
    return bytes(move(b) & 31 for b in range(256))


# Each of a 5-byte chunk's 8 characters (5 bits): the bits it takes from each of its bytes.
_B32_BITS: tuple[tuple[tuple[int, bytes], ...], ...] = (
    ((0, _moved(lambda b: b >> 3)),),
    ((0, _moved(lambda b: b << 2)), (1, _moved(lambda b: b >> 6))),
    ((1, _moved(lambda b: b >> 1)),),
    ((1, _moved(lambda b: b << 4)), (2, _moved(lambda b: b >> 4))),
    ((2, _moved(lambda b: b << 1)), (3, _moved(lambda b: b >> 7))),
    ((3, _moved(lambda b: b >> 2)),),
    ((3, _moved(lambda b: b << 3)), (4, _moved(lambda b: b >> 5))),
    ((4, _moved(lambda b: b)),),
)
_B32_LETTERS = b"abcdefghijklmnopqrstuvwxyz234567".ljust(256, b"?")
