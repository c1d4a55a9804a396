"""Babel's UDP sockets: one :class:`Port` per interface, which
:class:`~meshd.babel.shell.BabelShell` sends and receives through.

- A :class:`Port` is one interface's UDP socket on port 6696 (:class:`UdpPort`): bound to
  the device (``SO_BINDTODEVICE``), in the group ff02::1:6 on multicast interfaces, with
  ``IPV6_PKTINFO`` so that the destination of each datagram is known (RFC 8967 MACs cover
  it). Tests use ports on loopback.
- :func:`interface_addresses` reads what a port needs of its interface (index, link-local
  and IPv4 address) through rtnetlink.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Final, Protocol

import trio

from meshd.babel.interfaces import MULTICAST_GROUP
from meshd.babel.mac import Endpoints
from meshd.babel.prefix import IPAddress
from meshd.errors import BackendError
from meshd.wg.rtnetlink import RtnetlinkError
from meshd.wg.rtnl_socket import RtnlSocket

BABEL_PORT: Final = 6696
_PKTINFO: Final = struct.Struct("16sI")  # struct in6_pktinfo: address, interface index


@dataclass(frozen=True, slots=True)
class Datagram:
    """A datagram as it arrived: the bytes and its UDP endpoints."""

    interface: str
    payload: bytes
    ends: Endpoints


class Port(Protocol):
    """One interface's Babel socket, as the shell uses it."""

    name: str

    def endpoints_to(self, destination: IPAddress) -> Endpoints:
        """The UDP endpoints a datagram to ``destination`` will carry (for MACs)."""
        ...

    async def send(self, payload: bytes, destination: IPAddress) -> None: ...

    async def receive(self) -> Datagram: ...

    def close(self) -> None: ...


# --- sockets ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InterfaceAddresses:
    """What the shell needs to know of an interface: its index and our addresses there."""

    index: int
    link_local: IPv6Address | None
    ipv4: IPv4Address | None
    mtu: int | None = None  # the link's MTU, None: not known


def _strip_scope(text: str) -> IPAddress:
    return ip_address(text.split("%", 1)[0])


class UdpPort:
    """A UDP socket on port 6696 bound to one interface.

    ``local`` is our link-local address there: the source the kernel picks for link-local
    destinations, hence the source in the MAC pseudo-header of what we send.
    """

    def __init__(
        self,
        name: str,
        sock: trio.socket.SocketType,
        *,
        index: int,
        local: IPv6Address | None,
        port: int = BABEL_PORT,
    ) -> None:
        self.name = name
        self.foreign = 0  # datagrams from another port than Babel's: dropped
        self.index = index
        self.local = local
        self.port = port
        self._sock = sock

    @classmethod
    async def open(
        cls,
        name: str,
        addresses: InterfaceAddresses,
        *,
        multicast: bool,
        port: int = BABEL_PORT,
    ) -> UdpPort:
        sock = trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, name.encode())
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, addresses.index)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
            await sock.bind(("::", port))
            if multicast:
                group = MULTICAST_GROUP.packed + struct.pack("@I", addresses.index)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
        except OSError as exc:
            sock.close()
            raise BackendError(f"Babel socket on {name}: {exc.strerror or exc}") from None
        return cls(name, sock, index=addresses.index, local=addresses.link_local, port=port)

    def endpoints_to(self, destination: IPAddress) -> Endpoints:
        local = self.local if self.local is not None else IPv6Address("::")
        return Endpoints(local, self.port, destination, BABEL_PORT)

    async def send(self, payload: bytes, destination: IPAddress) -> None:
        await self._sock.sendto(payload, (str(destination), BABEL_PORT, 0, self.index))

    async def receive(self) -> Datagram:
        while True:
            data, ancillary, _, address = await self._sock.recvmsg(0xFFFF, socket.CMSG_SPACE(20))
            destination: IPAddress = MULTICAST_GROUP
            for level, kind, value in ancillary:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                    packed, _ = _PKTINFO.unpack_from(value.ljust(_PKTINFO.size, b"\0"))
                    destination = IPv6Address(packed)
            source = _strip_scope(address[0])
            if source == self.local:
                continue  # our own multicast, looped back by a bridge
            if int(address[1]) != self.port:
                self.foreign += 1  # Babel speaks from its port (RFC 8966 4); this is no router
                continue
            ends = Endpoints(source, int(address[1]), destination, self.port)
            return Datagram(self.name, data, ends)

    def close(self) -> None:
        self._sock.close()


# --- interfaces ---------------------------------------------------------------------------


async def interface_addresses(
    name: str, *, netns: str | None = None, wait: float = 5.0
) -> InterfaceAddresses:
    """An interface's index, link-local and first IPv4 address.

    Waits up to ``wait`` seconds for a link-local address that is no longer tentative
    (duplicate address detection), the source our Babel packets will carry.
    """

    def read() -> InterfaceAddresses:
        try:
            with RtnlSocket(netns) as rtnl:
                link = rtnl.link(name)
                if link is None:
                    raise BackendError(f"network interface {name} does not exist")
                index = link.index
                found = rtnl.addresses(index=index)
        except RtnetlinkError as exc:
            raise BackendError(f"netlink: reading {name}: errno {exc.code}") from None
        except OSError as exc:
            raise BackendError(f"netlink: reading {name}: {exc.strerror or exc}") from None
        link_local: IPv6Address | None = None
        ipv4: IPv4Address | None = None
        for msg in found:
            address = msg.address
            if address is None:
                continue
            tentative = msg.flags & IFA_F_TENTATIVE
            if isinstance(address, IPv6Address):
                if address.is_link_local and not tentative and link_local is None:
                    link_local = address
            elif ipv4 is None:
                ipv4 = address
        return InterfaceAddresses(index, link_local, ipv4, link.mtu)

    with trio.move_on_after(wait):
        while True:
            addresses = await trio.to_thread.run_sync(read)
            if addresses.link_local is not None:
                return addresses
            await trio.sleep(0.2)
    return await trio.to_thread.run_sync(read)


#: ifa_flags: an address still in duplicate address detection, not yet to be used.
IFA_F_TENTATIVE: Final = 0x40

#: Babel's datagrams at most (its packet, UDP's payload), and IPv6's and UDP's headers.
PACKET_SIZE: Final = 1400
_IPV6_UDP: Final = 48


def packet_size(mtu: int | None) -> int:
    """The largest Babel datagram for a link of ``mtu`` (as babeld: the MTU less IPv6's and
    UDP's headers, so the kernel never fragments one), at most :data:`PACKET_SIZE`; that
    where the MTU is not known. A WireGuard interface of MTU 1280: 1232."""
    if mtu is None:
        return PACKET_SIZE
    return max(512, min(PACKET_SIZE, mtu - _IPV6_UDP))
