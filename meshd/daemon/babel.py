"""The daemon's Babel service: one core, its shell, and what the membership tells it.

:class:`BabelService` builds a :class:`~meshd.babel.core.BabelCore` whose router-id is
derived from the node key (:func:`meshd.babel.options.router_id_of`), and runs a
:class:`~meshd.babel.shell.BabelShell` in the daemon's nursery:

* every ``--babel-interface`` is an ordinary Babel link (``wired``, multicast), with RFC 8967
  MACs when ``--babel-key`` is given; routes learnt there go into the kernel ``via`` their
  next hop;
* we originate our overlay /128 and every ``--babel-originate`` prefix;
* on the WireGuard interface (when the mesh takes extra allowed-ips, see :class:`MeshSeam`)
  Babel is ``unicast-peers``: the neighbours are the admitted members' key-derived
  link-local addresses, an Update is accepted only from a member whose grants cover the
  prefix (:class:`~meshd.babel.options.MemberOrigins`), and every selected route's prefix is
  given to the next hop's WireGuard peer and routed at the device (a new direct neighbour's
  overlay /128 stays on its own peer for a few Hellos: :mod:`meshd.mesh.holddown`);
* as a gateway (``--babel-interface`` beside the mesh), nothing learnt on a site link is
  announced on the mesh as it is (the core's rule); routes under a member's router-id, inside
  the overlay /48 or inside another member's grants are refused there
  (:class:`~meshd.babel.options.SiteOrigins`); the site routes that an ``allow`` rule of
  ``--babel-redistribute`` takes (no rules: none) and that lie within our own grants are
  originated on the mesh under our router-id (:mod:`meshd.babel.gateway`), and their kernel
  routes toward the site are kept while we do (:class:`SiteRoutes`);
* :meth:`BabelService.notify` is a membership sink: neighbours follow the admitted members
  and a revocation withdraws the member's routes at once (``revalidate``).
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import trio

from meshd.babel.auth import LinkAuth
from meshd.babel.config import accept_all
from meshd.babel.core import BabelCore, CoreConfig
from meshd.babel.gateway import plan, site_origins
from meshd.babel.options import (
    BabelConfig,
    MemberOrigins,
    SiteOrigins,
    covered,
    crosses_allowed,
    router_id_of,
)
from meshd.babel.routes import Event as BabelEvent
from meshd.babel.shell import (
    BabelShell,
    KernelRoute,
    KernelRoutes,
    Port,
    RouteSink,
    UdpPort,
    interface_addresses,
)
from meshd.babel.sources import IPNetwork, RouteKey
from meshd.errors import BackendError, UsageError
from meshd.membership import Event, Member, MemberState, Revoked
from meshd.wg.addresses import link_local_from_wg_key

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from meshd.daemon.config import DaemonConfig
    from meshd.statedir import NodeDir

log = logging.getLogger(__name__)

Members = Callable[[], Sequence[Member]]
Grants = Callable[[bytes], Sequence[IPNetwork]]
"""``Membership.grants``: the prefixes a member may announce (empty if it does not stand)."""

FORWARDING = (
    "/proc/sys/net/ipv6/conf/all/forwarding",
    "/proc/sys/net/ipv4/conf/all/forwarding",
)


class MeshSeam(Protocol):
    """What Babel needs of the WireGuard side to run on the mesh interface."""

    @property
    def ifname(self) -> str: ...

    def set_extra_prefixes(self, extra: Mapping[bytes, Sequence[IPNetwork]]) -> None:
        """Route these prefixes through these peers (by WireGuard key) from now on."""
        ...

    def follow_babel(self, hello_interval: float) -> None:
        """Babel runs on the interface from now on, with this Hello interval (new direct
        neighbours keep their overlay address on their own peer for a few Hellos)."""
        ...


class BabelService:
    """Babel for one daemon; build it, then ``await nursery.start(service.run)``."""

    def __init__(
        self,
        config: BabelConfig,
        *,
        node_key: bytes,
        overlay: ipaddress.IPv6Address,
        own_wg_key: bytes | None = None,
        members: Members = list,
        grants: Grants | None = None,
        mesh: MeshSeam | None = None,
    ) -> None:
        self.config = config
        self.node_key = node_key
        self.overlay = overlay
        self.own_wg_key = own_wg_key
        self.mesh = mesh if own_wg_key is not None else None
        self._members = members
        self._grants = grants
        self._origins = MemberOrigins({})
        self._site_origins = SiteOrigins(overlay=self.overlay_prefix, allowed={}, own=node_key)
        self._shell: BabelShell | None = None
        self._peer_of_link_local: dict[ipaddress.IPv6Address, Member] = {}
        self._own: set[RouteKey] = set()
        self._site: dict[RouteKey, int] = {}
        self._routes = SiteRoutes(KernelRoutes())
        self._restart: trio.CancelScope | None = None

    @property
    def overlay_prefix(self) -> ipaddress.IPv6Network:
        """The network's overlay /48 (our overlay address lies in it)."""
        return ipaddress.IPv6Network((self.overlay, 48), strict=False)

    def core_config(self) -> CoreConfig:
        """The core's settings and hooks: origin validation on the mesh, what site links may
        bring (with a mesh only: without one there is no gateway), the filter."""
        mesh_if = self.mesh.ifname if self.mesh is not None else None
        return CoreConfig(
            accept=self._accept,
            accept_on=frozenset([mesh_if]) if mesh_if is not None else frozenset(),
            accept_site=self._accept_site if mesh_if is not None else accept_all,
            redistribute=self._redistribute,
            random=random.Random().random,  # noqa: S311 (jitter, not secrets)
        )

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; :meth:`rekey` starts it again under a new WireGuard key."""
        while True:
            with trio.CancelScope() as scope:
                self._restart = scope
                await self._run_once(task_status)
                return
            task_status = trio.TASK_STATUS_IGNORED  # reported started the first time

    def rekey(self, own_wg_key: bytes) -> None:
        """Our WireGuard key changed (``meshd rotate wg``), and with it our link-local
        address on the mesh: start again from it (neighbours re-learn us within a Hello)."""
        if self.mesh is None or own_wg_key == self.own_wg_key:
            return
        self.own_wg_key = own_wg_key
        log.info("Babel: restarting on the mesh under the new WireGuard key")
        if self._restart is not None:
            self._restart.cancel()

    async def _run_once(self, task_status: TaskStatus[None]) -> None:
        config = self.config
        mesh_if = self.mesh.ifname if self.mesh is not None else None
        core = BabelCore(router_id_of(self.node_key), self.core_config())
        ports: list[Port] = []
        auth: dict[str, LinkAuth] = {}
        try:
            for name in config.interfaces:
                addresses = await interface_addresses(name)
                core.add_interface(
                    name,
                    kind="wired",
                    hello_interval=config.hello_interval,
                    link_local=addresses.link_local,
                    ipv4=addresses.ipv4,
                    max_routes=config.max_routes_site,
                )
                ports.append(await UdpPort.open(name, addresses, multicast=True))
                if config.keys:
                    auth[name] = LinkAuth(config.keys)
                log.info(
                    "Babel on %s (link-local %s, IPv4 %s%s)",
                    name,
                    addresses.link_local,
                    addresses.ipv4,
                    ", MAC" if config.keys else "",
                )
            if mesh_if is not None:
                assert self.own_wg_key is not None
                addresses = await interface_addresses(mesh_if)
                local = link_local_from_wg_key(self.own_wg_key)
                core.add_interface(
                    mesh_if,
                    kind="unicast-peers",
                    hello_interval=config.hello_interval,
                    link_local=local,
                    max_routes=config.max_routes_mesh,
                )
                ports.append(
                    await UdpPort.open(
                        mesh_if,
                        type(addresses)(addresses.index, local, None),
                        multicast=False,
                    )
                )
        except BaseException:
            for port in ports:
                port.close()
            raise
        core.originate(ipaddress.IPv6Network((self.overlay, 128)))
        self._own = {(ipaddress.IPv6Network((self.overlay, 128)), None)}
        own = self._grants(self.node_key) if self._grants is not None else None
        for prefix, source in config.originate:
            if self.mesh is not None and own is not None and not covered(prefix, own):
                log.error(
                    "Babel: not announcing %s: this member's certificate does not allow it", prefix
                )
                continue
            core.originate(prefix, source)
            self._own.add((prefix, source))
        shell = BabelShell(
            core,
            ports,
            routes=self._routes,
            auth=auth,
            device_routes=[mesh_if] if mesh_if is not None else [],
        )
        self._shell = shell
        shell.add_listener(self._on_route_event)
        self._sync_members()
        if self.mesh is not None:
            self.mesh.follow_babel(config.hello_interval)
        saved = _enable_forwarding() if self.mesh is not None else {}
        try:
            if self.mesh is None or not config.interfaces:
                await shell.run(task_status=task_status)
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._gateway_loop, shell)
                await shell.run(task_status=task_status)
                nursery.cancel_scope.cancel()
        finally:
            _restore(saved)

    # --- the gateway -----------------------------------------------------------------------

    async def _gateway_loop(self, shell: BabelShell) -> None:
        """Originate on the mesh the site routes we may, at most a second after they change
        (a learnt route behind one of ours raises no event), and keep their kernel routes."""
        period = min(1.0, self.config.hello_interval)
        try:
            while True:
                shell.submit(self._reoriginate)
                await trio.sleep(period)
                await self._routes.sync(shell.core)
        finally:
            with trio.CancelScope(shield=True):
                await self._routes.release_all()

    def _reoriginate(self, core: BabelCore, now: float) -> None:
        assert self.mesh is not None
        grants = self._grants(self.node_key) if self._grants is not None else ()
        wanted = site_origins(
            core.routes(),
            mesh=self.mesh.ifname,
            router_id=core.router_id,
            rules=self.config.redistribute,
            grants=grants,
            exclude=self._own,
        )
        # Held before the core stops selecting the learnt route, so the shell leaves it.
        self._routes.hold(
            {
                key: KernelRoute(*key, route.interface, route.next_hop)
                for key, route in wanted.items()
            }
        )
        changes = plan(self._site, wanted)
        for key in changes.withdraw:
            log.info("Babel: no longer originating site route %s on the mesh", key[0])
            core.withdraw(*key)
            del self._site[key]
        for key, metric in changes.originate.items():
            if key not in self._site:
                log.info("Babel: originating site route %s on the mesh (metric %d)", key[0], metric)
            core.originate(*key, metric=metric)
            self._site[key] = metric

    # --- membership ------------------------------------------------------------------------------

    def notify(self, events: Sequence[Event]) -> None:
        """A membership sink: follow the members; a revocation takes effect at once."""
        self._sync_members(revalidate=any(isinstance(e, Revoked) for e in events))

    def _sync_members(self, *, revalidate: bool = True) -> None:
        members = [m for m in self._members() if m.state is MemberState.ADMITTED]
        allowed: dict[bytes, list[IPNetwork]] = {}
        peers: dict[ipaddress.IPv6Address, Member] = {}
        for member in members:
            allowed[member.node_key] = self._grants_of(member)
            if member.node_key != self.node_key:
                peers[link_local_from_wg_key(member.wg_key)] = member
        self._origins = MemberOrigins(allowed)
        site = SiteOrigins(overlay=self.overlay_prefix, allowed=allowed, own=self.node_key)
        revalidate = revalidate or not site.same(self._site_origins)
        self._site_origins = site
        self._peer_of_link_local = peers
        shell = self._shell
        if shell is None:
            return
        mesh = self.mesh
        wanted = set(peers)

        def apply(core: BabelCore, now: float) -> None:
            if mesh is not None:
                present = {
                    n.neighbour.address
                    for n in core.neighbours()
                    if n.neighbour.interface == mesh.ifname
                }
                for address in present - wanted:
                    core.remove_neighbour(mesh.ifname, address, now)
                for address in wanted - present:
                    core.add_neighbour(mesh.ifname, address)
            if revalidate:
                core.revalidate(now)

        shell.submit(apply)

    def _grants_of(self, member: Member) -> list[IPNetwork]:
        if self._grants is not None:
            return list(self._grants(member.node_key))
        return [ipaddress.IPv6Network((member.overlay, 128))]

    def _redistribute(self, interface: str, prefix: IPNetwork, source: IPNetwork | None) -> bool:
        shell = self._shell
        if self.mesh is not None and (prefix, source) in self._site:
            return interface == self.mesh.ifname  # the site has it from its own router
        if shell is None or self.mesh is None or not self.config.redistribute:
            return True
        view = shell.core.route(prefix, source)
        return crosses_allowed(
            self.config.redistribute,
            mesh=self.mesh.ifname,
            learned_on=view.neighbour.interface if view and view.neighbour else None,
            announced_on=interface,
            route=prefix,
        )

    def _accept(self, router_id: bytes, prefix: IPNetwork, source: IPNetwork | None) -> bool:
        return self._origins.accept(router_id, prefix, source)

    def _accept_site(self, router_id: bytes, prefix: IPNetwork, source: IPNetwork | None) -> bool:
        return self._site_origins.accept(router_id, prefix, source)

    def _on_route_event(self, event: BabelEvent) -> None:
        if self.mesh is None or self._shell is None:
            return
        extra: dict[bytes, list[IPNetwork]] = {}
        for view in self._shell.core.routes():
            if not view.selected or view.neighbour is None or view.source is not None:
                continue
            if view.neighbour.interface != self.mesh.ifname:
                continue
            member = self._peer_of_link_local.get(view.neighbour.address)  # type: ignore[arg-type]
            if member is not None:
                extra.setdefault(member.wg_key, []).append(view.prefix)
        self.mesh.set_extra_prefixes(extra)

    # --- views -------------------------------------------------------------------------------

    def routes_view(self) -> dict[str, Any]:
        """What ``meshd routes`` shows: routes, neighbours and counters."""
        shell = self._shell
        if shell is None:
            return {"router_id": router_id_of(self.node_key).hex(), "routes": [], "neighbours": []}
        core = shell.core
        rtts = {n.neighbour: n.rtt for n in core.neighbours()}
        rows = []
        for view in core.routes():
            rtt = rtts.get(view.neighbour) if view.neighbour is not None else None
            rows.append(
                {
                    "prefix": str(view.prefix),
                    "source": str(view.source) if view.source is not None else None,
                    "next_hop": str(view.next_hop) if view.next_hop is not None else None,
                    "interface": view.neighbour.interface if view.neighbour else None,
                    "metric": view.metric,
                    "refmetric": view.refmetric,
                    "seqno": view.seqno,
                    "router_id": view.router_id.hex(),
                    "origin": self._origin_name(view.router_id),
                    "selected": view.selected,
                    "feasible": view.feasible,
                    "installed": view.neighbour is None
                    or (view.selected and shell.installed(view.prefix, view.source)),
                    "rtt_ms": round(rtt * 1000, 1) if rtt is not None else None,
                }
            )
        neighbours = [
            {
                "interface": n.neighbour.interface,
                "address": str(n.neighbour.address),
                "reach": f"{n.reach:04x}",
                "rxcost": n.rxcost,
                "txcost": n.txcost,
                "cost": n.cost,
                "rtt_ms": round(n.rtt * 1000, 1) if n.rtt is not None else None,
            }
            for n in core.neighbours()
        ]
        return {
            "router_id": core.router_id.hex(),
            "seqno": core.seqno,
            "interfaces": [i.name for i in core.interfaces()],
            "routes": rows,
            "neighbours": neighbours,
            "counters": shell.counters.as_dict() | core.counters(),
        }

    def peer_route(self, member: Member) -> dict[str, Any]:
        """``route`` (``direct`` or ``via NAME``) and ``metric`` of a member, for ``peers``."""
        shell = self._shell
        if shell is None or self.mesh is None or member.node_key == self.node_key:
            return {}
        view = shell.core.route(ipaddress.IPv6Network((member.overlay, 128)))
        if view is None or view.neighbour is None:
            return {"route": None, "metric": None}
        hop = self._peer_of_link_local.get(view.neighbour.address)  # type: ignore[arg-type]
        if hop is not None and hop.node_key == member.node_key:
            route = "direct"
        else:
            route = f"via {hop.name if hop is not None else view.neighbour.address}"
        return {"route": route, "metric": view.metric}

    def _origin_name(self, router_id: bytes) -> str | None:
        for member in self._members():
            if router_id_of(member.node_key) == router_id:
                return member.name
        return None


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
    from meshd.daemon.wireguard import backend_kind

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


def _enable_forwarding() -> dict[str, str]:
    """Turn IP forwarding on, as babeld does: a member relays between two others. Returns
    the values it replaced, for :func:`_restore`."""
    saved: dict[str, str] = {}
    for path in FORWARDING:
        try:
            with open(path) as f:
                old = f.read().strip()
            if old != "1":
                with open(path, "w") as f:
                    f.write("1\n")
                saved[path] = old
        except OSError as exc:
            log.warning("Babel: cannot turn forwarding on (%s): relaying will not work", exc)
    if saved:
        log.info("Babel: IP forwarding on (%s)", ", ".join(saved))
    return saved


def _restore(saved: Mapping[str, str]) -> None:
    for path, value in saved.items():
        try:
            with open(path, "w") as f:
                f.write(value + "\n")
        except OSError as exc:
            log.warning("Babel: cannot restore %s: %s", path, exc)
