"""The Babel packet, and the TLVs about packets rather than routes, as frozen dataclasses.

RFC 8967's TLVs (a MAC in the packet trailer, the packet counter, challenges), the TLV kept
intact and ignored, the union of every TLV (``Tlv``) and of those a trailer may hold
(``TrailerTlv``), and the :class:`Packet` of a body and a trailer. Like the TLVs of
:mod:`meshd.babel.tlv`, each class holds exactly what is on the wire; constructors validate
their fields and raise :class:`ValueError`, which the decoder converts into
:class:`meshd.errors.DecodeError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshd.babel.numbers import (
    MAC,
    MAX_NONCE,
    MAX_PC_INDEX,
    PAD1,
    PADN,
    check_body,
    check_type,
    check_uint,
)
from meshd.babel.tlv import (
    Ack,
    AckReq,
    Hello,
    Ihu,
    NextHop,
    Pad1,
    PadN,
    RouteRequest,
    RouterId,
    SeqnoRequest,
    Update,
)


@dataclass(frozen=True, slots=True)
class Mac:
    """MAC (type 16, RFC 8967). Only MACs in the packet trailer count."""

    mac: bytes

    def __post_init__(self) -> None:
        check_body("MAC", self.mac)

    @property
    def has_unknown_mandatory(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Pc:
    """Packet Counter (type 17, RFC 8967): ``pc`` with the sender's ``index`` (<= 32 bytes)."""

    pc: int
    index: bytes

    def __post_init__(self) -> None:
        check_uint("packet counter", self.pc, 32)
        check_body("PC index", self.index, MAX_PC_INDEX)

    @property
    def has_unknown_mandatory(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class ChallengeRequest:
    """Challenge Request (type 18, RFC 8967), nonce of at most 192 bytes."""

    nonce: bytes

    def __post_init__(self) -> None:
        check_body("challenge nonce", self.nonce, MAX_NONCE)

    @property
    def has_unknown_mandatory(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class ChallengeReply:
    """Challenge Reply (type 19, RFC 8967), echoing a Challenge Request's nonce."""

    nonce: bytes

    def __post_init__(self) -> None:
        check_body("challenge nonce", self.nonce, MAX_NONCE)

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
        check_type("TLV", self.type)
        if self.type == PAD1:
            raise ValueError("TLV type 0 is Pad1 and has no body")
        check_body("TLV", self.body)

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
