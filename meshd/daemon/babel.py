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
* another member's overlay /128 goes on the mesh only to the members that ask for it (the
  core's ``on_demand`` hook), and we ask the relays for the /128s that no direct route
  covers (:mod:`meshd.daemon.babel_wants`): a relay no longer sends every member's route to
  every member;
* as a gateway (``--babel-interface`` beside the mesh), nothing learnt on a site link is
  announced on the mesh as it is (the core's rule); routes under a member's router-id, inside
  the overlay /48 or inside another member's grants are refused there
  (:class:`~meshd.babel.options.SiteOrigins`); the site routes that an ``allow`` rule of
  ``--babel-redistribute`` takes (no rules: none) and that lie within our own grants are
  originated on the mesh under our router-id (:mod:`meshd.babel.gateway`), and their kernel
  routes toward the site are kept while we do (:class:`SiteRoutes`);
* :meth:`BabelService.follow` takes the membership owner's snapshots: neighbours follow the
  admitted members and a revocation withdraws the member's routes at once (``revalidate``).
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Final, Protocol

import trio

from meshd.addressing import host_prefix
from meshd.babel.auth import LinkAuth
from meshd.babel.config import accept_all
from meshd.babel.core import BabelCore, CoreConfig
from meshd.babel.neighbours import IPAddress
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
    KernelRoutes,
    Port,
    UdpPort,
    interface_addresses,
)
from meshd.babel.sources import IPNetwork, RouteKey
from meshd.daemon.babel_site import (
    SiteRoutes,
    gateway_loop,
    refuse_ungranted_origins,
    ungranted_origins,
)
from meshd.daemon.babel_wants import Wants, on_demand_route
from meshd.daemon.feed import Subscription
from meshd.membership import Member, MemberState
from meshd.mesh.relay_pair import pair_rank
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.addresses import link_local_from_wg_key

if TYPE_CHECKING:
    from trio_typing import TaskStatus


log = logging.getLogger(__name__)

__all__ = ["BabelService", "SiteRoutes", "refuse_ungranted_origins", "ungranted_origins"]

WANT_AFTER: Final = 0.0
"""A member's /128 is asked of the relays this long after it is admitted, if no direct route
covers it by then: at once (a direct path not up yet is covered through a relay meanwhile;
the direct route, of lower metric, takes over when it comes)."""
REDISCOVER: Final = 4
"""Ask every neighbour which of them relays at most once every this many update intervals."""

Members = Callable[[], Sequence[Member]]
Grants = Callable[[bytes], Sequence[IPNetwork]]
"""``Membership.grants``: the prefixes a member may announce (empty if it does not stand)."""


class MeshSeam(Protocol):
    """What Babel needs of the WireGuard side to run on the mesh interface."""

    @property
    def ifname(self) -> str: ...

    def set_extra_prefixes(self, extra: Mapping[WgKey, Sequence[IPNetwork]]) -> None:
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
        self._overlay48 = ipaddress.IPv6Network((overlay, 48), strict=False)
        self.own_wg_key = own_wg_key
        self.mesh = mesh if own_wg_key is not None else None
        self._members = members
        self._grants = grants
        self._origins = MemberOrigins({})
        self._site_origins = SiteOrigins(overlay=self.overlay_prefix, allowed={}, own=node_key)
        self._shell: BabelShell | None = None
        self._peer_of_link_local: dict[ipaddress.IPv6Address, Member] = {}
        self._member_of_overlay: dict[IPNetwork, Member] = {}
        self._address_of: dict[IPNetwork, IPAddress] = {}  # overlay /128 -> link-local
        self._router_ids: dict[IPAddress, bytes] = {}  # link-local -> router-id
        self._own: set[RouteKey] = set()
        self._site: dict[RouteKey, int] = {}
        self._routes = SiteRoutes(KernelRoutes())
        self._restart: trio.CancelScope | None = None
        self._wants: Wants | None = None
        self._ask_queued = False
        # Whether we carry routes learnt from members to other members (meshd.daemon.relaying
        # decides, and owns IP forwarding); a member that does not relay announces only its own.
        self.relaying = True

    @property
    def overlay_prefix(self) -> ipaddress.IPv6Network:
        """The network's overlay /48 (our overlay address lies in it)."""
        return self._overlay48

    def core_config(self) -> CoreConfig:
        """The core's settings and hooks: origin validation on the mesh, what site links may
        bring (with a mesh only: without one there is no gateway), the filter."""
        mesh_if = self.mesh.ifname if self.mesh is not None else None
        # The origin checks of the members' and the sites' grants, as they are at each call
        # (:meth:`_sync_members` replaces them).
        return CoreConfig(
            accept=lambda router_id, prefix, source: self._origins.accept(
                router_id, prefix, source
            ),
            accept_on=frozenset([mesh_if]) if mesh_if is not None else frozenset(),
            accept_site=(
                (lambda r, p, s: self._site_origins.accept(r, p, s))
                if mesh_if is not None
                else accept_all
            ),
            redistribute=self._redistribute,
            on_demand=self._on_demand if mesh_if is not None else None,
            relay_rank=self._relay_rank if mesh_if is not None else None,
            random=random.Random().random,  # noqa: S311 (jitter, not secrets)
        )

    def _relay_rank(
        self, prefix: IPNetwork, source: IPNetwork | None, interface: str, neighbour: IPAddress
    ) -> bytes | None:
        """A route to a member's overlay /128 through another member of the mesh: that
        relay's rank for the pair, the same at both ends (:mod:`meshd.mesh.relay_pair`)."""
        if source is not None or self.mesh is None or interface != self.mesh.ifname:
            return None
        relay = self._peer_of_link_local.get(neighbour)  # type: ignore[arg-type]
        other = self._member_of_overlay.get(prefix)
        if relay is None or other is None or self.own_wg_key is None:
            return None
        if relay.wg_key == other.wg_key:  # the member itself: a direct route
            return None
        return pair_rank(WgKey(self.own_wg_key), other.wg_key, relay.wg_key)

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
        self._ask_queued = False  # a round queued on a shell before a restart is gone with it
        shell.add_listener(self._on_route_event)
        if mesh_if is not None:
            hello = config.hello_interval
            self._wants = Wants(
                mesh_if, hold=WANT_AFTER, period=4 * hello, rediscover=REDISCOVER * 4 * hello
            )
        self._sync_members()
        if self.mesh is not None:
            self.mesh.follow_babel(config.hello_interval)
        if self.mesh is None:
            await shell.run(task_status=task_status)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._wants_loop, shell)
            if config.interfaces:
                nursery.start_soon(gateway_loop, self, shell)
            await shell.run(task_status=task_status)
            nursery.cancel_scope.cancel()

    def set_relaying(self, on: bool) -> None:
        """Carry other members' routes on the mesh (relay) or not, from now on: a member
        that does not relay is never a next hop between two others."""
        self.relaying = on

    # --- routes on demand ---------------------------------------------------------------------

    def _on_demand(self, interface: str, prefix: IPNetwork, source: IPNetwork | None) -> bool:
        """Another member's overlay /128 goes on the mesh only to the members that ask for
        it (those without a direct path to it): :mod:`meshd.daemon.babel_wants`. A request
        is kept for any /128 of the overlay, also one of a member not admitted here yet
        (:func:`~meshd.daemon.babel_wants.on_demand_route`)."""
        return (
            self.mesh is not None
            and interface == self.mesh.ifname
            and on_demand_route(self._overlay48, prefix, source)
        )

    async def _wants_loop(self, shell: BabelShell) -> None:
        """Ask for the routes we lack a direct path for every update interval (which keeps
        the relays' interest alive); the core's events and the members ask at once
        (:meth:`_ask_soon`)."""
        period = 4 * self.config.hello_interval
        while True:
            shell.submit(self._ask)  # not through _ask_soon: never held up by a lost round
            await trio.sleep(period)

    def _ask_soon(self, shell: BabelShell) -> None:
        """Run a round of :class:`Wants` on the core at its next turn: a burst of events
        (every route of a full update) makes one round, and a round sends only what is due."""
        if self._wants is None or self._ask_queued:
            return
        self._ask_queued = True
        shell.submit(self._ask)

    def _ask(self, core: BabelCore, now: float) -> None:
        self._ask_queued = False
        if self._wants is not None:
            self._wants.ask(core, now, self._address_of, self._router_ids)

    # --- membership ------------------------------------------------------------------------------

    async def follow(self, subscription: Subscription) -> None:
        """Follow the members the owner's snapshots list; a revocation takes effect at once."""
        seen = subscription.latest.revocations
        async for snapshot in subscription:
            self._members = partial(tuple, snapshot.members)
            self._grants = partial(_granted, snapshot.grants)
            self._sync_members(revalidate=snapshot.revocations != seen)
            seen = snapshot.revocations

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
        self._member_of_overlay = {host_prefix(m.overlay): m for m in peers.values()}
        self._address_of = {host_prefix(m.overlay): a for a, m in peers.items()}
        known = self._router_ids
        self._router_ids = {a: known.get(a) or router_id_of(m.node_key) for a, m in peers.items()}
        shell = self._shell
        if shell is None:
            return
        mesh = self.mesh
        wanted = set(peers)
        if self._wants is not None:
            self._wants.neighbours(wanted, trio.current_time())

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
        self._ask_soon(shell)  # a new member without a direct route: the relays at once

    def _grants_of(self, member: Member) -> list[IPNetwork]:
        if self._grants is not None:
            return list(self._grants(member.node_key))
        return [host_prefix(member.overlay)]

    def _redistribute(self, interface: str, prefix: IPNetwork, source: IPNetwork | None) -> bool:
        shell = self._shell
        if (
            not self.relaying
            and self.mesh is not None
            and interface == self.mesh.ifname
            and (prefix, source) not in self._own
            and (prefix, source) not in self._site
        ):
            return False  # not a relay: only our own routes on the mesh (meshd.daemon.relaying)
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

    def _on_route_event(self, event: BabelEvent) -> None:
        if self.mesh is None or self._shell is None:
            return
        self._ask_soon(self._shell)  # a neighbour up, a relay's route, a direct route lost
        extra: dict[WgKey, list[IPNetwork]] = {}
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


def _granted(grants: Mapping[NodeKey, Sequence[IPNetwork]], key: bytes) -> Sequence[IPNetwork]:
    return grants.get(NodeKey(key), ())
