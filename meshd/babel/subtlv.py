"""Sub-TLV codec (RFC 8966 4.4): the space between a TLV's natural end and its length.

Shared by :mod:`meshd.babel.codec` for every TLV that has a self-terminating body. Decoding
raises :class:`meshd.errors.DecodeError` on malformed input, and nothing else.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

from meshd.babel.numbers import SUB_DIVERSITY, SUB_PAD1, SUB_PADN, SUB_SOURCE_PREFIX, SUB_TIMESTAMP
from meshd.babel.prefix import AE_IPV4, AE_IPV4_VIA_IPV6, AE_IPV6
from meshd.babel.subtlv_types import (
    Diversity,
    HelloTimestamp,
    IhuTimestamp,
    SourcePrefix,
    SubPad1,
    SubPadN,
    SubTlv,
    UnknownSubTlv,
)
from meshd.errors import DecodeError

_U32: Final = struct.Struct("!I")
_U32_PAIR: Final = struct.Struct("!II")
_SOURCE_AES: Final = frozenset({AE_IPV4, AE_IPV6, AE_IPV4_VIA_IPV6})


def split_untrusted(data: bytes, what: str) -> Iterator[tuple[int, bytes | None]]:
    """Yield ``(type, body)`` for each TLV (or sub-TLV) of ``data``; Pad1 has body None.

    Raises DecodeError when a header or a body runs past the end of ``data``.
    """
    offset, end = 0, len(data)
    while offset < end:
        kind = data[offset]
        if kind == 0:
            yield 0, None
            offset += 1
            continue
        if offset + 2 > end:
            raise DecodeError(f"{what} type {kind} truncated before its length")
        stop = offset + 2 + data[offset + 1]
        if stop > end:
            raise DecodeError(f"{what} type {kind} of length {data[offset + 1]} is truncated")
        yield kind, data[offset + 2 : stop]
        offset = stop


def decode_sub_tlvs(data: bytes, source_ae: int | None = None) -> tuple[SubTlv, ...]:
    """Decode the sub-TLVs that follow a TLV's natural end.

    ``source_ae`` is the AE of an enclosing Update, Route Request or Seqno Request, the only
    TLVs where a Source Prefix (type 128) is understood; elsewhere it stays an unknown
    mandatory sub-TLV, and the TLV is to be ignored.
    """
    subs: list[SubTlv] = []
    for kind, body in split_untrusted(data, "sub-TLV"):
        if body is None:
            subs.append(SubPad1())
        elif kind == SUB_PADN:
            subs.append(SubPadN(body))
        elif kind == SUB_DIVERSITY:
            subs.append(Diversity(body))
        elif kind == SUB_TIMESTAMP and len(body) == _U32.size:
            subs.append(HelloTimestamp(*_U32.unpack(body)))
        elif kind == SUB_TIMESTAMP and len(body) == _U32_PAIR.size:
            subs.append(IhuTimestamp(*_U32_PAIR.unpack(body)))
        elif kind == SUB_SOURCE_PREFIX and source_ae in _SOURCE_AES:
            subs.append(_decode_source(body, source_ae == AE_IPV6))
        else:
            subs.append(UnknownSubTlv(kind, body))
    return tuple(subs)


def _decode_source(body: bytes, ipv6: bool) -> SourcePrefix:
    if not body:
        raise DecodeError("empty source prefix sub-TLV")
    plen = body[0]
    if plen > (128 if ipv6 else 32):
        raise DecodeError(f"source prefix length {plen} too long")
    if len(body) - 1 != (plen + 7) // 8:
        raise DecodeError(f"source prefix of {len(body) - 1} bytes for length {plen}")
    return SourcePrefix(plen, body[1:])


def encode_sub_tlv(sub: SubTlv) -> bytes:
    """The wire bytes of one sub-TLV."""
    if isinstance(sub, SubPad1):
        return bytes([SUB_PAD1])
    if isinstance(sub, SubPadN):
        kind, body = SUB_PADN, sub.data
    elif isinstance(sub, Diversity):
        kind, body = SUB_DIVERSITY, sub.channels
    elif isinstance(sub, HelloTimestamp):
        kind, body = SUB_TIMESTAMP, _U32.pack(sub.transmit)
    elif isinstance(sub, IhuTimestamp):
        kind, body = SUB_TIMESTAMP, _U32_PAIR.pack(sub.origin, sub.receive)
    elif isinstance(sub, SourcePrefix):
        kind, body = SUB_SOURCE_PREFIX, bytes([sub.plen]) + sub.prefix
    else:
        kind, body = sub.type, sub.body
    return bytes([kind, len(body)]) + body


def encode_sub_tlvs(subs: tuple[SubTlv, ...]) -> bytes:
    """The wire bytes of a sequence of sub-TLVs."""
    return b"".join(encode_sub_tlv(sub) for sub in subs)
