"""Babel's site side in the daemon: the site routes a gateway originates on the mesh
(:func:`gateway_loop`, :func:`reoriginate`), the kernel routes toward the site kept for them
(:class:`SiteRoutes`), and the check that ``--babel-originate`` asks only for what this
member's certificate grants. IP forwarding is :mod:`meshd.daemon.relaying`'s."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

import trio

from meshd.babel.core import BabelCore
from meshd.babel.gateway import plan, site_origins
from meshd.babel.kernel_routes import KernelRoute, RouteSink
from meshd.babel.options import BabelConfig, covered
from meshd.babel.shell import BabelShell
from meshd.babel.sources import IPNetwork, RouteKey
from meshd.errors import BackendError, UsageError

if TYPE_CHECKING:
    from meshd.daemon.babel import BabelService
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

    async def held(self) -> set[RouteKey]:
        """What the kernel holds of ours; the site routes it no longer holds (a blink of
        the site link) are taken for not installed, so :meth:`sync` puts them back."""
        held = await self.inner.held()
        for key in [key for key in self._installed if key not in held]:
            del self._installed[key]
        return held

    async def watch(self, changed: Callable[[], None]) -> None:
        await self.inner.watch(changed)

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
    refuse_ungranted(ungranted_origins(config, node))


def refuse_ungranted(refused: Sequence[IPNetwork]) -> None:
    """UsageError (one line) naming ``refused``, the ``--babel-originate`` prefixes this
    member's certificate does not allow (at a start, and at a SIGHUP); nothing if none."""
    if refused:
        raise UsageError(
            "--babel-originate "
            + ", ".join(str(p) for p in refused)
            + ": this member's certificate does not allow "
            + ("it" if len(refused) == 1 else "them"),
            hint="ask an admin for a certificate that grants the prefix",
        )


# --- the gateway: site routes originated on the mesh ----------------------------------------


async def gateway_loop(service: BabelService, shell: BabelShell) -> None:
    """Originate on the mesh the site routes we may, at most a second after they change
    (a learnt route behind one of ours raises no event), and keep their kernel routes."""
    period = min(1.0, service.config.hello_interval)
    try:
        while True:
            shell.submit(partial(reoriginate, service))
            await trio.sleep(period)
            await service._routes.sync(shell.core)
    finally:
        with trio.CancelScope(shield=True):
            await service._routes.release_all()


def retake(service: BabelService, before: BabelConfig, core: BabelCore, now: float) -> None:
    """``--babel-originate`` and ``--babel-redistribute`` as they are now (a SIGHUP), on the
    running core: a prefix no longer ours withdrawn (a retraction goes at once), a new one
    originated; under new rules, the site routes that cross again at once
    (:func:`reoriginate`) and every route sent again on the site links, where it may go
    now or retracted where it may not (:meth:`BabelCore.refilter`)."""
    wanted = service.own_origins(service.config)
    own = service._own
    for key in sorted(own - wanted, key=str):
        log.info("Babel: no longer originating %s", _text(key))
        core.withdraw(*key)
        own.discard(key)
    for key in sorted(wanted - own, key=str):
        log.info("Babel: originating %s", _text(key))
        core.originate(*key)
        own.add(key)
    if service.config.redistribute != before.redistribute:
        if service.mesh is not None:
            reoriginate(service, core, now)
        log.info(
            "Babel: %d --babel-redistribute rules now; site routes and what goes to %s follow",
            len(service.config.redistribute),
            ", ".join(service.config.interfaces) or "the site links",
        )
        core.refilter(service.config.interfaces, now)


def _text(key: RouteKey) -> str:
    prefix, source = key
    return str(prefix) if source is None else f"{prefix} from {source}"


def reoriginate(service: BabelService, core: BabelCore, now: float) -> None:
    """Originate the site routes an ``allow`` rule takes and our grants cover; withdraw the
    others (:mod:`meshd.babel.gateway`)."""
    assert service.mesh is not None
    grants = service._grants(service.node_key) if service._grants is not None else ()
    wanted = site_origins(
        core.routes(),
        mesh=service.mesh.ifname,
        router_id=core.router_id,
        rules=service.config.redistribute,
        grants=grants,
        exclude=service._own,
    )
    # Held before the core stops selecting the learnt route, so the shell leaves it.
    service._routes.hold(
        {key: KernelRoute(*key, route.interface, route.next_hop) for key, route in wanted.items()}
    )
    site = service._site
    changes = plan(site, wanted)
    for key in changes.withdraw:
        log.info("Babel: no longer originating site route %s on the mesh", key[0])
        core.withdraw(*key)
        del site[key]
    for key, metric in changes.originate.items():
        if key not in site:
            log.info("Babel: originating site route %s on the mesh (metric %d)", key[0], metric)
        core.originate(*key, metric=metric)
        site[key] = metric
