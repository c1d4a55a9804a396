"""Babel's site side in the daemon: the kernel routes toward the site kept for the site
routes we originate (:class:`SiteRoutes`), and the check that ``--babel-originate`` asks only
for what this member's certificate grants. IP forwarding is :mod:`meshd.daemon.relaying`'s."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from meshd.babel.core import BabelCore
from meshd.babel.options import covered
from meshd.babel.shell import KernelRoute, RouteSink
from meshd.babel.sources import IPNetwork, RouteKey
from meshd.errors import BackendError, UsageError

if TYPE_CHECKING:
    from meshd.daemon.config import DaemonConfig
    from meshd.node.statedir import NodeDir

log = logging.getLogger("meshd.daemon.babel")


class SiteRoutes:
    """The shell's route sink, keeping the kernel routes toward the site for the site
    routes we originate on the mesh: our own origination takes precedence in the core, which
    would otherwise take the learnt route out of the kernel."""

    def __init__(self, inner: RouteSink) -> None:
        self.inner = inner
        self._held: dict[RouteKey, KernelRoute] = {}
        self._installed: dict[RouteKey, KernelRoute] = {}

    def hold(self, routes: Mapping[RouteKey, KernelRoute]) -> None:
        self._held = dict(routes)

    async def install(self, route: KernelRoute) -> None:
        await self.inner.install(route)

    async def remove(self, route: KernelRoute) -> None:
        if (route.prefix, route.source) not in self._held:
            await self.inner.remove(route)

    async def sync(self, core: BabelCore) -> None:
        """Install what is held; remove what no longer is, unless the core selects a learnt
        route for it again (then the shell owns it)."""
        for key, route in list(self._installed.items()):
            if key in self._held:
                continue
            del self._installed[key]
            view = core.route(*key)
            if view is None or view.neighbour is None:
                await self._quietly(self.inner.remove, route)
        for key, route in list(self._held.items()):
            if self._installed.get(key) != route and await self._quietly(self.inner.install, route):
                self._installed[key] = route

    async def release_all(self) -> None:
        self._held = {}
        for route in self._installed.values():
            await self._quietly(self.inner.remove, route)
        self._installed = {}

    @staticmethod
    async def _quietly(
        action: Callable[[KernelRoute], Awaitable[None]], route: KernelRoute
    ) -> bool:
        try:
            await action(route)
        except BackendError as exc:
            log.warning("Babel: site route %s: %s", route.prefix, exc)
            return False
        return True


def ungranted_origins(config: DaemonConfig, node: NodeDir) -> list[IPNetwork]:
    """The ``--babel-originate`` prefixes this member's certificate does not allow, when
    Babel will run on the mesh (a WireGuard backend other than ``none``); else none."""
    from meshd.daemon.state import NodeState
    from meshd.daemon.wireguard_open import backend_kind

    if not config.babel.originate or backend_kind(config.wg_backend) == "none":
        return []
    state = NodeState(node, announce_ttl=config.announce_ttl)
    grants = state.membership.grants(node.node_key.public)
    return [prefix for prefix, _ in config.babel.originate if not covered(prefix, grants)]


def refuse_ungranted_origins(config: DaemonConfig, node: NodeDir) -> None:
    """UsageError (one line) if a ``--babel-originate`` prefix is not ours to announce."""
    refused = ungranted_origins(config, node)
    if refused:
        raise UsageError(
            "--babel-originate "
            + ", ".join(str(p) for p in refused)
            + ": this member's certificate does not allow "
            + ("it" if len(refused) == 1 else "them"),
            hint="ask an admin for a certificate that grants the prefix",
        )
