"""Babel's wire numbers: magic and version, TLV and sub-TLV types, flags and limits.

Also the checks that a field's value fits the wire, which the constructors of the wire
messages (:mod:`meshd.babel.subtlv_types`, :mod:`meshd.babel.tlv`, :mod:`meshd.babel.packet`)
share: they raise :class:`ValueError`, which the decoder converts into
:class:`meshd.errors.DecodeError`. Type numbers:

- TLVs: RFC 8966 (0-10), RFC 8967 (16 MAC, 17 PC, 18 Challenge Request, 19 Challenge Reply).
- Sub-TLVs: Pad1 0, PadN 1, Diversity 2, Timestamp 3 (RFC 9616), Source Prefix 128
  (RFC 9079). A sub-TLV type with bit 0x80 set is mandatory: a TLV carrying one that is not
  understood is ignored as a whole (each TLV's ``has_unknown_mandatory``).
"""

from __future__ import annotations

from typing import Final

MAGIC: Final = 42
VERSION: Final = 2
INFINITY: Final = 0xFFFF
"""The metric of a retraction."""

# TLV types.
PAD1: Final = 0
PADN: Final = 1
ACK_REQ: Final = 2
ACK: Final = 3
HELLO: Final = 4
IHU: Final = 5
ROUTER_ID: Final = 6
NEXT_HOP: Final = 7
UPDATE: Final = 8
ROUTE_REQUEST: Final = 9
SEQNO_REQUEST: Final = 10
MAC: Final = 16
PC: Final = 17
CHALLENGE_REQUEST: Final = 18
CHALLENGE_REPLY: Final = 19
KNOWN_TLV_TYPES: Final = frozenset(
    {
        PAD1,
        PADN,
        ACK_REQ,
        ACK,
        HELLO,
        IHU,
        ROUTER_ID,
        NEXT_HOP,
        UPDATE,
        ROUTE_REQUEST,
        SEQNO_REQUEST,
        MAC,
        PC,
        CHALLENGE_REQUEST,
        CHALLENGE_REPLY,
    }
)

# Sub-TLV types.
SUB_PAD1: Final = 0
SUB_PADN: Final = 1
SUB_DIVERSITY: Final = 2
SUB_TIMESTAMP: Final = 3
SUB_SOURCE_PREFIX: Final = 128
MANDATORY_BIT: Final = 0x80

# Update flags.
FLAG_DEFAULT_PREFIX: Final = 0x80
FLAG_ROUTER_ID: Final = 0x40

# Hello flags.
HELLO_UNICAST: Final = 0x8000

MAX_PC_INDEX: Final = 32
MAX_NONCE: Final = 192


def check_uint(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} {value} does not fit in {bits} bits")


def check_type(name: str, value: int) -> None:
    check_uint(f"{name} type", value, 8)


def check_body(name: str, data: bytes, limit: int = 255) -> None:
    if len(data) > limit:
        raise ValueError(f"{name} of {len(data)} bytes is longer than {limit}")
