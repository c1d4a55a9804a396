"""Link, address and route changes through rtnetlink, for trio: :class:`Netlink`.

:class:`Netlink` runs :class:`meshd.wg.rtnl_socket.RtnlSocket` in a worker thread, one call
at a time (a one-slot :class:`trio.CapacityLimiter`); each call opens its own socket (in the
named network namespace, if any) and closes it, so no socket is shared between threads.
Failures become :class:`meshd.errors.BackendError` (the kernel's refusals
:class:`~meshd.wg.rtnetlink.RtnetlinkError`, with the errno in ``.code``). The routes it
installs are meshd's own (protocol :data:`~meshd.wg.rtnl_socket.RTPROT_MESHD`, an explicit
priority), and only those are replaced or removed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Iterable
from typing import TypeVar

import trio

from meshd.errors import AlreadyRunning, BackendError
from meshd.wg import rtnetlink as rt
from meshd.wg.model import IPNetwork
from meshd.wg.rtnetlink import (
    Route,
    RtnetlinkError,
)
from meshd.wg.rtnl_socket import (
    ADDR_GEN_MODE_NONE,
    IFA_F_NODAD,
    RT_SCOPE_LINK,
    RTPROT_MESHD,
    IPInterface,
    RtnlSocket,
    family_of,
    prefix_route,
    route_priority,
    strerror,
)

T = TypeVar("T")


class Netlink:
    """rtnetlink for one network namespace (None: ours)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._limiter = trio.CapacityLimiter(1)

    async def _run(self, what: str, fn: Callable[[RtnlSocket], T]) -> T:
        def call() -> T:
            with RtnlSocket(self.netns) as rtnl:
                return fn(rtnl)

        try:
            return await trio.to_thread.run_sync(call, limiter=self._limiter)
        except RtnetlinkError as exc:
            raise BackendError(f"netlink: {what} failed: {strerror(exc.code)}") from None
        except OSError as exc:
            raise BackendError(f"netlink: {what} failed: {exc.strerror or exc}") from None

    async def link_index(self, ifname: str) -> int | None:
        return await self._run(f"looking up {ifname}", lambda rtnl: rtnl.link_index(ifname))

    async def create_link(self, ifname: str, kind: str) -> None:
        await self._run(
            f"creating {kind} link {ifname}", lambda rtnl: rtnl.create_link(ifname, kind)
        )

    async def delete_link(self, ifname: str) -> None:
        def delete(rtnl: RtnlSocket) -> None:
            index = rtnl.link_index(ifname)
            if index is not None:
                rtnl.delete_link(index)

        await self._run(f"deleting {ifname}", delete)

    async def prepare_link(
        self,
        ifname: str,
        link_local: ipaddress.IPv6Interface,
        overlay: ipaddress.IPv6Address | None,
        mtu: int | None = None,
    ) -> None:
        """Give ``ifname`` exactly our addresses (and ``mtu``, if given) and bring it up.

        The kernel's own link-local address (random for a tun device) would become the source
        of our packets and the peers would drop them (it is in nobody's allowed-ips), so
        address generation is switched off and other scope-link addresses are removed first.
        Addresses skip duplicate address detection: they are unique by construction and
        DAD would hold them "tentative" (unusable as a source) for a second or more.
        """

        def prepare(rtnl: RtnlSocket) -> None:
            index = rtnl.index(ifname)
            rtnl.set_link(index, addr_gen_mode=ADDR_GEN_MODE_NONE, mtu=mtu)
            for found in rtnl.addresses(rt.AF_INET6, index):
                address = found.address or found.local
                if found.scope == RT_SCOPE_LINK and address != link_local.ip:
                    rtnl.delete_address(found)
            wanted = [link_local]
            if overlay is not None:
                wanted.append(ipaddress.IPv6Interface(f"{overlay}/128"))
            for interface in wanted:
                rtnl.add_address(index, interface, flags=IFA_F_NODAD)
            rtnl.set_link(index, up=True)

        await self._run(f"configuring {ifname}", prepare)

    async def set_mtu(self, ifname: str, mtu: int) -> None:
        """Set the MTU of the interface ``ifname``."""

        def set_mtu(rtnl: RtnlSocket) -> None:
            rtnl.set_link(rtnl.index(ifname), mtu=mtu)

        await self._run(f"setting the MTU of {ifname} to {mtu}", set_mtu)

    async def addresses(
        self, scopes: Collection[int] | None = None
    ) -> list[tuple[str, IPInterface]]:
        """Every address of every interface, or those of one of ``scopes``: (interface name,
        address with its prefix). Only the addresses kept are decoded, and only their links'
        names asked for, one request a link: not every link of a host of thousands of
        container interfaces."""

        def read(rtnl: RtnlSocket) -> list[tuple[str, IPInterface]]:
            names: dict[int, str | None] = {}
            found: list[tuple[str, IPInterface]] = []
            for msg in rtnl.addresses(scopes=scopes):
                if msg.address is None:
                    continue
                if msg.index not in names:
                    link = rtnl.link_at(msg.index)
                    names[msg.index] = None if link is None else link.name or ""
                name = names[msg.index]
                if name is None:  # its link went meanwhile, and the address with it
                    continue
                interface = ipaddress.ip_interface(f"{msg.address}/{msg.prefixlen}")
                found.append((name, interface))
            return found

        return await self._run("reading addresses", read)

    async def replace_routes(self, ifname: str, prefixes: Iterable[IPNetwork]) -> None:
        """Route each prefix straight at ``ifname`` (protocol :data:`RTPROT_MESHD`), in the
        place of meshd's own route for it only.

        The kernel's replace takes whichever route holds the key (prefix, priority: see
        :func:`~meshd.wg.rtnetlink.route_key`), so another program's route for the prefix at
        the family's default priority went in its place. Such a route is left alone and
        AlreadyRunning names it; meshd's own is replaced, and with none there ours is added.
        """
        nets = list(prefixes)

        def replace(rtnl: RtnlSocket) -> None:
            index = rtnl.index(ifname)
            for net in nets:
                ours = _ours(net, index)
                key = rt.route_key(ours)
                held = [
                    r
                    for r in rtnl.routes(ours.family, dst_len=net.prefixlen)
                    if rt.route_key(r) == key
                ]
                other = next((r for r in held if r.protocol != RTPROT_MESHD), None)
                if other is not None:
                    raise _in_the_way(net, other, rtnl.names())
                rtnl.add_route(ours, replace=bool(held))

        await self._run(f"replacing routes via {ifname}", replace)

    async def route_interfaces(self, prefix: IPNetwork) -> list[str]:
        """The interfaces that a route for exactly ``prefix`` (main table) goes through."""

        def read(rtnl: RtnlSocket) -> list[str]:
            names = rtnl.names()
            found = []
            for msg in rtnl.routes(family_of(prefix.version), dst_len=prefix.prefixlen):
                if msg.dst_len != prefix.prefixlen or msg.dst is None or msg.oif is None:
                    continue
                if msg.dst == prefix.network_address:
                    found.append(names.get(msg.oif, str(msg.oif)))
            return found

        return await self._run(f"reading the routes to {prefix}", read)

    async def delete_routes(self, ifname: str, prefixes: Iterable[IPNetwork]) -> None:
        """Remove meshd's routes for ``prefixes`` through ``ifname``: by protocol, priority
        and interface, so nobody else's route for the same prefix goes with them."""
        nets = list(prefixes)

        def delete(rtnl: RtnlSocket) -> None:
            index = rtnl.index(ifname)
            for net in nets:
                rtnl.delete_route(_ours(net, index))

        await self._run(f"deleting routes via {ifname}", delete)


def _in_the_way(net: IPNetwork, route: Route, names: dict[int, str]) -> AlreadyRunning:
    dev = names.get(route.oif, str(route.oif)) if route.oif is not None else "no interface"
    metric = route.priority or 0
    return AlreadyRunning(
        f"another program's route to {net} (protocol {route.protocol}, through {dev}, "
        f"metric {metric}) holds the place of meshd's route toward WireGuard",
        hint=f"remove it (`ip route del {net} dev {dev} metric {metric}`) or give it another "
        "metric; meshd replaces only its own routes (protocol 77)",
    )


def _ours(net: IPNetwork, index: int) -> Route:
    scope = rt.RT_SCOPE_LINK if net.version == 4 else rt.RT_SCOPE_UNIVERSE
    return prefix_route(
        net, oif=index, protocol=RTPROT_MESHD, priority=route_priority(net), scope=scope
    )
