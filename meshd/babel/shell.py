"""The trio shell around one :class:`~meshd.babel.core.BabelCore`: sockets, clock, kernel.

One task owns the core (:meth:`BabelShell.run`). It waits for whichever comes first, a
datagram from one of the ports or the core's timer, hands it to the core, sends what the
core has to send, and turns the core's route events into the set of routes it wants in the
kernel. Other tasks never touch the core: they send it a :class:`Command` through the same
inbox as the datagrams (:meth:`BabelShell.submit`).

- A :class:`Port` is one interface's UDP socket on port 6696 (:class:`UdpPort`): bound to
  the device (``SO_BINDTODEVICE``), in the group ff02::1:6 on multicast interfaces, with
  ``IPV6_PKTINFO`` so that the destination of each datagram is known (RFC 8967 MACs cover
  it). Tests use ports on loopback.
- On interfaces with keys, datagrams pass through :class:`~meshd.babel.auth.LinkAuth`
  (RFC 8967): counted and dropped when the MAC is bad, replayed or from an unknown index.
- Malformed datagrams are counted and dropped; they never end a task.
- :class:`KernelRoutes` installs the selected routes through rtnetlink (meshd's own
  :class:`~meshd.wg.netlink.RtnlSocket` in a worker thread, one call at a time): ``via``
  the next hop on ordinary interfaces, IPv4 via an IPv6 next hop (RFC 9229), ``from`` a
  source prefix (RFC 9079, IPv6 only), and straight at the device on the WireGuard
  interface, which ignores next hops. Its routes have protocol ``babel`` and their own priority
  (:data:`KERNEL_METRIC`): a route another protocol installed for the same prefix is never
  replaced nor deleted, and wins over ours. A second task applies the difference between
  what the core wants and what is installed, so a burst of changes costs one pass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import socket
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address
from typing import TYPE_CHECKING, Final, Protocol

import trio

from meshd.babel.auth import LinkAuth
from meshd.babel.core import BabelCore
from meshd.babel.interfaces import MULTICAST_GROUP
from meshd.babel.mac import Endpoints
from meshd.babel.packet import Packet, Tlv
from meshd.babel.prefix import IPAddress
from meshd.babel.routes import (
    Event,
    RouteChanged,
    RouteInstalled,
    RouteRetracted,
)
from meshd.babel.sources import IPNetwork, RouteKey
from meshd.errors import BackendError, DecodeError, VerifyError
from meshd.wg import rtnetlink as rt
from meshd.wg.netlink import RtnlSocket, prefix_route
from meshd.wg.rtnetlink import Route, RtnetlinkError

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

BABEL_PORT: Final = 6696
RTPROT_BABEL: Final = 42
"""The routing protocol number the kernel knows as ``babel`` (/etc/iproute2/rt_protos)."""
KERNEL_METRIC: Final = 2048
"""The priority (metric) of Babel's kernel routes, as babeld's ``kernel-priority``: above
the default of other routes (IPv6 1024, as ``ip route`` and the daemon's WireGuard routes
have; IPv4 0), so that for the same prefix another protocol's route wins (the overlay /48's
route to WireGuard above all), and the kernel keeps both: ``replace`` and ``del`` at our
priority and protocol never touch the other."""
RETRY_AFTER_ERROR: Final = 1.0
_PKTINFO: Final = struct.Struct("16sI")  # struct in6_pktinfo: address, interface index
_EEXIST: Final = 17


@dataclass(frozen=True, slots=True)
class Datagram:
    """A datagram as it arrived: the bytes and its UDP endpoints."""

    interface: str
    payload: bytes
    ends: Endpoints


@dataclass(frozen=True, slots=True)
class Command:
    """Something for the core's owner to do: ``action(core, now)``."""

    action: Callable[[BabelCore, float], None]


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
            ends = Endpoints(source, int(address[1]), destination, self.port)
            return Datagram(self.name, data, ends)

    def close(self) -> None:
        self._sock.close()


# --- the kernel ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """A route as the kernel gets it. ``next_hop`` None: straight at the device."""

    prefix: IPNetwork
    source: IPNetwork | None
    interface: str
    next_hop: IPAddress | None


class RouteSink(Protocol):
    """Where the routes the core selects go; the shell calls it from one task."""

    async def install(self, route: KernelRoute) -> None: ...

    async def remove(self, route: KernelRoute) -> None: ...


class KernelRoutes:
    """Routes in the main table with protocol ``babel`` at priority ``metric``, through
    rtnetlink.

    A route is added exclusively; only if the kernel already holds one for the same prefix
    (and source prefix) at our priority is it replaced, and then only if that one is ours
    (protocol ``babel``): a route of another protocol there is left alone and the install
    fails (a :class:`BackendError`, counted by the shell and retried). Removal names our
    protocol and priority, so the kernel deletes nothing else.
    """

    def __init__(self, netns: str | None = None, *, metric: int = KERNEL_METRIC) -> None:
        self.netns = netns
        self.metric = metric
        self._limiter = trio.CapacityLimiter(1)
        self._ours: set[RouteKey] = set()
        """The keys whose route we installed (and have not removed since)."""

    async def _run(self, what: str, fn: Callable[[RtnlSocket], None]) -> None:
        def call() -> None:
            with RtnlSocket(self.netns) as rtnl:
                fn(rtnl)

        try:
            await trio.to_thread.run_sync(call, limiter=self._limiter)
        except RtnetlinkError as exc:
            raise BackendError(f"netlink: {what}: errno {exc.code}") from None
        except OSError as exc:
            raise BackendError(f"netlink: {what}: {exc.strerror or exc}") from None

    async def install(self, route: KernelRoute) -> None:
        def install(rtnl: RtnlSocket) -> None:
            index = rtnl.link_index(route.interface)
            if index is None:
                raise BackendError(f"no interface {route.interface}")
            hop = _route_spec(route, self.metric, oif=index)
            if key in self._ours:
                rtnl.add_route(hop, replace=True)  # ours: a new next hop or interface
                return
            try:
                rtnl.add_route(hop)
                return
            except RtnetlinkError as exc:
                if exc.code != _EEXIST:
                    raise
            # Something holds the prefix at our priority: replaced only if it is ours (left
            # by an earlier run), never another protocol's.
            owner = _protocol_at(rtnl, route, self.metric)
            if owner is not None and owner != RTPROT_BABEL:
                raise BackendError(
                    f"{_describe(route)}: the kernel's route at priority {self.metric} "
                    f"belongs to protocol {owner}; left alone"
                )
            rtnl.add_route(hop, replace=True)

        key = (route.prefix, route.source)
        await self._run(f"installing {_describe(route)}", install)
        self._ours.add(key)

    async def remove(self, route: KernelRoute) -> None:
        spec = _route_spec(route, self.metric, oif=None)

        def remove(rtnl: RtnlSocket) -> None:
            rtnl.delete_route(spec)  # False: not there (already gone with its interface)

        await self._run(f"removing {_describe(route)}", remove)
        self._ours.discard((route.prefix, route.source))


def _route_spec(route: KernelRoute, metric: int = KERNEL_METRIC, *, oif: int | None) -> Route:
    """Our route for ``route``: protocol ``babel`` at ``metric``, with its next hop (a
    removal names no next hop nor interface: the protocol and priority are ours alone)."""
    spec = prefix_route(
        route.prefix, oif=oif, protocol=RTPROT_BABEL, priority=metric, source=route.source
    )
    hop = route.next_hop
    if oif is None or hop is None:
        return spec
    if hop.version == route.prefix.version:
        return dataclasses.replace(spec, gateway=hop)
    return dataclasses.replace(spec, via=hop)  # RFC 9229: IPv4 via an IPv6 next hop


def _protocol_at(rtnl: RtnlSocket, route: KernelRoute, metric: int) -> int | None:
    """The protocol of the main table's route for ``route``'s prefix and source prefix at
    priority ``metric``, or None if there is none."""
    family = rt.AF_INET if isinstance(route.prefix, IPv4Network) else rt.AF_INET6
    wanted = (_key_of(route.prefix), _key_of(route.source), metric)
    for msg in rtnl.routes(family):
        found = (
            (msg.dst or _any(family), msg.dst_len),
            (msg.src, msg.src_len) if msg.src is not None and msg.src_len else None,
            msg.priority or 0,
        )
        if found == wanted:
            return msg.protocol
    return None


def _key_of(prefix: IPNetwork | None) -> tuple[IPAddress, int] | None:
    return None if prefix is None else (prefix.network_address, prefix.prefixlen)


def _any(family: int) -> IPAddress:
    """The address of a default route, which the kernel leaves out of RTA_DST."""
    return IPv4Address(0) if family == rt.AF_INET else IPv6Address(0)


def _describe(route: KernelRoute) -> str:
    text = str(route.prefix)
    if route.source is not None:
        text += f" from {route.source}"
    if route.next_hop is not None:
        text += f" via {route.next_hop}"
    return f"{text} dev {route.interface}"


# --- the shell ----------------------------------------------------------------------------


@dataclass(slots=True)
class Counters:
    """What went wrong or was refused, for ``meshd routes``."""

    received: int = 0
    sent: int = 0
    received_bytes: int = 0
    """Babel payload bytes (without IPv6, UDP or WireGuard headers), as ``sent_bytes``."""
    sent_bytes: int = 0
    send_errors: int = 0
    decode_errors: int = 0
    bad_mac: int = 0
    replayed: int = 0
    route_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class _Installer:
    """Kernel state: what the core wants, what is installed, and the kick between them."""

    wanted: dict[RouteKey, KernelRoute] = field(default_factory=dict)
    installed: dict[RouteKey, KernelRoute] = field(default_factory=dict)


EventListener = Callable[[Event], None]


class BabelShell:
    """Runs one core over a set of ports; see the module documentation."""

    def __init__(
        self,
        core: BabelCore,
        ports: Iterable[Port],
        *,
        routes: RouteSink | None = None,
        auth: Mapping[str, LinkAuth] | None = None,
        device_routes: Iterable[str] = (),
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.core = core
        self.ports = {port.name: port for port in ports}
        self.routes = routes
        self.auth = dict(auth or {})
        self.device_routes = frozenset(device_routes)
        """Interfaces whose routes point at the device (WireGuard ignores next hops)."""
        self.counters = Counters()
        self._clock = clock
        self._listeners: list[EventListener] = []
        self._kernel = _Installer()
        self._inbox_send, self._inbox = trio.open_memory_channel[Datagram | Command](1024)
        self._kick_send, self._kick = trio.open_memory_channel[None](1)

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener`` with every event of the core, in the owner task, without await."""
        self._listeners.append(listener)

    def submit(self, action: Callable[[BabelCore, float], None]) -> None:
        """Have the core's owner run ``action(core, now)`` soon, then send what it calls for."""
        try:
            self._inbox_send.send_nowait(Command(action))
        except trio.WouldBlock:
            log.warning("Babel: command queue full, a command was dropped")

    def installed(self, prefix: IPNetwork, source: IPNetwork | None) -> bool:
        return (prefix, source) in self._kernel.installed

    # --- tasks ---------------------------------------------------------------------------

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive, drive the core, install routes; on cancellation remove our routes."""
        try:
            async with trio.open_nursery() as nursery:
                for port in self.ports.values():
                    nursery.start_soon(self._receive_from, port)
                if self.routes is not None:
                    nursery.start_soon(self._install_loop)
                task_status.started()
                await self._own_core()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._remove_all()
            for port in self.ports.values():
                port.close()

    async def _receive_from(self, port: Port) -> None:
        while True:
            try:
                datagram = await port.receive()
            except OSError as exc:
                log.debug("Babel %s: receive: %s", port.name, exc)
                await trio.sleep(0.1)
                continue
            await self._inbox_send.send(datagram)

    async def _own_core(self) -> None:
        core = self.core
        while True:
            deadline = core.timer()
            item: Datagram | Command | None = None
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                item = await self._inbox.receive()
            now = self._clock()
            if isinstance(item, Datagram):
                await self._receive(item, now)
            elif isinstance(item, Command):
                item.action(core, now)
            due = core.timer()
            if due is not None and due <= now:
                core.handle_timer(now)
            await self._send_due(now)
            self._take_events()

    async def _receive(self, datagram: Datagram, now: float) -> None:
        self.counters.received += 1
        self.counters.received_bytes += len(datagram.payload)
        auth = self.auth.get(datagram.interface)
        if auth is None:
            before = self.core.decode_errors
            self.core.receive(datagram.interface, datagram.ends.src, datagram.payload, now)
            self.counters.decode_errors += self.core.decode_errors - before
            return
        try:
            opened = auth.open_untrusted(datagram.payload, datagram.ends, now)
        except DecodeError:
            self.counters.decode_errors += 1
            return
        except VerifyError:
            self.counters.bad_mac += 1
            return
        if opened.reply:
            await self._send_sealed(datagram.interface, datagram.ends.src, opened.reply)
        if opened.packet is None:
            self.counters.replayed += opened.dropped == "replay"
            return
        self.core.receive(datagram.interface, datagram.ends.src, opened.packet, now)

    async def _send_due(self, now: float) -> None:
        for interface, destination, payload in self.core.datagrams_to_send(now):
            port = self.ports.get(interface)
            if port is None:
                continue
            auth = self.auth.get(interface)
            if auth is not None:
                payload = auth.seal(payload, port.endpoints_to(destination))
            await self._send(port, payload, destination)

    async def _send_sealed(
        self, interface: str, destination: IPAddress, tlvs: tuple[Tlv, ...]
    ) -> None:
        port = self.ports.get(interface)
        auth = self.auth.get(interface)
        if port is None or auth is None:
            return
        payload = auth.seal(Packet(tlvs), port.endpoints_to(destination))
        await self._send(port, payload, destination)

    async def _send(self, port: Port, payload: bytes, destination: IPAddress) -> None:
        try:
            await port.send(payload, destination)
            self.counters.sent += 1
            self.counters.sent_bytes += len(payload)
        except OSError as exc:
            self.counters.send_errors += 1
            log.debug("Babel %s: send to %s: %s", port.name, destination, exc)

    def _take_events(self) -> None:
        changed = False
        while (event := self.core.next_event()) is not None:
            if isinstance(event, RouteInstalled | RouteChanged):
                key = (event.prefix, event.source)
                on_device = event.neighbour.interface in self.device_routes
                self._kernel.wanted[key] = KernelRoute(
                    event.prefix,
                    event.source,
                    event.neighbour.interface,
                    None if on_device else event.next_hop,
                )
                changed = True
            elif isinstance(event, RouteRetracted):
                self._kernel.wanted.pop((event.prefix, event.source), None)
                changed = True
            for listener in self._listeners:
                listener(event)
        if changed:
            with contextlib.suppress(trio.WouldBlock):
                self._kick_send.send_nowait(None)

    async def _install_loop(self) -> None:
        ok = True
        while True:
            with trio.move_on_after(math.inf if ok else RETRY_AFTER_ERROR):
                await self._kick.receive()
            ok = await self._apply(dict(self._kernel.wanted))

    async def _apply(self, wanted: dict[RouteKey, KernelRoute]) -> bool:
        """Make the kernel hold ``wanted``; False if something failed (retried later)."""
        assert self.routes is not None
        installed = self._kernel.installed
        ok = True
        for key, route in list(installed.items()):
            if wanted.get(key) != route and key not in wanted:
                try:
                    await self.routes.remove(route)
                except BackendError as exc:
                    ok = self._route_error(exc)
                    continue
                del installed[key]
        for key, route in wanted.items():
            if installed.get(key) == route:
                continue
            if isinstance(route.prefix, IPv4Network) and route.source is not None:
                continue  # Linux has no source-specific IPv4 routes in one table
            try:
                await self.routes.install(route)
            except BackendError as exc:
                ok = self._route_error(exc)
                continue
            installed[key] = route
        return ok

    def _route_error(self, exc: BackendError) -> bool:
        self.counters.route_errors += 1
        log.warning("Babel: %s", exc)
        return False

    async def _remove_all(self) -> None:
        if self.routes is None:
            return
        for key, route in list(self._kernel.installed.items()):
            try:
                await self.routes.remove(route)
            except BackendError as exc:
                log.warning("Babel: %s", exc)
            self._kernel.installed.pop(key, None)


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
                index = rtnl.link_index(name)
                if index is None:
                    raise BackendError(f"network interface {name} does not exist")
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
            tentative = msg.flags & _IFA_F_TENTATIVE
            if isinstance(address, IPv6Address):
                if address.is_link_local and not tentative and link_local is None:
                    link_local = address
            elif ipv4 is None:
                ipv4 = address
        return InterfaceAddresses(index, link_local, ipv4)

    with trio.move_on_after(wait):
        while True:
            addresses = await trio.to_thread.run_sync(read)
            if addresses.link_local is not None:
                return addresses
            await trio.sleep(0.2)
    return await trio.to_thread.run_sync(read)


_IFA_F_TENTATIVE: Final = 0x40
