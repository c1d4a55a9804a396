"""A gateway's site routes the kernel took away (a blink of the site link) are put back
at the next sync once the shell has read what the kernel holds (SiteRoutes.held)."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network

import trio

from meshd.babel.core import BabelCore, CoreConfig
from meshd.babel.kernel_routes import KernelRoute
from meshd.babel.sources import RouteKey
from meshd.daemon.babel_site import SiteRoutes

SITE = KernelRoute(IPv6Network("fd55::/64"), None, "lan0", IPv6Address("fe80::2"))
KEY: RouteKey = (SITE.prefix, SITE.source)


class Kernel:
    def __init__(self) -> None:
        self.table: dict[RouteKey, KernelRoute] = {}
        self.installs = 0

    async def install(self, route: KernelRoute) -> None:
        self.installs += 1
        self.table[(route.prefix, route.source)] = route

    async def remove(self, route: KernelRoute) -> None:
        self.table.pop((route.prefix, route.source), None)

    async def held(self) -> set[RouteKey]:
        return set(self.table)

    async def watch(self, changed: Callable[[], None]) -> None:
        await trio.sleep_forever()


def test_a_site_route_the_kernel_dropped_is_put_back() -> None:
    kernel = Kernel()
    routes = SiteRoutes(kernel)
    core = BabelCore(bytes(7) + b"\x01", CoreConfig())

    async def main() -> None:
        routes.hold({KEY: SITE})
        await routes.sync(core)
        assert kernel.installs == 1
        await routes.sync(core)
        assert kernel.installs == 1  # held and installed: nothing to do
        kernel.table.clear()  # the site link blinked
        assert await routes.held() == set()
        await routes.sync(core)
        assert kernel.table == {KEY: SITE}
        assert kernel.installs == 2

    trio.run(main)
