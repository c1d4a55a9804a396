"""Babel wire messages: the packet, its TLVs and sub-TLVs, as frozen dataclasses.

Each class holds exactly what is on the wire, including the choices a sender made (flags,
omitted bytes, compressed prefix bytes, reserved fields, padding), so that decoding a valid
packet and encoding it again gives the same bytes. What the fields *mean* once the parser
state of RFC 8966 section 4.5 is applied is worked out by :mod:`meshd.babel.expand`.

Constructors validate their fields and raise :class:`ValueError`; the decoder converts that
into :class:`meshd.errors.DecodeError`. Type numbers:

- TLVs: RFC 8966 (0-10), RFC 8967 (16 MAC, 17 PC, 18 Challenge Request, 19 Challenge Reply).
- Sub-TLVs: Pad1 0, PadN 1, Diversity 2, Timestamp 3 (RFC 9616), Source Prefix 128
  (RFC 9079). A sub-TLV type with bit 0x80 set is mandatory: a TLV carrying one that is not
  understood is ignored as a whole (each TLV's ``has_unknown_mandatory``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from meshd.babel.prefix import (
    AE_IPV4,
    AE_IPV4_VIA_IPV6,
    AE_IPV6,
    IPAddress,
    check_ae,
    encode_address,
    prefix_size,
)

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


def _check_uint(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} {value} does not fit in {bits} bits")


def _check_type(name: str, value: int) -> None:
    _check_uint(f"{name} type", value, 8)


def _check_body(name: str, data: bytes, limit: int = 255) -> None:
    if len(data) > limit:
        raise ValueError(f"{name} of {len(data)} bytes is longer than {limit}")


# --- sub-TLVs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubPad1:
    """One byte of padding inside a TLV."""


@dataclass(frozen=True, slots=True)
class SubPadN:
    """Padding inside a TLV; ``data`` should be zeros but is kept as received."""

    data: bytes = b""

    def __post_init__(self) -> None:
        _check_body("PadN sub-TLV", self.data)


@dataclass(frozen=True, slots=True)
class Diversity:
    """Diversity sub-TLV (type 2): the channels a route goes through."""

    channels: bytes

    def __post_init__(self) -> None:
        _check_body("Diversity sub-TLV", self.channels)


@dataclass(frozen=True, slots=True)
class HelloTimestamp:
    """Timestamp sub-TLV of a Hello (RFC 9616): the sender's transmit time, in µs mod 2^32."""

    transmit: int

    def __post_init__(self) -> None:
        _check_uint("timestamp", self.transmit, 32)


@dataclass(frozen=True, slots=True)
class IhuTimestamp:
    """Timestamp sub-TLV of an IHU (RFC 9616): the Hello's timestamp and when it arrived."""

    origin: int
    receive: int

    def __post_init__(self) -> None:
        _check_uint("origin timestamp", self.origin, 32)
        _check_uint("receive timestamp", self.receive, 32)


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
        _check_uint("source plen", self.plen, 8)
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
        _check_type("sub-TLV", self.type)
        if self.type == SUB_PAD1:
            raise ValueError("sub-TLV type 0 is Pad1 and has no body")
        _check_body("sub-TLV", self.body)

    @property
    def mandatory(self) -> bool:
        """True if the enclosing TLV must be ignored because this is not understood."""
        return bool(self.type & MANDATORY_BIT)


SubTlv = (
    SubPad1 | SubPadN | Diversity | HelloTimestamp | IhuTimestamp | SourcePrefix | UnknownSubTlv
)


def _has_unknown_mandatory(sub_tlvs: tuple[SubTlv, ...]) -> bool:
    return any(isinstance(sub, UnknownSubTlv) and sub.mandatory for sub in sub_tlvs)


def _check_sources(sub_tlvs: tuple[SubTlv, ...], ae: int) -> None:
    sources = [sub for sub in sub_tlvs if isinstance(sub, SourcePrefix)]
    if not sources:
        return
    if ae not in (AE_IPV4, AE_IPV6, AE_IPV4_VIA_IPV6):
        raise ValueError(f"a source prefix cannot go with AE {ae}")
    limit = 32 if ae != AE_IPV6 else 128
    for source in sources:
        if source.plen > limit:
            raise ValueError(f"source prefix length {source.plen} too long for AE {ae}")


def _source_of(sub_tlvs: tuple[SubTlv, ...]) -> SourcePrefix | None:
    for sub in sub_tlvs:
        if isinstance(sub, SourcePrefix):
            return sub
    return None


# --- TLVs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pad1:
    """One byte of padding (type 0)."""

    @property
    def has_unknown_mandatory(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class PadN:
    """Padding (type 1); ``data`` should be zeros but is kept as received."""

    data: bytes = b""

    def __post_init__(self) -> None:
        _check_body("PadN", self.data)

    @property
    def has_unknown_mandatory(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class AckReq:
    """Acknowledgment Request (type 2): answer with an Ack echoing ``opaque``."""

    opaque: int
    interval: int
    reserved: int = 0
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("opaque", self.opaque, 16)
        _check_uint("interval", self.interval, 16)
        _check_uint("reserved", self.reserved, 16)

    @property
    def has_unknown_mandatory(self) -> bool:
        return _has_unknown_mandatory(self.sub_tlvs)


@dataclass(frozen=True, slots=True)
class Ack:
    """Acknowledgment (type 3)."""

    opaque: int
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("opaque", self.opaque, 16)

    @property
    def has_unknown_mandatory(self) -> bool:
        return _has_unknown_mandatory(self.sub_tlvs)


@dataclass(frozen=True, slots=True)
class Hello:
    """Hello (type 4). ``interval`` is in centiseconds; 0 means "no more Hellos promised"."""

    seqno: int
    interval: int
    flags: int = 0
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("seqno", self.seqno, 16)
        _check_uint("interval", self.interval, 16)
        _check_uint("flags", self.flags, 16)

    @property
    def unicast(self) -> bool:
        """The U flag: this Hello belongs to the unicast Hello sequence."""
        return bool(self.flags & HELLO_UNICAST)

    @property
    def timestamp(self) -> int | None:
        """The RFC 9616 transmit timestamp, if the Hello carries one."""
        for sub in self.sub_tlvs:
            if isinstance(sub, HelloTimestamp):
                return sub.transmit
        return None

    @property
    def has_unknown_mandatory(self) -> bool:
        return _has_unknown_mandatory(self.sub_tlvs)


@dataclass(frozen=True, slots=True)
class Ihu:
    """I Heard You (type 5): the receive cost towards ``address`` (None for AE 0: anyone).

    RFC 9229 gives AE 4 no meaning here; such an IHU decodes but is ignored.
    """

    rxcost: int
    interval: int
    ae: int
    address: IPAddress | None
    reserved: int = 0
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("rxcost", self.rxcost, 16)
        _check_uint("interval", self.interval, 16)
        _check_uint("reserved", self.reserved, 8)
        encode_address(self.ae, self.address)

    @property
    def timestamps(self) -> IhuTimestamp | None:
        """The RFC 9616 origin and receive timestamps, if the IHU carries them."""
        for sub in self.sub_tlvs:
            if isinstance(sub, IhuTimestamp):
                return sub
        return None

    @property
    def has_unknown_mandatory(self) -> bool:
        return _has_unknown_mandatory(self.sub_tlvs)


@dataclass(frozen=True, slots=True)
class RouterId:
    """Router-Id (type 6): the router-id of the Updates that follow in this packet."""

    router_id: bytes
    reserved: int = 0
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        if len(self.router_id) != 8:
            raise ValueError(f"router-id must be 8 bytes, not {len(self.router_id)}")
        _check_uint("reserved", self.reserved, 16)

    @property
    def has_unknown_mandatory(self) -> bool:
        return _has_unknown_mandatory(self.sub_tlvs)


@dataclass(frozen=True, slots=True)
class NextHop:
    """Next Hop (type 7): the next hop of the following Updates of this address family.

    RFC 8966 forbids AE 0 and RFC 9229 AE 4 here; both decode but are ignored.
    """

    ae: int
    address: IPAddress | None
    reserved: int = 0
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("reserved", self.reserved, 8)
        encode_address(self.ae, self.address)

    @property
    def has_unknown_mandatory(self) -> bool:
        return _has_unknown_mandatory(self.sub_tlvs)


@dataclass(frozen=True, slots=True)
class Update:
    """Update (type 8), exactly as sent.

    ``prefix`` holds the prefix bytes on the wire: ``ceil(plen / 8) - omitted`` bytes, the
    first ``omitted`` bytes coming from the AE's default prefix (for AE 3, ``plen`` counts
    the implied ``fe80::/64``). Flags: 0x80 sets the default prefix, 0x40 takes the router-id
    from the prefix. Use :func:`meshd.babel.expand.expand` for the routes this announces and
    :func:`meshd.babel.expand.build_updates` to make Updates from routes.
    """

    ae: int
    flags: int
    plen: int
    omitted: int
    interval: int
    seqno: int
    metric: int
    prefix: bytes
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        check_ae(self.ae)
        _check_uint("flags", self.flags, 8)
        _check_uint("plen", self.plen, 8)
        _check_uint("omitted", self.omitted, 8)
        _check_uint("interval", self.interval, 16)
        _check_uint("seqno", self.seqno, 16)
        _check_uint("metric", self.metric, 16)
        if len(self.prefix) != prefix_size(self.ae, self.plen, self.omitted):
            raise ValueError(
                f"AE {self.ae} prefix of {len(self.prefix)} bytes does not match "
                f"plen {self.plen} with {self.omitted} omitted"
            )
        _check_sources(self.sub_tlvs, self.ae)

    @property
    def source(self) -> SourcePrefix | None:
        """The RFC 9079 source prefix, if any."""
        return _source_of(self.sub_tlvs)

    @property
    def has_unknown_mandatory(self) -> bool:
        return _has_unknown_mandatory(self.sub_tlvs)


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """Route Request (type 9): ``prefix`` holds ``ceil(plen / 8)`` bytes; AE 0 asks for all."""

    ae: int
    plen: int
    prefix: bytes
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("plen", self.plen, 8)
        if len(self.prefix) != prefix_size(self.ae, self.plen):
            raise ValueError(f"AE {self.ae} prefix of {len(self.prefix)} bytes for {self.plen}")
        _check_sources(self.sub_tlvs, self.ae)

    @property
    def source(self) -> SourcePrefix | None:
        """The RFC 9079 source prefix, if any."""
        return _source_of(self.sub_tlvs)

    @property
    def has_unknown_mandatory(self) -> bool:
        return _has_unknown_mandatory(self.sub_tlvs)


@dataclass(frozen=True, slots=True)
class SeqnoRequest:
    """Seqno Request (type 10): ask for ``seqno`` or newer of a route, over ``hop_count`` hops.

    RFC 8966 forbids AE 0 here; such a request decodes but is ignored.
    """

    ae: int
    plen: int
    seqno: int
    hop_count: int
    router_id: bytes
    prefix: bytes
    reserved: int = 0
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        _check_uint("plen", self.plen, 8)
        _check_uint("seqno", self.seqno, 16)
        _check_uint("hop count", self.hop_count, 8)
        _check_uint("reserved", self.reserved, 8)
        if len(self.router_id) != 8:
            raise ValueError(f"router-id must be 8 bytes, not {len(self.router_id)}")
        if len(self.prefix) != prefix_size(self.ae, self.plen):
            raise ValueError(f"AE {self.ae} prefix of {len(self.prefix)} bytes for {self.plen}")
        _check_sources(self.sub_tlvs, self.ae)

    @property
    def source(self) -> SourcePrefix | None:
        """The RFC 9079 source prefix, if any."""
        return _source_of(self.sub_tlvs)

    @property
    def has_unknown_mandatory(self) -> bool:
        return _has_unknown_mandatory(self.sub_tlvs)


@dataclass(frozen=True, slots=True)
class Mac:
    """MAC (type 16, RFC 8967). Only MACs in the packet trailer count."""

    mac: bytes

    def __post_init__(self) -> None:
        _check_body("MAC", self.mac)

    @property
    def has_unknown_mandatory(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Pc:
    """Packet Counter (type 17, RFC 8967): ``pc`` with the sender's ``index`` (<= 32 bytes)."""

    pc: int
    index: bytes

    def __post_init__(self) -> None:
        _check_uint("packet counter", self.pc, 32)
        _check_body("PC index", self.index, MAX_PC_INDEX)

    @property
    def has_unknown_mandatory(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class ChallengeRequest:
    """Challenge Request (type 18, RFC 8967), nonce of at most 192 bytes."""

    nonce: bytes

    def __post_init__(self) -> None:
        _check_body("challenge nonce", self.nonce, MAX_NONCE)

    @property
    def has_unknown_mandatory(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class ChallengeReply:
    """Challenge Reply (type 19, RFC 8967), echoing a Challenge Request's nonce."""

    nonce: bytes

    def __post_init__(self) -> None:
        _check_body("challenge nonce", self.nonce, MAX_NONCE)

    @property
    def has_unknown_mandatory(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class UnknownTlv:
    """A TLV kept intact and ignored.

    In the body: a TLV of a type this codec does not know, or of a known type with an
    address encoding it does not know. In the packet trailer: any TLV other than Pad1, PadN
    and MAC.
    """

    type: int
    body: bytes

    def __post_init__(self) -> None:
        _check_type("TLV", self.type)
        if self.type == PAD1:
            raise ValueError("TLV type 0 is Pad1 and has no body")
        _check_body("TLV", self.body)

    @property
    def has_unknown_mandatory(self) -> bool:
        return False


Tlv = (
    Pad1
    | PadN
    | AckReq
    | Ack
    | Hello
    | Ihu
    | RouterId
    | NextHop
    | Update
    | RouteRequest
    | SeqnoRequest
    | Mac
    | Pc
    | ChallengeRequest
    | ChallengeReply
    | UnknownTlv
)
TrailerTlv = Pad1 | PadN | Mac | UnknownTlv


@dataclass(frozen=True, slots=True)
class Packet:
    """A Babel packet: magic 42, version 2, the body TLVs, then the trailer TLVs.

    The trailer (RFC 8966 4.2) lies after the body length; RFC 8967 puts MACs there.
    """

    tlvs: tuple[Tlv, ...] = ()
    trailer: tuple[TrailerTlv, ...] = ()

    def __post_init__(self) -> None:
        for tlv in self.trailer:
            if not isinstance(tlv, Pad1 | PadN | Mac | UnknownTlv):
                raise ValueError(f"{type(tlv).__name__} cannot go in the packet trailer")
            if isinstance(tlv, UnknownTlv) and tlv.type in (PADN, MAC):
                raise ValueError(f"trailer TLV type {tlv.type} must be decoded, not unknown")

    @property
    def macs(self) -> tuple[bytes, ...]:
        """The MACs in the trailer."""
        return tuple(tlv.mac for tlv in self.trailer if isinstance(tlv, Mac))
