"""Link, address and route changes through rtnetlink (pyroute2).

pyroute2's async API is written for asyncio and fails under trio, so its synchronous API
runs in a worker thread, one call at a time (a one-slot :class:`trio.CapacityLimiter`). Each
call opens its own ``IPRoute`` (in the named network namespace, if any) and closes it, so no
socket is shared between threads. Failures become :class:`meshd.errors.BackendError`;
pyroute2's ``NetlinkError`` is not an ``OSError`` and carries its errno in ``.code``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import trio

# isort: split
import meshd.wg.lean_pyroute2  # noqa: F401 (pyroute2 lean: meshd.wg.lean_pyroute2)

# isort: split
from pyroute2 import IPRoute, NetlinkError

from meshd.errors import BackendError
from meshd.wg.model import IPNetwork

T = TypeVar("T")
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

IFA_F_NODAD = 0x02
RT_SCOPE_LINK = 253
#: IFLA_INET6_ADDR_GEN_MODE values: 0 eui64, 1 none, 2 stable-privacy, 3 random.
ADDR_GEN_MODE_NONE = 1


class Netlink:
    """rtnetlink for one network namespace (None: ours)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._limiter = trio.CapacityLimiter(1)

    async def _run(self, what: str, fn: Callable[[Any], T]) -> T:
        def call() -> T:
            ipr = IPRoute(netns=self.netns) if self.netns else IPRoute()
            try:
                return fn(ipr)
            finally:
                ipr.close()

        try:
            return await trio.to_thread.run_sync(call, limiter=self._limiter)
        except NetlinkError as exc:
            raise BackendError(f"netlink: {what} failed: {_strerror(exc.code)}") from None
        except OSError as exc:
            raise BackendError(f"netlink: {what} failed: {exc.strerror or exc}") from None

    async def link_index(self, ifname: str) -> int | None:
        def lookup(ipr: Any) -> int | None:
            found = ipr.link_lookup(ifname=ifname)
            return int(found[0]) if found else None

        return await self._run(f"looking up {ifname}", lookup)

    async def create_link(self, ifname: str, kind: str) -> None:
        await self._run(
            f"creating {kind} link {ifname}", lambda ipr: ipr.link("add", ifname=ifname, kind=kind)
        )

    async def delete_link(self, ifname: str) -> None:
        def delete(ipr: Any) -> None:
            found = ipr.link_lookup(ifname=ifname)
            if found:
                ipr.link("del", index=found[0])

        await self._run(f"deleting {ifname}", delete)

    async def prepare_link(
        self,
        ifname: str,
        link_local: ipaddress.IPv6Interface,
        overlay: ipaddress.IPv6Address | None,
    ) -> None:
        """Give ``ifname`` exactly our addresses and bring it up.

        The kernel's own link-local address (random for a tun device) would become the source
        of our packets and the peers would drop them (it is in nobody's allowed-ips), so
        address generation is switched off and other scope-link addresses are removed first.
        Addresses skip duplicate address detection: they are unique by construction and
        DAD would hold them "tentative" (unusable as a source) for a second or more.
        """

        def prepare(ipr: Any) -> None:
            index = _index(ipr, ifname)
            ipr.link(
                "set",
                index=index,
                IFLA_AF_SPEC={
                    "attrs": [
                        ("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", ADDR_GEN_MODE_NONE)]})
                    ]
                },
            )
            for msg in ipr.get_addr(index=index, family=socket.AF_INET6):
                address = msg.get_attr("IFA_ADDRESS")
                if msg["scope"] == RT_SCOPE_LINK and address != str(link_local.ip):
                    ipr.addr("del", index=index, address=address, prefixlen=msg["prefixlen"])
            wanted = [(link_local.ip, link_local.network.prefixlen)]
            if overlay is not None:
                wanted.append((overlay, 128))
            for address, prefixlen in wanted:
                ipr.addr(
                    "replace",
                    index=index,
                    address=str(address),
                    prefixlen=prefixlen,
                    flags=IFA_F_NODAD,
                )
            ipr.link("set", index=index, state="up")

        await self._run(f"configuring {ifname}", prepare)

    async def addresses(self) -> list[tuple[str, IPInterface]]:
        """Every address of every interface: (interface name, address with its prefix)."""

        def read(ipr: Any) -> list[tuple[str, IPInterface]]:
            names = {
                int(link["index"]): str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()
            }
            found: list[tuple[str, IPInterface]] = []
            for msg in ipr.get_addr():
                address = msg.get_attr("IFA_ADDRESS")
                if address is None:
                    continue
                interface = ipaddress.ip_interface(f"{address}/{msg['prefixlen']}")
                found.append((names.get(int(msg["index"]), ""), interface))
            return found

        return await self._run("reading addresses", read)

    async def replace_routes(self, ifname: str, prefixes: Iterable[IPNetwork]) -> None:
        nets = list(prefixes)

        def replace(ipr: Any) -> None:
            index = _index(ipr, ifname)
            for net in nets:
                ipr.route("replace", dst=str(net), oif=index)

        await self._run(f"replacing routes via {ifname}", replace)

    async def route_interfaces(self, prefix: IPNetwork) -> list[str]:
        """The interfaces that a route for exactly ``prefix`` (main table) goes through."""

        def read(ipr: Any) -> list[str]:
            family = socket.AF_INET6 if prefix.version == 6 else socket.AF_INET
            names = {
                int(link["index"]): str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()
            }
            found = []
            for msg in ipr.get_routes(family=family, table=254):
                if msg["dst_len"] != prefix.prefixlen:
                    continue
                dst = msg.get_attr("RTA_DST")
                oif = msg.get_attr("RTA_OIF")
                if dst is None or oif is None:
                    continue
                if ipaddress.ip_address(dst) == prefix.network_address:
                    found.append(names.get(int(oif), str(oif)))
            return found

        return await self._run(f"reading the routes to {prefix}", read)

    async def delete_routes(self, ifname: str, prefixes: Iterable[IPNetwork]) -> None:
        nets = list(prefixes)

        def delete(ipr: Any) -> None:
            index = _index(ipr, ifname)
            for net in nets:
                try:
                    ipr.route("del", dst=str(net), oif=index)
                except NetlinkError as exc:
                    if exc.code != _ESRCH:
                        raise

        await self._run(f"deleting routes via {ifname}", delete)


_ESRCH = 3  # "No such process": the kernel's answer for a route that is not there


def _index(ipr: Any, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise BackendError(f"network interface {ifname} does not exist")
    return int(found[0])


def _strerror(code: int) -> str:
    try:
        return f"{os.strerror(code)} (errno {code})"
    except (ValueError, OverflowError):
        return f"errno {code}"
