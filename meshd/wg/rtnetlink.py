"""rtnetlink messages: the few meshd sends and the kernel's replies to them (pure).

meshd asks the kernel for a dozen things: a link's index by name, every link and address,
a link created, deleted, brought up or switched to ``addrgenmode none``, addresses added
and removed, routes added, replaced, removed and dumped. This module encodes those requests
and decodes the replies (``struct``, host byte order, as netlink is); the socket is
:mod:`meshd.wg.netlink`'s. The kernel's replies are read as untrusted bytes:
:func:`decode_messages_untrusted` raises only :class:`~meshd.errors.DecodeError`.

Only the fields meshd reads are kept (:class:`Link`, :class:`Address`, :class:`Route`); an
attribute it does not know is skipped, a message of a type or family it does not ask for is
:class:`Ignored`. :func:`encode_message` writes any of them back (the requests, and the fuzz
harness's round trip).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final, TypeVar

from meshd.errors import BackendError, DecodeError

IPAddress = IPv4Address | IPv6Address

# Address families (linux/socket.h).
AF_UNSPEC: Final = 0
AF_INET: Final = 2
AF_INET6: Final = 10

# Message types (linux/netlink.h, linux/rtnetlink.h).
NLMSG_NOOP: Final = 1
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
RTM_NEWLINK: Final = 16
RTM_DELLINK: Final = 17
RTM_GETLINK: Final = 18
RTM_NEWADDR: Final = 20
RTM_DELADDR: Final = 21
RTM_GETADDR: Final = 22
RTM_NEWROUTE: Final = 24
RTM_DELROUTE: Final = 25
RTM_GETROUTE: Final = 26

# Header flags.
NLM_F_REQUEST: Final = 0x01
NLM_F_MULTI: Final = 0x02
NLM_F_ACK: Final = 0x04
NLM_F_DUMP: Final = 0x300
NLM_F_REPLACE: Final = 0x100
NLM_F_EXCL: Final = 0x200
NLM_F_CREATE: Final = 0x400

# Attributes.
IFLA_IFNAME: Final = 3
IFLA_MTU: Final = 4
IFLA_LINKINFO: Final = 18
IFLA_INFO_KIND: Final = 1
IFLA_AF_SPEC: Final = 26
IFLA_INET6_ADDR_GEN_MODE: Final = 8
IFA_ADDRESS: Final = 1
IFA_LOCAL: Final = 2
IFA_FLAGS: Final = 8
RTA_DST: Final = 1
RTA_SRC: Final = 2
RTA_OIF: Final = 4
RTA_GATEWAY: Final = 5
RTA_PRIORITY: Final = 6
RTA_TABLE: Final = 15
RTA_VIA: Final = 18

IFF_UP: Final = 0x1
IFA_F_NODAD: Final = 0x02
IFA_F_TENTATIVE: Final = 0x40
RT_SCOPE_UNIVERSE: Final = 0
RT_SCOPE_SITE: Final = 200
RT_SCOPE_LINK: Final = 253
RT_SCOPE_HOST: Final = 254
RT_SCOPE_NOWHERE: Final = 255
RT_TABLE_COMPAT: Final = 252
RT_TABLE_MAIN: Final = 254
RTN_UNICAST: Final = 1
#: IFLA_INET6_ADDR_GEN_MODE values: 0 eui64, 1 none, 2 stable-privacy, 3 random.
ADDR_GEN_MODE_NONE: Final = 1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table,
# protocol, scope, type, flags
_ATTR = struct.Struct("=HH")  # nlattr: length, type
_ERROR = struct.Struct("=i")
_U32 = struct.Struct("=I")
_NLA_TYPE_MASK: Final = 0x3FFF
_ADDRESS_LENGTH: Final = {AF_INET: 4, AF_INET6: 16}


class RtnetlinkError(BackendError):
    """The kernel refused a request: ``code`` is the (positive) errno of its answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    """An interface: RTM_NEWLINK (a reply, or a request to create or change one)."""

    index: int
    name: str | None = None
    flags: int = 0
    change: int = 0
    kind: str | None = None
    """IFLA_INFO_KIND of IFLA_LINKINFO (requests: the kind of link to create)."""
    addr_gen_mode: int | None = None
    """IFLA_INET6_ADDR_GEN_MODE inside IFLA_AF_SPEC (requests only)."""
    seq: int = 0
    mtu: int | None = None
    """IFLA_MTU (requests: the MTU to set)."""


@dataclass(frozen=True, slots=True)
class Address:
    """An interface address: RTM_NEWADDR or RTM_DELADDR."""

    family: int
    prefixlen: int
    index: int
    address: IPAddress | None = None
    local: IPAddress | None = None
    flags: int = 0
    """IFA_FLAGS when the kernel sends it (all 32 bits), else the header's 8."""
    scope: int = RT_SCOPE_UNIVERSE
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    """A route: RTM_NEWROUTE or RTM_DELROUTE. ``via``: a next hop of the other family
    (RTA_VIA, RFC 5549/9229); ``priority`` None: not given (the kernel's default)."""

    family: int
    dst_len: int = 0
    src_len: int = 0
    dst: IPAddress | None = None
    src: IPAddress | None = None
    oif: int | None = None
    gateway: IPAddress | None = None
    via: IPAddress | None = None
    priority: int | None = None
    table: int = RT_TABLE_MAIN
    protocol: int = 0
    scope: int = RT_SCOPE_UNIVERSE
    type: int = RTN_UNICAST
    seq: int = 0


RouteKey = tuple[int, int, int, IPAddress | None, int, IPAddress | None, int]


def route_key(route: Route) -> RouteKey:
    """What the kernel tells a table's routes apart by: family, table, destination and source
    prefixes and priority (IPv4's TOS, which meshd never sets, aside). Two routes with one key
    are not both kept, and NLM_F_REPLACE puts a route in the place of the one holding its key,
    whoever installed that one and through whichever interface. A priority not given is 0."""
    return (
        route.family,
        route.table,
        route.dst_len,
        route.dst,
        route.src_len,
        route.src,
        route.priority or 0,
    )


@dataclass(frozen=True, slots=True)
class Ack:
    """NLMSG_ERROR: ``code`` 0 is an acknowledgement, else the errno of the refusal."""

    code: int
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Done:
    """NLMSG_DONE, the end of a dump (``code`` non-zero: the dump failed)."""

    code: int = 0
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message meshd does not read (another type, or an address family it never asks)."""

    type: int
    seq: int = 0


Message = Link | Address | Route | Ack | Done | Ignored


# --- encoding ------------------------------------------------------------------------------


def _attr(kind: int, payload: bytes) -> bytes:
    raw = _ATTR.pack(_ATTR.size + len(payload), kind) + payload
    return raw + bytes(-len(raw) % 4)


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def _ip(kind: int, address: IPAddress | None) -> bytes:
    return b"" if address is None else _attr(kind, address.packed)


def _family_of(address: IPAddress) -> int:
    return AF_INET if address.version == 4 else AF_INET6


def encode_message(message: Message, *, type: int | None = None, flags: int = 0) -> bytes:
    """One netlink message; ``type`` defaults to the RTM_NEW* of ``message``."""
    body: bytes
    default: int
    if isinstance(message, Link):
        default = RTM_NEWLINK
        body = _IFINFO.pack(AF_UNSPEC, 0, message.index, message.flags, message.change)
        if message.name is not None:
            body += _attr(IFLA_IFNAME, message.name.encode("utf-8", "surrogateescape") + b"\0")
        if message.kind is not None:
            info = _attr(IFLA_INFO_KIND, message.kind.encode("utf-8", "surrogateescape"))
            body += _attr(IFLA_LINKINFO, info)
        if message.addr_gen_mode is not None:
            mode = _attr(IFLA_INET6_ADDR_GEN_MODE, bytes([message.addr_gen_mode]))
            body += _attr(IFLA_AF_SPEC, _attr(AF_INET6, mode))
        if message.mtu is not None:
            body += _attr(IFLA_MTU, _U32.pack(message.mtu))
    elif isinstance(message, Address):
        default = RTM_NEWADDR
        body = _IFADDR.pack(
            message.family, message.prefixlen, message.flags & 0xFF, message.scope, message.index
        )
        body += _ip(IFA_ADDRESS, message.address) + _ip(IFA_LOCAL, message.local)
        body += _u32(IFA_FLAGS, message.flags)
    elif isinstance(message, Route):
        default = RTM_NEWROUTE
        table = message.table if message.table < 256 else RT_TABLE_COMPAT
        body = _RTMSG.pack(
            message.family,
            message.dst_len,
            message.src_len,
            0,
            table,
            message.protocol,
            message.scope,
            message.type,
            0,
        )
        body += _ip(RTA_DST, message.dst) + _ip(RTA_SRC, message.src)
        if message.oif is not None:
            body += _u32(RTA_OIF, message.oif)
        body += _ip(RTA_GATEWAY, message.gateway)
        if message.via is not None:
            family = struct.pack("=H", _family_of(message.via))
            body += _attr(RTA_VIA, family + message.via.packed)
        if message.priority is not None:
            body += _u32(RTA_PRIORITY, message.priority)
        body += _u32(RTA_TABLE, message.table)
    elif isinstance(message, Ack):
        default = NLMSG_ERROR
        body = _ERROR.pack(-message.code) + _HEADER.pack(_HEADER.size, 0, 0, message.seq, 0)
    elif isinstance(message, Done):
        default = NLMSG_DONE
        body = _ERROR.pack(-message.code)
    else:
        default = message.type
        body = b""
    kind = default if type is None else type
    return _HEADER.pack(_HEADER.size + len(body), kind, flags, message.seq, 0) + body


def encode_dump(type: int, family: int, seq: int) -> bytes:
    """A dump request (RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE) for one address family."""
    header = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0) if type == RTM_GETROUTE else b""
    if type == RTM_GETLINK:
        header = _IFINFO.pack(family, 0, 0, 0, 0)
    elif type == RTM_GETADDR:
        header = _IFADDR.pack(family, 0, 0, 0, 0)
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return _HEADER.pack(_HEADER.size + len(header), type, flags, seq, 0) + header


# --- decoding ------------------------------------------------------------------------------


def _attrs_untrusted(data: bytes, start: int) -> dict[int, bytes]:
    """The attributes from ``start`` on: the last of each type wins (as in the kernel)."""
    found: dict[int, bytes] = {}
    at = start
    while len(data) - at >= _ATTR.size:
        length, kind = _ATTR.unpack_from(data, at)
        if length < _ATTR.size or at + length > len(data):
            raise DecodeError(f"rtnetlink attribute of length {length} at {at}: truncated")
        found[kind & _NLA_TYPE_MASK] = data[at + _ATTR.size : at + length]
        at += (length + 3) & ~3
    return found


def _u32_untrusted(raw: bytes | None, what: str) -> int | None:
    if raw is None:
        return None
    if len(raw) != 4:
        raise DecodeError(f"rtnetlink {what}: {len(raw)} bytes, not 4")
    return int(_U32.unpack(raw)[0])


def _ip_untrusted(family: int, raw: bytes | None, what: str) -> IPAddress | None:
    if raw is None:
        return None
    if len(raw) != _ADDRESS_LENGTH[family]:
        raise DecodeError(f"rtnetlink {what}: {len(raw)} bytes for family {family}")
    return IPv4Address(raw) if family == AF_INET else IPv6Address(raw)


def _link_untrusted(payload: bytes, seq: int) -> Link:
    if len(payload) < _IFINFO.size:
        raise DecodeError("rtnetlink link message: truncated header")
    _, _, index, flags, change = _IFINFO.unpack_from(payload)
    attrs = _attrs_untrusted(payload, _IFINFO.size)
    name = attrs.get(IFLA_IFNAME)
    text = None if name is None else name.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    mtu = _u32_untrusted(attrs.get(IFLA_MTU), "IFLA_MTU")
    return Link(index, text, flags, change, seq=seq, mtu=mtu)


def _address_untrusted(payload: bytes, seq: int) -> Address | Ignored:
    if len(payload) < _IFADDR.size:
        raise DecodeError("rtnetlink address message: truncated header")
    family, prefixlen, flags, scope, index = _IFADDR.unpack_from(payload)
    if family not in _ADDRESS_LENGTH:
        return Ignored(RTM_NEWADDR, seq)
    if prefixlen > _ADDRESS_LENGTH[family] * 8:
        raise DecodeError(f"rtnetlink address: prefix length {prefixlen}")
    attrs = _attrs_untrusted(payload, _IFADDR.size)
    extended = _u32_untrusted(attrs.get(IFA_FLAGS), "IFA_FLAGS")
    return Address(
        family,
        prefixlen,
        index,
        _ip_untrusted(family, attrs.get(IFA_ADDRESS), "IFA_ADDRESS"),
        _ip_untrusted(family, attrs.get(IFA_LOCAL), "IFA_LOCAL"),
        flags if extended is None else extended,
        scope,
        seq,
    )


def _route_untrusted(payload: bytes, seq: int) -> Route | Ignored:
    if len(payload) < _RTMSG.size:
        raise DecodeError("rtnetlink route message: truncated header")
    family, dst_len, src_len, _, table, protocol, scope, kind, _ = _RTMSG.unpack_from(payload)
    if family not in _ADDRESS_LENGTH:
        return Ignored(RTM_NEWROUTE, seq)
    if max(dst_len, src_len) > _ADDRESS_LENGTH[family] * 8:
        raise DecodeError(f"rtnetlink route: prefix lengths {dst_len}, {src_len}")
    attrs = _attrs_untrusted(payload, _RTMSG.size)
    via = attrs.get(RTA_VIA)
    hop: IPAddress | None = None
    if via is not None:
        if len(via) < 2:
            raise DecodeError("rtnetlink RTA_VIA: truncated")
        (via_family,) = struct.unpack_from("=H", via)
        if via_family not in _ADDRESS_LENGTH:
            raise DecodeError(f"rtnetlink RTA_VIA: family {via_family}")
        hop = _ip_untrusted(via_family, via[2:], "RTA_VIA")
    long_table = _u32_untrusted(attrs.get(RTA_TABLE), "RTA_TABLE")
    return Route(
        family,
        dst_len,
        src_len,
        _ip_untrusted(family, attrs.get(RTA_DST), "RTA_DST"),
        _ip_untrusted(family, attrs.get(RTA_SRC), "RTA_SRC"),
        _u32_untrusted(attrs.get(RTA_OIF), "RTA_OIF"),
        _ip_untrusted(family, attrs.get(RTA_GATEWAY), "RTA_GATEWAY"),
        hop,
        _u32_untrusted(attrs.get(RTA_PRIORITY), "RTA_PRIORITY"),
        table if long_table is None else long_table,
        protocol,
        scope,
        kind,
        seq,
    )


#: Multicast groups (bits of ``nl_groups``) that tell of links, addresses and routes changing.
RTMGRP_LINK: Final = 0x1
RTMGRP_IPV6_IFADDR: Final = 0x100
RTMGRP_IPV4_ROUTE: Final = 0x40
RTMGRP_IPV6_ROUTE: Final = 0x400


def routes_lost_untrusted(data: bytes, protocol: int) -> bool:
    """Whether one datagram of kernel notifications may have taken routes of ``protocol``
    away: a route of that protocol deleted (by hand, or with its interface going down or
    away), or an interface changed (up again, nothing of ours routed through it is left).
    Only the headers are read, not each route's attributes: a busy router's table changes
    often, and most of what it says is about other protocols.

    Raises DecodeError for a message that does not fit the datagram."""
    lost = False
    for kind, _, start, end in _frames_untrusted(data):
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            lost = True
        elif kind == RTM_DELROUTE:
            if end - start < _RTMSG.size:
                raise DecodeError("rtnetlink route message: truncated")
            lost = lost or data[start + 5] == protocol  # rtm_protocol
    return lost


def default_routes_changed_untrusted(data: bytes) -> bool:
    """Whether one datagram of kernel notifications tells of a default route (prefix length
    0, in any table) added, changed or deleted. Only the headers are read: a router whose
    full table churns says mostly other things.

    Raises DecodeError for a message that does not fit the datagram, or a route message
    shorter than its header."""
    changed = False
    for kind, _, start, end in _frames_untrusted(data):
        if kind in (RTM_NEWROUTE, RTM_DELROUTE):
            if end - start < _RTMSG.size:
                raise DecodeError("rtnetlink route message: truncated")
            changed = changed or data[start + 1] == 0  # rtm_dst_len
    return changed


def routes_untrusted(
    data: bytes, seq: int, *, dst_len: int | None = None, protocol: int | None = None
) -> tuple[list[Route], Done | Ack | None]:
    """Of one datagram of the replies to a route dump (``seq``): its routes of prefix length
    ``dst_len`` and of ``protocol`` (None: any), decoded, and the dump's end if it is in
    this datagram. Any other route is not decoded, only its header read: a host holding a
    full internet table (a million routes) is looked over as the dump comes, nothing of it
    kept, when a caller wants its default routes, or the routes of one prefix, or Babel's.

    Raises DecodeError for a message that does not fit the datagram, or a route wanted or an
    end that does not decode."""

    def wanted(at: int) -> bool:
        return (dst_len is None or data[at + 1] == dst_len) and (  # rtm_dst_len
            protocol is None or data[at + 5] == protocol  # rtm_protocol
        )

    return _scanned(
        data, seq, RTM_NEWROUTE, _RTMSG.size, "route message: truncated", wanted, Route,
        _route_untrusted,
    )  # fmt: skip


def addresses_untrusted(
    data: bytes,
    seq: int,
    *,
    scopes: Collection[int] | None = None,
    index: int | None = None,
) -> tuple[list[Address], Done | Ack | None]:
    """Of one datagram of the replies to an address dump (``seq``): its addresses of one of
    ``scopes`` and on link ``index`` (None: any), decoded, and the dump's end if it is in
    this datagram. Any other address is not decoded, only its header read: a host of
    thousands of container interfaces, each with its link-local address, is looked over
    for the few addresses another machine could reach it at, or for one link's.

    Raises DecodeError for a message that does not fit the datagram, or an address wanted
    or an end that does not decode."""

    def wanted(at: int) -> bool:
        return (scopes is None or data[at + 3] in scopes) and (  # ifa_scope
            index is None or _U32.unpack_from(data, at + 4)[0] == index  # ifa_index
        )

    return _scanned(
        data, seq, RTM_NEWADDR, _IFADDR.size, "address message: truncated header", wanted,
        Address, _address_untrusted,
    )  # fmt: skip


_M = TypeVar("_M", Route, Address)


def _scanned(
    data: bytes,
    seq: int,
    kind_wanted: int,
    header: int,
    truncated: str,
    wanted: Callable[[int], bool],
    cls: type[_M],
    decode: Callable[[bytes, int], _M | Ignored],
) -> tuple[list[_M], Done | Ack | None]:
    """The scan :func:`routes_untrusted` and :func:`addresses_untrusted` share: of the
    messages of dump ``seq`` in ``data``, those of type ``kind_wanted`` whose fixed header
    (``header`` bytes, read where the payload starts) ``wanted`` keeps, decoded; and the
    dump's end if it is in this datagram."""
    found: list[_M] = []
    for kind, at_seq, start, end in _frames_untrusted(data):
        if at_seq != seq:
            continue
        if kind in (NLMSG_ERROR, NLMSG_DONE):
            [ended] = decode_messages_untrusted(data[start - _HEADER.size : end])
            assert isinstance(ended, Done | Ack)
            return found, ended
        if kind != kind_wanted:
            continue
        if end - start < header:
            raise DecodeError(f"rtnetlink {truncated}")
        if not wanted(start):
            continue
        message = decode(data[start:end], at_seq)
        if isinstance(message, cls):
            found.append(message)
    return found, None


def _frames_untrusted(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """Each netlink message of one datagram: its type, sequence number, and where its
    payload starts and ends in ``data``. Raises DecodeError for one that does not fit."""
    at = 0
    while at < len(data):
        if len(data) - at < _HEADER.size:
            raise DecodeError(f"rtnetlink: {len(data) - at} bytes left, not a header")
        length, kind, _, seq, _ = _HEADER.unpack_from(data, at)
        if length < _HEADER.size or at + length > len(data):
            raise DecodeError(f"rtnetlink message of length {length} at {at}: truncated")
        yield kind, seq, at + _HEADER.size, at + length
        at += (length + 3) & ~3


def decode_messages_untrusted(data: bytes) -> list[Message]:
    """Every netlink message of one datagram from the kernel, in order.

    Raises DecodeError for anything truncated or malformed: a length that does not fit, an
    address of the wrong size, a prefix longer than its family's addresses.
    """
    messages: list[Message] = []
    for kind, seq, start, end in _frames_untrusted(data):
        payload = data[start:end]
        message: Message
        if kind in (NLMSG_ERROR, NLMSG_DONE):
            if len(payload) < _ERROR.size:
                if kind == NLMSG_ERROR:
                    raise DecodeError("rtnetlink error message: truncated")
                messages.append(Done(0, seq))
                continue
            (error,) = _ERROR.unpack_from(payload)
            if error > 0:
                raise DecodeError(f"rtnetlink: a positive error {error}")
            message = Ack(-error, seq) if kind == NLMSG_ERROR else Done(-error, seq)
        elif kind in (RTM_NEWLINK, RTM_DELLINK):
            message = _link_untrusted(payload, seq)
        elif kind in (RTM_NEWADDR, RTM_DELADDR):
            message = _address_untrusted(payload, seq)
        elif kind in (RTM_NEWROUTE, RTM_DELROUTE):
            message = _route_untrusted(payload, seq)
        else:
            message = Ignored(kind, seq)
        messages.append(message)
    return messages
