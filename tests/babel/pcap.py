"""A tiny reader for classic pcap files, enough for the Babel golden vectors.

Understands little- and big-endian files with micro- or nanosecond timestamps, and the link
types found in captures of Babel: Ethernet (1, with 802.1Q tags), raw IP (101), Linux cooked
capture v1 (113) and v2 (276). Yields the UDP datagrams to or from the Babel port.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

BABEL_PORT = 6696

_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",
    b"\x4d\x3c\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",
    b"\xa1\xb2\x3c\x4d": ">",
}
_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_ETHERTYPE_VLAN = (0x8100, 0x88A8)
_UDP = 17
_IPV6_SKIPPABLE = (0, 43, 60)  # hop-by-hop, routing, destination options


@dataclass(frozen=True, slots=True)
class Datagram:
    """One Babel UDP datagram: addresses, ports and payload."""

    frame: int
    src: IPv4Address | IPv6Address
    src_port: int
    dst: IPv4Address | IPv6Address
    dst_port: int
    payload: bytes


def read_babel_datagrams(path: Path) -> Iterator[Datagram]:
    """The Babel datagrams of a pcap file, with their 1-based frame numbers."""
    data = path.read_bytes()
    order = _MAGICS[data[:4]]
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    offset, frame = 24, 0
    while offset + 16 <= len(data):
        captured = struct.unpack_from(order + "I", data, offset + 8)[0]
        packet = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        frame += 1
        ethertype, ip = _link_payload(linktype, packet)
        datagram = _udp(frame, ethertype, ip)
        if datagram is not None and BABEL_PORT in (datagram.src_port, datagram.dst_port):
            yield datagram


def _link_payload(linktype: int, packet: bytes) -> tuple[int, bytes]:
    if linktype == 1:
        ethertype, offset = struct.unpack_from("!H", packet, 12)[0], 14
        while ethertype in _ETHERTYPE_VLAN:
            ethertype, offset = struct.unpack_from("!H", packet, offset + 2)[0], offset + 4
        return ethertype, packet[offset:]
    if linktype == 113:
        return struct.unpack_from("!H", packet, 14)[0], packet[16:]
    if linktype == 276:
        return struct.unpack_from("!H", packet, 0)[0], packet[20:]
    if linktype == 101:
        version = packet[0] >> 4
        return (_ETHERTYPE_IPV6 if version == 6 else _ETHERTYPE_IPV4), packet
    raise ValueError(f"unsupported pcap link type {linktype}")


def _udp(frame: int, ethertype: int, ip: bytes) -> Datagram | None:
    src: IPv4Address | IPv6Address
    dst: IPv4Address | IPv6Address
    if ethertype == _ETHERTYPE_IPV6:
        src, dst = IPv6Address(ip[8:24]), IPv6Address(ip[24:40])
        next_header, offset = ip[6], 40
        while next_header in _IPV6_SKIPPABLE:
            next_header, offset = ip[offset], offset + 8 * (ip[offset + 1] + 1)
    elif ethertype == _ETHERTYPE_IPV4:
        src, dst = IPv4Address(ip[12:16]), IPv4Address(ip[16:20])
        next_header, offset = ip[9], 4 * (ip[0] & 0x0F)
    else:
        return None
    if next_header != _UDP:
        return None
    src_port, dst_port, length = struct.unpack_from("!HHH", ip, offset)
    payload = ip[offset + 8 : offset + length]
    return Datagram(frame, src, src_port, dst, dst_port, payload)
