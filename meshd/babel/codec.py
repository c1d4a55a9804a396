"""Babel packet codec: bytes <-> :class:`meshd.babel.packet.Packet` (RFC 8966 section 4).

:func:`decode_packet_untrusted` takes the UDP payload of a packet from the network and
returns a :class:`Packet` or raises :class:`meshd.errors.DecodeError`, and nothing else.
:func:`encode_packet` is its inverse: for any packet that decodes, encoding the result gives
the same bytes back.

What is malformed (DecodeError, the whole packet is dropped): a bad magic or version, a body
length past the end of the datagram, a TLV or sub-TLV running past its enclosing length, a
TLV shorter than its fixed part, a prefix length that its AE cannot carry, more omitted bytes
than the prefix has, an address or prefix running past the TLV, an over-long PC index or
nonce, a malformed Source Prefix.

What is kept but not understood (so it re-encodes byte for byte, and
:mod:`meshd.babel.expand` ignores it): TLVs of unknown type, TLVs of known type with an
unknown AE, unknown sub-TLVs, trailer TLVs other than Pad1, PadN and MAC.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from meshd.babel.numbers import (
    ACK,
    ACK_REQ,
    CHALLENGE_REPLY,
    CHALLENGE_REQUEST,
    HELLO,
    IHU,
    MAC,
    MAGIC,
    NEXT_HOP,
    PADN,
    PC,
    ROUTE_REQUEST,
    ROUTER_ID,
    SEQNO_REQUEST,
    UPDATE,
    VERSION,
)
from meshd.babel.packet import (
    ChallengeReply,
    ChallengeRequest,
    Mac,
    Packet,
    Pc,
    Tlv,
    TrailerTlv,
    UnknownTlv,
)
from meshd.babel.prefix import (
    AE_WILDCARD,
    KNOWN_AES,
    address_size,
    decode_address,
    encode_address,
    prefix_size,
)
from meshd.babel.subtlv import decode_sub_tlvs, encode_sub_tlvs, split_untrusted
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
from meshd.errors import DecodeError

HEADER: Final = struct.Struct("!BBH")
"""Packet header: magic, version, body length."""

_ACK_REQ: Final = struct.Struct("!HHH")  # reserved, opaque, interval
_ACK: Final = struct.Struct("!H")  # opaque
_HELLO: Final = struct.Struct("!HHH")  # flags, seqno, interval
_IHU: Final = struct.Struct("!BBHH")  # ae, reserved, rxcost, interval
_ROUTER_ID: Final = struct.Struct("!H8s")  # reserved, router-id
_NEXT_HOP: Final = struct.Struct("!BB")  # ae, reserved
_UPDATE: Final = struct.Struct("!BBBBHHH")  # ae, flags, plen, omitted, interval, seqno, metric
_ROUTE_REQUEST: Final = struct.Struct("!BB")  # ae, plen
_SEQNO_REQUEST: Final = struct.Struct("!BBHBB8s")  # ae, plen, seqno, hop count, reserved, id
_PC: Final = struct.Struct("!I")  # packet counter

MAX_BODY: Final = 0xFFFF


def decode_packet_untrusted(data: bytes) -> Packet:
    """Decode one Babel packet (a UDP payload); raise DecodeError if it is malformed."""
    if len(data) < HEADER.size:
        raise DecodeError(f"Babel packet of {len(data)} bytes is shorter than its header")
    magic, version, body_length = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError(f"not a Babel packet: magic {magic}")
    if version != VERSION:
        raise DecodeError(f"unsupported Babel version {version}")
    end = HEADER.size + body_length
    if end > len(data):
        raise DecodeError(f"body length {body_length} runs past a {len(data)}-byte packet")
    try:
        tlvs = tuple(
            _decode_tlv(kind, body)
            for kind, body in split_untrusted(data[HEADER.size : end], "TLV")
        )
        trailer = tuple(
            _decode_trailer_tlv(kind, body)
            for kind, body in split_untrusted(data[end:], "trailer TLV")
        )
    except ValueError as exc:
        raise DecodeError(f"malformed Babel packet: {exc}") from exc
    return Packet(tlvs, trailer)


def encode_packet(packet: Packet) -> bytes:
    """Encode a packet; raise ValueError if a TLV or the body is too long for its length."""
    body = b"".join(encode_tlv(tlv) for tlv in packet.tlvs)
    if len(body) > MAX_BODY:
        raise ValueError(f"packet body of {len(body)} bytes is too long")
    trailer = b"".join(encode_tlv(tlv) for tlv in packet.trailer)
    return HEADER.pack(MAGIC, VERSION, len(body)) + body + trailer


def encode_tlv(tlv: Tlv) -> bytes:
    """The wire bytes of one TLV; raise ValueError if its body exceeds 255 bytes."""
    if isinstance(tlv, Pad1):
        return b"\x00"
    kind, body = _encode_body(tlv)
    if len(body) > 255:
        raise ValueError(f"TLV type {kind} body of {len(body)} bytes is too long")
    return bytes([kind, len(body)]) + body


# --- decoding -------------------------------------------------------------------------------


def _fixed(layout: struct.Struct, body: bytes, name: str) -> tuple[Any, ...]:
    if len(body) < layout.size:
        raise ValueError(f"{name} TLV of {len(body)} bytes is shorter than {layout.size}")
    return layout.unpack_from(body)


def _decode_trailer_tlv(kind: int, body: bytes | None) -> TrailerTlv:
    if body is None:
        return Pad1()
    if kind == PADN:
        return PadN(body)
    if kind == MAC:
        return Mac(body)
    return UnknownTlv(kind, body)


def _decode_tlv(kind: int, body: bytes | None) -> Tlv:
    if body is None:
        return Pad1()
    if kind == PADN:
        return PadN(body)
    if kind == ACK_REQ:
        reserved, opaque, interval = _fixed(_ACK_REQ, body, "AckReq")
        subs = decode_sub_tlvs(body[_ACK_REQ.size :])
        return AckReq(opaque, interval, reserved, subs)
    if kind == ACK:
        (opaque,) = _fixed(_ACK, body, "Ack")
        return Ack(opaque, decode_sub_tlvs(body[_ACK.size :]))
    if kind == HELLO:
        flags, seqno, interval = _fixed(_HELLO, body, "Hello")
        subs = decode_sub_tlvs(body[_HELLO.size :])
        return Hello(seqno, interval, flags, subs)
    if kind == IHU:
        return _decode_ihu(body)
    if kind == ROUTER_ID:
        reserved, router_id = _fixed(_ROUTER_ID, body, "Router-Id")
        subs = decode_sub_tlvs(body[_ROUTER_ID.size :])
        return RouterId(router_id, reserved, subs)
    if kind == NEXT_HOP:
        return _decode_next_hop(body)
    if kind == UPDATE:
        return _decode_update(body)
    if kind == ROUTE_REQUEST:
        return _decode_route_request(body)
    if kind == SEQNO_REQUEST:
        return _decode_seqno_request(body)
    if kind == MAC:
        return Mac(body)
    if kind == PC:
        (counter,) = _fixed(_PC, body, "PC")
        return Pc(counter, body[_PC.size :])
    if kind == CHALLENGE_REQUEST:
        return ChallengeRequest(body)
    if kind == CHALLENGE_REPLY:
        return ChallengeReply(body)
    return UnknownTlv(kind, body)


def _take(body: bytes, start: int, size: int, what: str) -> bytes:
    if start + size > len(body):
        raise ValueError(f"{what} of {size} bytes runs past its TLV")
    return body[start : start + size]


def _decode_ihu(body: bytes) -> Ihu | UnknownTlv:
    ae, reserved, rxcost, interval = _fixed(_IHU, body, "IHU")
    if ae not in KNOWN_AES:
        return UnknownTlv(IHU, body)
    size = address_size(ae)
    raw = _take(body, _IHU.size, size, "IHU address")
    address = None if ae == AE_WILDCARD else decode_address(ae, raw)
    subs = decode_sub_tlvs(body[_IHU.size + size :])
    return Ihu(rxcost, interval, ae, address, reserved, subs)


def _decode_next_hop(body: bytes) -> NextHop | UnknownTlv:
    ae, reserved = _fixed(_NEXT_HOP, body, "Next Hop")
    if ae not in KNOWN_AES:
        return UnknownTlv(NEXT_HOP, body)
    size = address_size(ae)
    raw = _take(body, _NEXT_HOP.size, size, "next hop")
    address = None if ae == AE_WILDCARD else decode_address(ae, raw)
    subs = decode_sub_tlvs(body[_NEXT_HOP.size + size :])
    return NextHop(ae, address, reserved, subs)


def _decode_update(body: bytes) -> Update | UnknownTlv:
    ae, flags, plen, omitted, interval, seqno, metric = _fixed(_UPDATE, body, "Update")
    if ae not in KNOWN_AES:
        return UnknownTlv(UPDATE, body)
    size = prefix_size(ae, plen, omitted)
    prefix = _take(body, _UPDATE.size, size, "Update prefix")
    subs = decode_sub_tlvs(body[_UPDATE.size + size :], ae)
    return Update(ae, flags, plen, omitted, interval, seqno, metric, prefix, subs)


def _decode_route_request(body: bytes) -> RouteRequest | UnknownTlv:
    ae, plen = _fixed(_ROUTE_REQUEST, body, "Route Request")
    if ae not in KNOWN_AES:
        return UnknownTlv(ROUTE_REQUEST, body)
    size = prefix_size(ae, plen)
    prefix = _take(body, _ROUTE_REQUEST.size, size, "Route Request prefix")
    subs = decode_sub_tlvs(body[_ROUTE_REQUEST.size + size :], ae)
    return RouteRequest(ae, plen, prefix, subs)


def _decode_seqno_request(body: bytes) -> SeqnoRequest | UnknownTlv:
    ae, plen, seqno, hop_count, reserved, router_id = _fixed(_SEQNO_REQUEST, body, "Seqno Request")
    if ae not in KNOWN_AES:
        return UnknownTlv(SEQNO_REQUEST, body)
    size = prefix_size(ae, plen)
    prefix = _take(body, _SEQNO_REQUEST.size, size, "Seqno Request prefix")
    subs = decode_sub_tlvs(body[_SEQNO_REQUEST.size + size :], ae)
    return SeqnoRequest(ae, plen, seqno, hop_count, router_id, prefix, reserved, subs)


# --- encoding -------------------------------------------------------------------------------


def _encode_body(tlv: Tlv) -> tuple[int, bytes]:
    if isinstance(tlv, PadN):
        return PADN, tlv.data
    if isinstance(tlv, AckReq):
        fixed = _ACK_REQ.pack(tlv.reserved, tlv.opaque, tlv.interval)
        return ACK_REQ, fixed + encode_sub_tlvs(tlv.sub_tlvs)
    if isinstance(tlv, Ack):
        return ACK, _ACK.pack(tlv.opaque) + encode_sub_tlvs(tlv.sub_tlvs)
    if isinstance(tlv, Hello):
        fixed = _HELLO.pack(tlv.flags, tlv.seqno, tlv.interval)
        return HELLO, fixed + encode_sub_tlvs(tlv.sub_tlvs)
    if isinstance(tlv, Ihu):
        fixed = _IHU.pack(tlv.ae, tlv.reserved, tlv.rxcost, tlv.interval)
        address = encode_address(tlv.ae, tlv.address)
        return IHU, fixed + address + encode_sub_tlvs(tlv.sub_tlvs)
    if isinstance(tlv, RouterId):
        fixed = _ROUTER_ID.pack(tlv.reserved, tlv.router_id)
        return ROUTER_ID, fixed + encode_sub_tlvs(tlv.sub_tlvs)
    if isinstance(tlv, NextHop):
        fixed = _NEXT_HOP.pack(tlv.ae, tlv.reserved)
        address = encode_address(tlv.ae, tlv.address)
        return NEXT_HOP, fixed + address + encode_sub_tlvs(tlv.sub_tlvs)
    if isinstance(tlv, Update):
        fixed = _UPDATE.pack(
            tlv.ae, tlv.flags, tlv.plen, tlv.omitted, tlv.interval, tlv.seqno, tlv.metric
        )
        return UPDATE, fixed + tlv.prefix + encode_sub_tlvs(tlv.sub_tlvs)
    if isinstance(tlv, RouteRequest):
        fixed = _ROUTE_REQUEST.pack(tlv.ae, tlv.plen)
        return ROUTE_REQUEST, fixed + tlv.prefix + encode_sub_tlvs(tlv.sub_tlvs)
    if isinstance(tlv, SeqnoRequest):
        fixed = _SEQNO_REQUEST.pack(
            tlv.ae, tlv.plen, tlv.seqno, tlv.hop_count, tlv.reserved, tlv.router_id
        )
        return SEQNO_REQUEST, fixed + tlv.prefix + encode_sub_tlvs(tlv.sub_tlvs)
    if isinstance(tlv, Mac):
        return MAC, tlv.mac
    if isinstance(tlv, Pc):
        return PC, _PC.pack(tlv.pc) + tlv.index
    if isinstance(tlv, ChallengeRequest):
        return CHALLENGE_REQUEST, tlv.nonce
    if isinstance(tlv, ChallengeReply):
        return CHALLENGE_REPLY, tlv.nonce
    if isinstance(tlv, UnknownTlv):
        return tlv.type, tlv.body
    raise TypeError(f"not a Babel TLV: {tlv!r}")
