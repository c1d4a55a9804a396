"""Babel's kernel routes beside other protocols' routes for the same prefix (root).

Issue 9, attack 3: a Babel route for the overlay /48 replaced the daemon's /48 route to
WireGuard (same prefix, same default priority), and removing it (``del proto babel``) left
no route at all. Babel's routes now have their own priority: the other protocol's route is
never replaced nor deleted, and it wins while both are there. A veth interface stands in
for the WireGuard interface; the routes toward the LAN go via the lab router.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

import pytest
import trio

from meshd.babel.kernel_routes import KernelRoute, KernelRoutes
from meshd.errors import BackendError
from meshd.lab.commands import ip
from meshd.lab.lab import Lab
from meshd.lab.plumbing import Host

pytestmark = pytest.mark.root

WG = "bd0"  # the WireGuard interface's stand-in
OVERLAY = IPv6Network("fd5a:1::/48")
SITE4 = IPv4Network("10.200.0.0/24")
TAKEN = IPv6Network("fd5b::/64")


def routes(host: Host, prefix: IPv6Network | IPv4Network) -> list[dict[str, Any]]:
    family = "-6" if prefix.version == 6 else "-4"
    found = json.loads(ip("-j", family, "route", "show", "exact", str(prefix), netns=host.netns))
    return [r for r in found if r.get("dst") in (str(prefix), str(prefix.network_address))]


def egress(host: Host, prefix: IPv6Network | IPv4Network) -> str:
    address = str(prefix.network_address + 5)
    (route,) = json.loads(ip("-j", "route", "get", address, netns=host.netns))
    return str(route["dev"])


def protocols(found: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(str(r.get("protocol", "boot")), str(r["dev"])) for r in found}


@pytest.fixture(scope="module")
def host() -> Any:
    with Lab(1) as lab:
        (h,) = lab.hosts
        ip("link", "add", WG, "type", "veth", "peer", "name", WG + "p", netns=h.netns)
        for name in (WG, WG + "p"):
            ip("link", "set", name, "up", netns=h.netns)
        yield h


def test_a_babel_route_leaves_another_protocols_route_for_the_same_prefix(host: Host) -> None:
    # The daemon's route for the overlay /48 (wg/netlink.py: replace dst oif, proto boot,
    # the default priority), and a static IPv4 route.
    ip("-6", "route", "replace", str(OVERLAY), "dev", WG, netns=host.netns)
    ip("-4", "route", "replace", str(SITE4), "dev", WG, "proto", "static", netns=host.netns)
    kernel = KernelRoutes(netns=host.netns)
    hijack6 = KernelRoute(OVERLAY, None, host.ifname, ip_address(host.gateway6))
    hijack4 = KernelRoute(SITE4, None, host.ifname, ip_address(host.gateway4))

    async def install() -> None:
        await kernel.install(hijack6)
        await kernel.install(hijack4)

    trio.run(install)
    for prefix, other in ((OVERLAY, "boot"), (SITE4, "static")):
        found = protocols(routes(host, prefix))
        assert (other, WG) in found, f"{prefix}: the {other} route to {WG} is gone: {found}"
        assert ("babel", host.ifname) in found, f"{prefix}: no Babel route: {found}"
        assert egress(host, prefix) == WG, f"{prefix}: Babel's route won over {other}'s"

    async def remove() -> None:
        await kernel.remove(hijack6)
        await kernel.remove(hijack4)

    trio.run(remove)
    for prefix, other in ((OVERLAY, "boot"), (SITE4, "static")):
        assert protocols(routes(host, prefix)) == {(other, WG)}, f"{prefix} after removal"
        assert egress(host, prefix) == WG


def test_a_route_of_another_protocol_at_babels_own_priority_is_left_alone(host: Host) -> None:
    from meshd.babel.kernel_routes import KERNEL_METRIC

    ip("-6", "route", "replace", str(TAKEN), "dev", WG, "proto", "static", "metric",
       str(KERNEL_METRIC), netns=host.netns)  # fmt: skip
    kernel = KernelRoutes(netns=host.netns)
    babel = KernelRoute(TAKEN, None, host.ifname, ip_address(host.gateway6))
    with pytest.raises(BackendError, match="belongs to protocol"):
        trio.run(kernel.install, babel)
    trio.run(kernel.remove, babel)
    assert protocols(routes(host, TAKEN)) == {("static", WG)}


def test_babels_own_route_moves_in_place(host: Host) -> None:
    prefix = IPv6Network("fd5c::/64")
    kernel = KernelRoutes(netns=host.netns)
    trio.run(kernel.install, KernelRoute(prefix, None, host.ifname, ip_address(host.gateway6)))
    trio.run(kernel.install, KernelRoute(prefix, None, WG, None))  # a new next hop
    assert protocols(routes(host, prefix)) == {("babel", WG)}
    # A route left by an earlier run (ours by protocol) is taken over, not refused.
    again = KernelRoutes(netns=host.netns)
    trio.run(again.install, KernelRoute(prefix, None, host.ifname, ip_address(host.gateway6)))
    assert protocols(routes(host, prefix)) == {("babel", host.ifname)}
    trio.run(again.remove, KernelRoute(prefix, None, host.ifname, None))
    assert routes(host, prefix) == []
