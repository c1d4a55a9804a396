"""Babel sub-TLVs (RFC 8966 4.4) as frozen dataclasses, and what TLVs ask of their sub-TLVs.

Each class holds exactly what is on the wire (padding bytes, unknown sub-TLVs), so that
decoding and encoding again gives the same bytes; :mod:`meshd.babel.subtlv` is their codec.
Constructors validate their fields and raise :class:`ValueError`; the decoder converts that
into :class:`meshd.errors.DecodeError`. A sub-TLV type with bit 0x80 set is mandatory: a TLV
carrying one that is not understood is ignored as a whole (:func:`any_unknown_mandatory`).
"""

from __future__ import annotations

from dataclasses import dataclass

from meshd.babel.numbers import MANDATORY_BIT, SUB_PAD1, check_body, check_type, check_uint
from meshd.babel.prefix import AE_IPV4, AE_IPV4_VIA_IPV6, AE_IPV6


@dataclass(frozen=True, slots=True)
class SubPad1:
    """One byte of padding inside a TLV."""


@dataclass(frozen=True, slots=True)
class SubPadN:
    """Padding inside a TLV; ``data`` should be zeros but is kept as received."""

    data: bytes = b""

    def __post_init__(self) -> None:
        check_body("PadN sub-TLV", self.data)


@dataclass(frozen=True, slots=True)
class Diversity:
    """Diversity sub-TLV (type 2): the channels a route goes through."""

    channels: bytes

    def __post_init__(self) -> None:
        check_body("Diversity sub-TLV", self.channels)


@dataclass(frozen=True, slots=True)
class HelloTimestamp:
    """Timestamp sub-TLV of a Hello (RFC 9616): the sender's transmit time, in µs mod 2^32."""

    transmit: int

    def __post_init__(self) -> None:
        check_uint("timestamp", self.transmit, 32)


@dataclass(frozen=True, slots=True)
class IhuTimestamp:
    """Timestamp sub-TLV of an IHU (RFC 9616): the Hello's timestamp and when it arrived."""

    origin: int
    receive: int

    def __post_init__(self) -> None:
        check_uint("origin timestamp", self.origin, 32)
        check_uint("receive timestamp", self.receive, 32)


@dataclass(frozen=True, slots=True)
class SourcePrefix:
    """Source Prefix sub-TLV (type 128, mandatory, RFC 9079).

    ``prefix`` holds the ``ceil(plen / 8)`` bytes sent, in the enclosing TLV's AE (1, 2 or 4;
    never compressed). RFC 9079 forbids ``plen`` 0 and repeated source prefixes; such TLVs
    decode but are ignored by :mod:`meshd.babel.expand`.
    """

    plen: int
    prefix: bytes

    def __post_init__(self) -> None:
        check_uint("source plen", self.plen, 8)
        if self.plen > 128 or len(self.prefix) != (self.plen + 7) // 8:
            raise ValueError(f"source prefix of {len(self.prefix)} bytes for plen {self.plen}")


@dataclass(frozen=True, slots=True)
class UnknownSubTlv:
    """A sub-TLV this codec does not understand here, kept intact.

    A known type can land here too when its length or its enclosing TLV does not fit
    (a Timestamp that is neither 4 nor 8 bytes, a Source Prefix inside a Hello).
    """

    type: int
    body: bytes

    def __post_init__(self) -> None:
        check_type("sub-TLV", self.type)
        if self.type == SUB_PAD1:
            raise ValueError("sub-TLV type 0 is Pad1 and has no body")
        check_body("sub-TLV", self.body)

    @property
    def mandatory(self) -> bool:
        """True if the enclosing TLV must be ignored because this is not understood."""
        return bool(self.type & MANDATORY_BIT)


SubTlv = (
    SubPad1 | SubPadN | Diversity | HelloTimestamp | IhuTimestamp | SourcePrefix | UnknownSubTlv
)


def any_unknown_mandatory(sub_tlvs: tuple[SubTlv, ...]) -> bool:
    return any(isinstance(sub, UnknownSubTlv) and sub.mandatory for sub in sub_tlvs)


def check_sources(sub_tlvs: tuple[SubTlv, ...], ae: int) -> None:
    sources = [sub for sub in sub_tlvs if isinstance(sub, SourcePrefix)]
    if not sources:
        return
    if ae not in (AE_IPV4, AE_IPV6, AE_IPV4_VIA_IPV6):
        raise ValueError(f"a source prefix cannot go with AE {ae}")
    limit = 32 if ae != AE_IPV6 else 128
    for source in sources:
        if source.plen > limit:
            raise ValueError(f"source prefix length {source.plen} too long for AE {ae}")


def source_of(sub_tlvs: tuple[SubTlv, ...]) -> SourcePrefix | None:
    for sub in sub_tlvs:
        if isinstance(sub, SourcePrefix):
            return sub
    return None
