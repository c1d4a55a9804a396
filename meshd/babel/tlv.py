"""Babel TLVs of RFC 8966 (types 0-10) as frozen dataclasses.

Each class holds exactly what is on the wire, including the choices a sender made (flags,
omitted bytes, compressed prefix bytes, reserved fields, padding), so that decoding a valid
packet and encoding it again gives the same bytes. What the fields *mean* once the parser
state of RFC 8966 section 4.5 is applied is worked out by :mod:`meshd.babel.expand`.

Constructors validate their fields and raise :class:`ValueError`; the decoder converts that
into :class:`meshd.errors.DecodeError`. The type numbers and flags are in
:mod:`meshd.babel.numbers`, the sub-TLVs in :mod:`meshd.babel.subtlv_types`; RFC 8967's
TLVs, the unknown TLV and the packet in :mod:`meshd.babel.packet`.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshd.babel.numbers import HELLO_UNICAST, check_body, check_uint
from meshd.babel.prefix import IPAddress, check_ae, encode_address, prefix_size
from meshd.babel.subtlv_types import (
    HelloTimestamp,
    IhuTimestamp,
    SourcePrefix,
    SubTlv,
    any_unknown_mandatory,
    check_sources,
    source_of,
)


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
        check_body("PadN", self.data)

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
        check_uint("opaque", self.opaque, 16)
        check_uint("interval", self.interval, 16)
        check_uint("reserved", self.reserved, 16)

    @property
    def has_unknown_mandatory(self) -> bool:
        return any_unknown_mandatory(self.sub_tlvs)


@dataclass(frozen=True, slots=True)
class Ack:
    """Acknowledgment (type 3)."""

    opaque: int
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        check_uint("opaque", self.opaque, 16)

    @property
    def has_unknown_mandatory(self) -> bool:
        return any_unknown_mandatory(self.sub_tlvs)


@dataclass(frozen=True, slots=True)
class Hello:
    """Hello (type 4). ``interval`` is in centiseconds; 0 means "no more Hellos promised"."""

    seqno: int
    interval: int
    flags: int = 0
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        check_uint("seqno", self.seqno, 16)
        check_uint("interval", self.interval, 16)
        check_uint("flags", self.flags, 16)

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
        return any_unknown_mandatory(self.sub_tlvs)


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
        check_uint("rxcost", self.rxcost, 16)
        check_uint("interval", self.interval, 16)
        check_uint("reserved", self.reserved, 8)
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
        return any_unknown_mandatory(self.sub_tlvs)


@dataclass(frozen=True, slots=True)
class RouterId:
    """Router-Id (type 6): the router-id of the Updates that follow in this packet."""

    router_id: bytes
    reserved: int = 0
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        if len(self.router_id) != 8:
            raise ValueError(f"router-id must be 8 bytes, not {len(self.router_id)}")
        check_uint("reserved", self.reserved, 16)

    @property
    def has_unknown_mandatory(self) -> bool:
        return any_unknown_mandatory(self.sub_tlvs)


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
        check_uint("reserved", self.reserved, 8)
        encode_address(self.ae, self.address)

    @property
    def has_unknown_mandatory(self) -> bool:
        return any_unknown_mandatory(self.sub_tlvs)


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
        check_uint("flags", self.flags, 8)
        check_uint("plen", self.plen, 8)
        check_uint("omitted", self.omitted, 8)
        check_uint("interval", self.interval, 16)
        check_uint("seqno", self.seqno, 16)
        check_uint("metric", self.metric, 16)
        if len(self.prefix) != prefix_size(self.ae, self.plen, self.omitted):
            raise ValueError(
                f"AE {self.ae} prefix of {len(self.prefix)} bytes does not match "
                f"plen {self.plen} with {self.omitted} omitted"
            )
        check_sources(self.sub_tlvs, self.ae)

    @property
    def source(self) -> SourcePrefix | None:
        """The RFC 9079 source prefix, if any."""
        return source_of(self.sub_tlvs)

    @property
    def has_unknown_mandatory(self) -> bool:
        return any_unknown_mandatory(self.sub_tlvs)


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """Route Request (type 9): ``prefix`` holds ``ceil(plen / 8)`` bytes; AE 0 asks for all."""

    ae: int
    plen: int
    prefix: bytes
    sub_tlvs: tuple[SubTlv, ...] = ()

    def __post_init__(self) -> None:
        check_uint("plen", self.plen, 8)
        if len(self.prefix) != prefix_size(self.ae, self.plen):
            raise ValueError(f"AE {self.ae} prefix of {len(self.prefix)} bytes for {self.plen}")
        check_sources(self.sub_tlvs, self.ae)

    @property
    def source(self) -> SourcePrefix | None:
        """The RFC 9079 source prefix, if any."""
        return source_of(self.sub_tlvs)

    @property
    def has_unknown_mandatory(self) -> bool:
        return any_unknown_mandatory(self.sub_tlvs)


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
        check_uint("plen", self.plen, 8)
        check_uint("seqno", self.seqno, 16)
        check_uint("hop count", self.hop_count, 8)
        check_uint("reserved", self.reserved, 8)
        if len(self.router_id) != 8:
            raise ValueError(f"router-id must be 8 bytes, not {len(self.router_id)}")
        if len(self.prefix) != prefix_size(self.ae, self.plen):
            raise ValueError(f"AE {self.ae} prefix of {len(self.prefix)} bytes for {self.plen}")
        check_sources(self.sub_tlvs, self.ae)

    @property
    def source(self) -> SourcePrefix | None:
        """The RFC 9079 source prefix, if any."""
        return source_of(self.sub_tlvs)

    @property
    def has_unknown_mandatory(self) -> bool:
        return any_unknown_mandatory(self.sub_tlvs)
