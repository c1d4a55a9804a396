"""Mutations of decoder inputs: byte-level, and aware of msgpack, Babel TLVs, tokens, JSON
and UAPI lines.

Every mutator takes the input, a ``random.Random`` and the seed corpus (for splicing) and
returns new bytes. :func:`mutate` picks one that fits the input's shape. The same functions
drive the benchmark (``benchmarks/fuzz.py``, also as atheris' custom mutator) and the short
hypothesis version in the test suite, so that both explore the same neighbourhood of the
golden inputs.
"""

from __future__ import annotations

import base64
import json
import random
import struct
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

Mutator = Callable[[bytes, random.Random, Sequence[bytes]], bytes]

INTERESTING_8 = (0, 1, 2, 0x0F, 0x10, 0x1F, 0x20, 0x3F, 0x40, 0x7F, 0x80, 0x81, 0xC0, 0xFE, 0xFF)
INTERESTING_INTS = (
    0,
    1,
    2,
    7,
    8,
    15,
    16,
    31,
    32,
    63,
    64,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**31 - 1,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**64 - 1,
    -1,
    -128,
    -(2**63),
)
WEIRD_TEXT = (
    "",
    "a" * 300,
    "\u202e",
    "\x00",
    "\x85",
    "é" * 40,
    "\U0001f600",
    "meshd1",
    "[::1]:1",
    "0.0.0.0:0",
    "/ip4/1.2.3.4/tcp/1",
    "\n",
)


# --- byte level -------------------------------------------------------------------------


def flip_bit(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    buf = bytearray(data)
    pos = rng.randrange(len(buf))
    buf[pos] ^= 1 << rng.randrange(8)
    return bytes(buf)


def set_byte(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    if not data:
        return bytes([rng.choice(INTERESTING_8)])
    buf = bytearray(data)
    pos = rng.randrange(len(buf))
    buf[pos] = rng.choice(INTERESTING_8) if rng.random() < 0.7 else rng.randrange(256)
    return bytes(buf)


def insert_bytes(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    pos = rng.randrange(len(data) + 1)
    count = rng.choice((1, 1, 2, 4, 8, rng.randrange(1, 300)))
    fill = rng.choice((b"\x00", b"\xff", bytes([rng.randrange(256)]), None))
    chunk = fill * count if fill is not None else rng.randbytes(count)
    return data[:pos] + chunk + data[pos:]


def delete_range(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    if len(data) < 2:
        return b""
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.choice((1, 1, 2, 4, rng.randrange(1, len(data) + 1))))
    return data[:start] + data[end:]


def truncate(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    if not data:
        return data
    return data[: rng.randrange(len(data))]


def duplicate_range(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    if not data:
        return data
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.randrange(1, 64))
    at = rng.randrange(len(data) + 1)
    return data[:at] + data[start:end] + data[at:]


def splice(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """The head of this input joined to the tail of another one (or of itself)."""
    other = rng.choice(seeds) if seeds else data
    cut_a = rng.randrange(len(data) + 1)
    cut_b = rng.randrange(len(other) + 1)
    return data[:cut_a] + other[cut_b:]


def tweak_integer(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """Treat 1, 2 or 4 bytes somewhere as a big-endian length or count and nudge it."""
    width = rng.choice((1, 2, 4))
    if len(data) < width:
        return set_byte(data, rng, seeds)
    pos = rng.randrange(len(data) - width + 1)
    value = int.from_bytes(data[pos : pos + width], "big")
    top = (1 << (8 * width)) - 1
    value = rng.choice(
        (
            value + 1,
            value - 1,
            value + rng.randrange(2, 17),
            value - rng.randrange(2, 17),
            0,
            top,
            len(data),
            len(data) - pos,
        )
    )
    return data[:pos] + (value & top).to_bytes(width, "big") + data[pos + width :]


BYTE_MUTATORS: tuple[Mutator, ...] = (
    flip_bit,
    set_byte,
    insert_bytes,
    delete_range,
    truncate,
    duplicate_range,
    splice,
    tweak_integer,
)


def byte_mutation(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    return rng.choice(BYTE_MUTATORS)(data, rng, seeds)


# --- msgpack ----------------------------------------------------------------------------


def _unpack(data: bytes) -> tuple[bool, Any]:
    try:
        return True, msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:  # noqa: BLE001 (any failure means: not msgpack, mutate bytes instead)
        return False, None


def _pack(value: Any, wide: bool = False) -> bytes:
    """msgpack of ``value``; ``wide`` uses the widest header of every value (not canonical)."""
    if not wide:
        packed: bytes = msgpack.packb(value, use_bin_type=True)
        return packed
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return _pack(value)
    if isinstance(value, int):
        return (
            b"\xcf" + struct.pack(">Q", value) if value >= 0 else b"\xd3" + struct.pack(">q", value)
        )
    if isinstance(value, bytes):
        return b"\xc6" + struct.pack(">I", len(value)) + value
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        return b"\xdb" + struct.pack(">I", len(raw)) + raw
    if isinstance(value, list):
        return b"\xdd" + struct.pack(">I", len(value)) + b"".join(_pack(v, True) for v in value)
    if isinstance(value, dict):
        items = b"".join(_pack(k, True) + _pack(v, True) for k, v in value.items())
        return b"\xdf" + struct.pack(">I", len(value)) + items
    return _pack(value)


def _nodes(value: Any, path: tuple[int, ...], out: list[tuple[int, ...]], depth: int) -> None:
    out.append(path)
    if isinstance(value, list) and depth < 12:
        for i, item in enumerate(value):
            _nodes(item, (*path, i), out, depth + 1)


def _get(value: Any, path: tuple[int, ...]) -> Any:
    for i in path:
        value = value[i]
    return value


def _replace(value: Any, path: tuple[int, ...], new: Any) -> Any:
    if not path:
        return new
    copy = list(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], new)
    return copy


def _random_value(rng: random.Random, seeds: Sequence[bytes]) -> Any:
    kind = rng.randrange(9)
    if kind == 0:
        return rng.choice(INTERESTING_INTS)
    if kind == 1:
        return rng.randbytes(rng.choice((0, 1, 4, 16, 20, 32, 64, 65, 300)))
    if kind == 2:
        return rng.choice(WEIRD_TEXT)
    if kind == 3:
        return []
    if kind == 4:
        return [rng.choice(INTERESTING_INTS), rng.randbytes(4)]
    if kind == 5:
        return {"k": 1} if rng.random() < 0.5 else {1: b""}
    if kind == 6:
        return rng.choice((None, True, False, 1.5))
    if kind == 7 and seeds:
        return rng.choice(seeds)
    return _DEEP_JSON


def _mutate_node(node: Any, rng: random.Random, seeds: Sequence[bytes]) -> Any:
    choice = rng.random()
    if choice < 0.15:
        return _random_value(rng, seeds)
    if isinstance(node, bool) or node is None:
        return rng.choice(INTERESTING_INTS)
    if isinstance(node, int):
        return rng.choice((node + 1, node - 1, node ^ (1 << rng.randrange(64)), *INTERESTING_INTS))
    if isinstance(node, bytes):
        ok, _ = _unpack(node)
        if ok and len(node) > 2 and rng.random() < 0.6:
            # A nested record or message: mutate inside it and re-encode.
            return msgpack_mutation(node, rng, seeds)
        return byte_mutation(node, rng, seeds)
    if isinstance(node, str):
        if rng.random() < 0.5:
            return rng.choice(WEIRD_TEXT)
        raw = byte_mutation(node.encode(), rng, seeds)
        return raw.decode("utf-8", "replace")
    if isinstance(node, list):
        copy = list(node)
        op = rng.randrange(6)
        if op == 0 and copy:
            del copy[rng.randrange(len(copy))]
        elif op == 1 and copy:
            copy.insert(rng.randrange(len(copy) + 1), rng.choice(copy))
        elif op == 2:
            copy.insert(rng.randrange(len(copy) + 1), _random_value(rng, seeds))
        elif op == 3 and len(copy) > 1:
            i, j = rng.randrange(len(copy)), rng.randrange(len(copy))
            copy[i], copy[j] = copy[j], copy[i]
        elif op == 4 and copy:
            copy = copy * rng.choice((2, 17, 300))
        else:
            copy = []
        return copy
    return _random_value(rng, seeds)


def msgpack_mutation(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """Decode as msgpack, change one node of the tree (recursing into nested encodings held
    as bytes, as records nest records), and encode again, canonically or not."""
    ok, value = _unpack(data)
    if not ok:
        return byte_mutation(data, rng, seeds)
    paths: list[tuple[int, ...]] = []
    _nodes(value, (), paths, 0)
    path = rng.choice(paths)
    mutated = _replace(value, path, _mutate_node(_get(value, path), rng, seeds))
    try:
        return _pack(mutated, wide=rng.random() < 0.05)
    except (ValueError, OverflowError, TypeError, struct.error):
        return byte_mutation(data, rng, seeds)


# --- Babel ------------------------------------------------------------------------------


def _babel_tlvs(body: bytes) -> list[bytes]:
    tlvs: list[bytes] = []
    pos = 0
    while pos < len(body):
        if body[pos] == 0:
            tlvs.append(b"\x00")
            pos += 1
            continue
        end = min(len(body), pos + 2 + (body[pos + 1] if pos + 1 < len(body) else 0))
        tlvs.append(body[pos:end])
        pos = end
    return tlvs


_SUB_TLVS = (
    b"\x00",
    b"\x01\x02\x00\x00",
    b"\x02\x01\x07",
    b"\x03\x04\x00\x00\x00\x01",
    b"\x03\x08\x00\x00\x00\x01\x00\x00\x00\x02",
    b"\x80\x03\x30\xfd\x00",
    b"\x80\x00",
    b"\x80\x01\x81",
    b"\x81\x00",
)


def babel_mutation(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """Change a Babel packet TLV by TLV: drop, repeat, swap, retype one, change its AE,
    prefix length or omitted count, add a sub-TLV or a trailer TLV; fix the body length
    most of the time."""
    if len(data) < 4 or data[0] != 42:
        return byte_mutation(data, rng, seeds)
    body_len = int.from_bytes(data[2:4], "big")
    body, trailer = data[4 : 4 + body_len], data[4 + body_len :]
    tlvs = _babel_tlvs(body)
    op = rng.randrange(8)
    if op == 0 and tlvs:
        del tlvs[rng.randrange(len(tlvs))]
    elif op == 1 and tlvs:
        tlvs.insert(rng.randrange(len(tlvs) + 1), rng.choice(tlvs))
    elif op == 2 and len(tlvs) > 1:
        i, j = rng.randrange(len(tlvs)), rng.randrange(len(tlvs))
        tlvs[i], tlvs[j] = tlvs[j], tlvs[i]
    elif op == 3 and tlvs:
        i = rng.randrange(len(tlvs))
        retyped = bytearray(tlvs[i])
        retyped[0] = rng.choice((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 17, 18, 19, 200))
        tlvs[i] = bytes(retyped)
    elif op == 4 and tlvs:
        # AE, plen or omitted: the bytes just after the TLV header.
        i = rng.randrange(len(tlvs))
        fields = bytearray(tlvs[i])
        if len(fields) > 2:
            pos = 2 + rng.randrange(min(4, len(fields) - 2))
            fields[pos] = rng.choice((0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 32, 33, 64, 65, 120, 128, 255))
            tlvs[i] = bytes(fields)
    elif op == 5 and tlvs:
        i = rng.randrange(len(tlvs))
        tlv = tlvs[i]
        if len(tlv) >= 2:
            sub = rng.choice(_SUB_TLVS)
            new_body = tlv[2:] + sub
            if len(new_body) <= 255:
                tlvs[i] = bytes([tlv[0], len(new_body)]) + new_body
    elif op == 6:
        trailer += rng.choice(
            (b"\x10\x20" + rng.randbytes(32), b"\x01\x00", b"\x00", b"\x11\x06" + rng.randbytes(6))
        )
    else:
        tlvs.append(rng.choice(tlvs) if tlvs and rng.random() < 0.5 else rng.choice(_SUB_TLVS))
    new_body = b"".join(tlvs)
    length = len(new_body) if rng.random() < 0.9 else body_len
    return bytes([42, 2]) + (length & 0xFFFF).to_bytes(2, "big") + new_body + trailer


# --- text shapes ------------------------------------------------------------------------


def token_mutation(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """Mutate the record inside a token (decode the base64, mutate, re-encode), or its text."""
    text = data.decode("ascii", "replace")
    if text.startswith("meshd1") and rng.random() < 0.7:
        payload = text[6:]
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        except ValueError:
            return byte_mutation(data, rng, seeds)
        inner = (
            msgpack_mutation(raw, rng, ()) if rng.random() < 0.7 else byte_mutation(raw, rng, ())
        )
        encoded = base64.urlsafe_b64encode(inner).decode()
        if rng.random() < 0.8:
            encoded = encoded.rstrip("=")
        return ("meshd1" + encoded).encode()
    op = rng.randrange(5)
    if op == 0:
        return (rng.choice(("meshd2", "meshd", "MESHD1", " meshd1", "")) + text[6:]).encode()
    if op == 1:
        pos = rng.randrange(len(text) + 1)
        char = rng.choice(("=", "+", "/", " ", "\n", "\u00e9", "\x00", "A", "-", "_"))
        return (text[:pos] + char + text[pos:]).encode("utf-8")
    return byte_mutation(data, rng, seeds)


def _json_mutate(value: Any, rng: random.Random, depth: int = 0) -> Any:
    if isinstance(value, dict) and value and depth < 8 and rng.random() < 0.7:
        key = rng.choice(list(value))
        copy = dict(value)
        op = rng.randrange(4)
        if op == 0:
            del copy[key]
        elif op == 1:
            copy[rng.choice(("v", "cmd", "args", "ok", "result", "error", "x"))] = _json_leaf(rng)
        else:
            copy[key] = _json_mutate(value[key], rng, depth + 1)
        return copy
    if isinstance(value, list) and value and depth < 8 and rng.random() < 0.7:
        items = list(value)
        i = rng.randrange(len(items))
        items[i] = _json_mutate(items[i], rng, depth + 1)
        return items
    return _json_leaf(rng)


_DEEP_JSON: list[Any] = []
for _ in range(20):
    _DEEP_JSON = [_DEEP_JSON]


def _json_leaf(rng: random.Random) -> Any:
    return rng.choice(
        (
            None,
            True,
            False,
            0,
            1,
            -1,
            2,
            10**30,
            1.5,
            "",
            "peers",
            "PEERS",
            "a" * 40,
            "\u202e",
            [],
            {},
            {"type": "UsageError", "message": "m", "hint": 1},
            _DEEP_JSON,
        )
    )


def json_mutation(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """Change one node of a JSON line and dump it again (sometimes spaced, sometimes raw
    tokens the strict decoder refuses: NaN, huge exponents, deep nesting, two lines)."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return byte_mutation(data, rng, seeds)
    op = rng.random()
    if op < 0.75:
        text = json.dumps(_json_mutate(value, rng), ensure_ascii=rng.random() < 0.5)
    elif op < 0.85:
        text = data.decode("utf-8", "replace").rstrip("\n")
        text = text.replace("1", rng.choice(("NaN", "Infinity", "1e999", "-0", "1" * 5000)), 1)
    elif op < 0.92:
        text = "[" * 5000 + "]" * 5000
    else:
        text = data.decode("utf-8", "replace").rstrip("\n") + "\n" + "{}"
    return (text + ("\n" if rng.random() < 0.8 else "")).encode("utf-8", "surrogatepass")


_UAPI_VALUES = (
    "",
    "0",
    "-1",
    "65536",
    "18446744073709551616",
    "99999999999999999999",
    "true",
    "false",
    "0" * 64,
    "f" * 63,
    "g" * 64,
    "[::1]:1",
    "[fe80::1%eth0]:51820",
    "1.2.3.4:0",
    "1.2.3.4",
    "[1.2.3.4]:5",
    "::1:51820",
    "10.0.0.0/8",
    "10.0.0.1/33",
    "fd00::/129",
    "fd00::1/64",
    "0.0.0.0/0",
    "-22",
    "+1",
)
_UAPI_KEYS = (
    "public_key",
    "private_key",
    "own_public_key",
    "listen_port",
    "fwmark",
    "endpoint",
    "allowed_ip",
    "persistent_keepalive_interval",
    "last_handshake_time_sec",
    "last_handshake_time_nsec",
    "rx_bytes",
    "tx_bytes",
    "preshared_key",
    "protocol_version",
    "errno",
    "remove",
    "update_only",
    "replace_allowed_ips",
    "replace_peers",
    "unknown_key",
)


def uapi_mutation(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """Drop, repeat, swap or rewrite ``key=value`` lines of a UAPI reply or request."""
    if rng.random() < 0.25:
        return byte_mutation(data, rng, seeds)
    lines = data.decode("ascii", "replace").split("\n")
    op = rng.randrange(6)
    if op == 0 and lines:
        del lines[rng.randrange(len(lines))]
    elif op == 1 and lines:
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines))
    elif op == 2 and len(lines) > 1:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 3 and lines:
        i = rng.randrange(len(lines))
        key = lines[i].split("=", 1)[0] if rng.random() < 0.7 else rng.choice(_UAPI_KEYS)
        lines[i] = f"{key}={rng.choice(_UAPI_VALUES)}"
    elif op == 4:
        key, value = rng.choice(_UAPI_KEYS), rng.choice(_UAPI_VALUES)
        lines.insert(rng.randrange(len(lines) + 1), f"{key}={value}")
    else:
        lines.insert(rng.randrange(len(lines) + 1), "")
    return "\n".join(lines).encode("utf-8", "replace")


def frames_mutation(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """A framed stream (first byte: how the fuzz target cuts it into chunks): nudge a
    4-byte length header, or mutate bytes."""
    if len(data) > 5 and rng.random() < 0.5:
        stream = data[1:]
        pos, headers = 0, []
        while pos + 4 <= len(stream):
            headers.append(pos)
            pos += 4 + int.from_bytes(stream[pos : pos + 4], "big")
        if headers:
            at = 1 + rng.choice(headers)
            value = int.from_bytes(data[at : at + 4], "big")
            value = rng.choice((value + 1, value - 1, 0, 2**32 - 1, 1 << 20, (1 << 20) + 1))
            return data[:at] + (value & 0xFFFFFFFF).to_bytes(4, "big") + data[at + 4 :]
    return byte_mutation(data, rng, seeds)


SHAPED: dict[str, Mutator] = {
    "bytes": byte_mutation,
    "msgpack": msgpack_mutation,
    "babel": babel_mutation,
    "token": token_mutation,
    "json": json_mutation,
    "uapi": uapi_mutation,
    "frames": frames_mutation,
}


def mutate(
    data: bytes, shape: str, rng: random.Random, seeds: Sequence[bytes], rounds: int = 1
) -> bytes:
    """Apply ``rounds`` mutations, each aware of ``shape`` two times in three."""
    shaped = SHAPED[shape]
    for _ in range(rounds):
        data = shaped(data, rng, seeds) if rng.random() < 0.67 else byte_mutation(data, rng, seeds)
    return data
