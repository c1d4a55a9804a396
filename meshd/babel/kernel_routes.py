"""Babel's routes in the kernel: :class:`KernelRoutes`, the :class:`RouteSink` the shell
installs the core's selected routes through.

:class:`KernelRoutes` installs the selected routes through rtnetlink (meshd's own
:class:`~meshd.wg.rtnl_socket.RtnlSocket` in a worker thread, one call at a time): ``via`` the
next hop on ordinary interfaces, IPv4 via an IPv6 next hop (RFC 9229), ``from`` a source
prefix (RFC 9079, IPv6 only), and straight at the device on the WireGuard interface, which
ignores next hops. Its routes have protocol ``babel`` and their own priority
(:data:`KERNEL_METRIC`): a route another protocol installed for the same prefix is never
replaced nor deleted, and wins over ours. Which routes the kernel should hold, and when to
try again, is :class:`~meshd.babel.shell.BabelShell`'s.

The kernel also takes routes away by itself: an interface that goes down, even for a
moment, or away loses every route through it, and an administrator may delete one.
:meth:`KernelRoutes.held` reads which of ours it holds, and :meth:`KernelRoutes.watch`
says when that may have changed (its notifications of links and of deleted routes), so
that the shell installs them again.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from typing import Final, Protocol

import trio

from meshd.babel.prefix import IPAddress
from meshd.babel.sources import IPNetwork, RouteKey
from meshd.errors import BackendError, DecodeError
from meshd.wg import rtnetlink as rt
from meshd.wg.rtnetlink import Route, RtnetlinkError
from meshd.wg.rtnl_socket import RtnlSocket, monitor_socket, prefix_route

RTPROT_BABEL: Final = 42
"""The routing protocol number the kernel knows as ``babel`` (/etc/iproute2/rt_protos)."""
KERNEL_METRIC: Final = 2048
"""The priority (metric) of Babel's kernel routes, as babeld's ``kernel-priority``: above
the default of other routes (IPv6 1024, as ``ip route`` and the daemon's WireGuard routes
have; IPv4 0), so that for the same prefix another protocol's route wins (the overlay /48's
route to WireGuard above all), and the kernel keeps both: ``replace`` and ``del`` at our
priority and protocol never touch the other."""
_EEXIST: Final = 17


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

    async def held(self) -> set[RouteKey]:
        """The (prefix, source) of every route of ours the sink still holds."""
        ...

    async def watch(self, changed: Callable[[], None]) -> None:
        """Call ``changed`` whenever routes of ours may have gone without our asking; run
        until cancelled."""
        ...


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

    async def held(self) -> set[RouteKey]:
        """The (prefix, source) of every route of protocol ``babel`` at our priority in the
        main table (ours, or left by an earlier run)."""
        found: list[Route] = []

        def read(rtnl: RtnlSocket) -> None:
            for family in (rt.AF_INET, rt.AF_INET6):
                found.extend(rtnl.routes(family, protocol=RTPROT_BABEL))

        await self._run("reading the routes", read)
        return {
            _route_key(msg)
            for msg in found
            if msg.protocol == RTPROT_BABEL and (msg.priority or 0) == self.metric
        }

    async def watch(self, changed: Callable[[], None]) -> None:
        """Call ``changed`` when the kernel says it deleted a route of protocol ``babel``
        or an interface changed (:func:`meshd.wg.rtnetlink.routes_lost_untrusted`), or when
        it said more than we could read; until cancelled."""
        groups = rt.RTMGRP_LINK | rt.RTMGRP_IPV4_ROUTE | rt.RTMGRP_IPV6_ROUTE
        try:
            sock = await trio.to_thread.run_sync(monitor_socket, self.netns, groups)
        except OSError as exc:
            raise BackendError(f"netlink: watching the routes: {exc.strerror or exc}") from None
        try:
            while True:
                await trio.lowlevel.wait_readable(sock.fileno())
                try:
                    data = sock.recv(1 << 17)
                except BlockingIOError:
                    continue
                except OSError:  # ENOBUFS: notifications were lost
                    changed()
                    continue
                try:
                    lost = rt.routes_lost_untrusted(data, RTPROT_BABEL)
                except DecodeError:
                    lost = True
                if lost:
                    changed()
        finally:
            sock.close()


def _route_key(msg: Route) -> RouteKey:
    """The (prefix, source) of a route the kernel holds, as the shell keys them."""
    family = ipaddress.IPv4Network if msg.family == rt.AF_INET else ipaddress.IPv6Network
    prefix = family((msg.dst or _any(msg.family), msg.dst_len))
    if msg.src is None or not msg.src_len:
        return (prefix, None)
    return (prefix, family((msg.src, msg.src_len)))


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
    for msg in rtnl.routes(family, dst_len=route.prefix.prefixlen):
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
