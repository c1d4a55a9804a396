"""The daemon's Babel service: one core, its shell, and what the membership tells it.

:class:`BabelService` builds a :class:`~meshd.babel.core.BabelCore` whose router-id is
derived from the node key (:func:`meshd.babel.options.router_id_of`), and runs a
:class:`~meshd.babel.shell.BabelShell` in the daemon's nursery:

* every ``--babel-interface`` is an ordinary Babel link (``wired``, multicast), with RFC 8967
  MACs when ``--babel-key`` is given; routes learnt there go into the kernel ``via`` their
  next hop;
* we originate our overlay /128 and every ``--babel-originate`` prefix;
* on the WireGuard interface (when the mesh takes extra allowed-ips, see :class:`MeshSeam`)
  Babel is ``unicast-peers``: the neighbours are admitted members' key-derived
  link-local addresses (which ones: below), an Update is accepted only from a member whose
  grants cover the prefix (:class:`~meshd.babel.options.MemberOrigins`), and every
  selected route's prefix is given to the next hop's WireGuard peer and routed at the
  device (a new direct neighbour's overlay /128 stays on its own peer for a few Hellos:
  :mod:`meshd.mesh.holddown`);
* we speak Babel on the mesh only with the mesh's relays and the gateways, or with every
  member if we are one of them (:mod:`meshd.daemon.babel_peers`); whether a direct path to
  any other member works is the punching service's to say;
* another member's overlay /128 goes on the mesh only to the members that ask for it (the
  core's ``on_demand`` hook), and we ask the relays for the /128s that no direct path
  covers (:mod:`meshd.daemon.babel_mesh`, :mod:`meshd.daemon.babel_wants`): a relay no
  longer sends every member's route to every member;
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
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Final, cast

import trio

from meshd.babel.config import Carrier, accept_all
from meshd.babel.core import BabelCore, CoreConfig
from meshd.babel.kernel_routes import KernelRoutes
from meshd.babel.neighbours import IPAddress
from meshd.babel.options import (
    BabelConfig,
    MemberOrigins,
    SiteOrigins,
    covered,
    crosses_allowed,
    router_id_of,
)
from meshd.babel.ports import packet_size
from meshd.babel.routes import Event as BabelEvent
from meshd.babel.shell import BabelShell
from meshd.babel.sources import IPNetwork, RouteKey
from meshd.daemon.babel_links import follow_site_links, open_links, watch_links
from meshd.daemon.babel_mesh import MeshRoutes, MeshSeam
from meshd.daemon.babel_pace import at_rest
from meshd.daemon.babel_peers import NO_MEMBERS, MeshMembers, mesh_members
from meshd.daemon.babel_site import (
    SiteRoutes,
    gateway_loop,
    refuse_ungranted_origins,
    retake,
    ungranted_origins,
)
from meshd.daemon.babel_wants import on_demand_route
from meshd.daemon.feed import Subscription
from meshd.errors import BackendError
from meshd.gossip.bug_log import BugLog
from meshd.membership import Member, MemberState
from meshd.mesh.relay_pair import pair_rank
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.addresses import link_local_from_wg_key

if TYPE_CHECKING:
    from trio_typing import TaskStatus


log = logging.getLogger(__name__)

#: Seconds between two tries to start Babel again after one failed (see BabelService.run).
RESTART_RETRY: Final = 2.0


class _Started:
    """A task status that notes whether it was told the task started (Babel running, not
    failing to start)."""

    def __init__(self, inner: TaskStatus[None]) -> None:
        self.inner = inner
        self.up = False

    def started(self, value: None = None) -> None:
        self.up = True
        self.inner.started(value)


__all__ = ["BabelService", "SiteRoutes", "refuse_ungranted_origins", "ungranted_origins"]

Members = Callable[[], Sequence[Member]]
Grants = Callable[[bytes], Sequence[IPNetwork]]
"""``Membership.grants``: the prefixes a member may announce (empty if it does not stand)."""


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
        direct: Callable[[], Collection[WgKey]] = frozenset,
    ) -> None:
        self.config = config
        self.node_key = node_key
        self.overlay = overlay
        self._overlay48 = ipaddress.IPv6Network((overlay, 48), strict=False)
        self.own_wg_key = own_wg_key
        self.mesh = mesh if own_wg_key is not None else None
        self._members = members
        self._grants = grants
        self._allowed: Mapping[bytes, Sequence[IPNetwork]] | None = None  # the snapshot's
        self._origins = MemberOrigins({})
        self._site_origins = SiteOrigins(overlay=self.overlay_prefix, allowed={}, own=node_key)
        self._shell: BabelShell | None = None
        # The members as Babel sees them (meshd.daemon.babel_peers); None before the first.
        self._view: MeshMembers | None = None
        self._own: set[RouteKey] = set()
        self._site: dict[RouteKey, int] = {}
        self._routes = SiteRoutes(KernelRoutes())
        self._restart: trio.CancelScope | None = None
        self._bugs = BugLog(log, "Babel", clock=time.monotonic)
        self._on_mesh: MeshRoutes | None = None
        if self.mesh is not None:
            self._on_mesh = MeshRoutes(
                self.mesh, config.hello_interval, lambda: self.members_view, direct
            )
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
            at_rest=self._at_rest if mesh_if is not None else None,
            relay_rank=self._relay_rank if mesh_if is not None else None,
            carries=self._carries if mesh_if is not None else None,
            random=random.Random().random,  # noqa: S311 (jitter, not secrets)
        )

    def _carries(self, router_id: bytes, interface: str, neighbour: IPAddress) -> Carrier:
        """What a neighbour on the mesh is to the routes of ``router_id``: their originator
        (``OWN``: its link-local is its WireGuard key's, so WireGuard vouches for who speaks),
        or, for another member's, a carrier if it is one of the mesh's relays or a gateway
        (those carry routes between members); a member that is neither brings its own routes
        alone. Off the mesh (a site link) any neighbour carries, and ``accept_site`` judges."""
        if self.mesh is None or interface != self.mesh.ifname:
            return Carrier.CARRIED
        view = self.members_view
        member = view.peers.get(neighbour)  # type: ignore[arg-type]
        if member is None:
            return Carrier.NONE
        if view.origins.node_of(router_id) == member.node_key:
            return Carrier.OWN
        if neighbour in view.relays or neighbour in view.gateways:
            return Carrier.CARRIED
        return Carrier.NONE

    def _relay_rank(
        self, prefix: IPNetwork, source: IPNetwork | None, interface: str, neighbour: IPAddress
    ) -> bytes | None:
        """A route to a member's overlay /128 through another member of the mesh: that
        relay's rank for the pair, the same at both ends (:mod:`meshd.mesh.relay_pair`)."""
        if source is not None or self.mesh is None or interface != self.mesh.ifname:
            return None
        view = self.members_view
        relay = view.peers.get(neighbour)  # type: ignore[arg-type]
        other = view.member_of_overlay.get(prefix)
        if relay is None or other is None or self.own_wg_key is None:
            return None
        if relay.wg_key == other.wg_key:  # the member itself: a direct route
            return None
        return pair_rank(WgKey(self.own_wg_key), other.wg_key, relay.wg_key)

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; :meth:`rekey` (a new WireGuard key) and a site interface made
        anew start it again. A start that fails (an interface gone again, a socket refused)
        is tried again every :data:`RESTART_RETRY` seconds, but the first: a daemon that
        cannot start Babel at all says so and stops. Once running, whatever ends it (a
        socket's error, a bug a neighbour's datagram set off in the core) has it start again
        :data:`RESTART_RETRY` seconds later, a fresh core as after a new WireGuard key:
        WireGuard, the membership and the direct paths run on (a bug's traceback is logged
        once a kind, then counted: meshd.gossip.bug_log)."""
        first = True
        while True:
            status = _Started(task_status)
            with trio.CancelScope() as scope:
                self._restart = scope
                try:
                    await self._run_once(status)
                    return
                except (BackendError, OSError) as exc:
                    if first and not status.up:
                        raise
                    log.warning(
                        "Babel: %s: %s; trying again in %.0f s",
                        "stopped" if status.up else "cannot start again",
                        exc,
                        RESTART_RETRY,
                    )
                    await trio.sleep(RESTART_RETRY)
                except Exception as exc:  # a bug: Babel starts again, not the daemon's end
                    if not status.up:
                        raise
                    self._bugs.report(exc, f"(starting again in {RESTART_RETRY:.0f} s)")
                    await trio.sleep(RESTART_RETRY)
            first = False
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
        links = await open_links(
            core,
            config,
            mesh_if=mesh_if,
            own_link_local=(
                link_local_from_wg_key(self.own_wg_key) if self.own_wg_key is not None else None
            ),
        )
        ports, auth, opened = links.ports, links.auth, links.indexes
        self._own = self.own_origins(config)
        for key in self._own:
            core.originate(*key)
        shell = BabelShell(
            core,
            ports,
            routes=self._routes,
            auth=auth,
            device_routes=[mesh_if] if mesh_if is not None else [],
        )
        self._shell = shell
        shell.add_listener(self._on_route_event)
        if self._on_mesh is not None:
            self._on_mesh.restart()  # what was asked or queued on a shell before is gone
        self._sync_members()
        if self.mesh is not None:
            self.mesh.follow_babel(config.hello_interval)
        async with trio.open_nursery() as nursery:
            if opened:
                nursery.start_soon(
                    partial(
                        follow_site_links,
                        opened,
                        self._site_link_moved,
                        down=lambda name: shell.submit(partial(_link_down, name)),
                        up=lambda name: shell.submit(partial(_link_up, name)),
                        mtu=lambda name, mtu: shell.submit(
                            partial(_set_mtu, name, packet_size(mtu))
                        ),
                        mtus=links.mtus,
                        changes=watch_links,
                    )
                )
            if self._on_mesh is not None:
                nursery.start_soon(self._on_mesh.loop, shell)
                if config.interfaces:
                    nursery.start_soon(gateway_loop, self, shell)
            await shell.run(task_status=task_status)
            nursery.cancel_scope.cancel()

    def ungranted(self, config: BabelConfig) -> list[IPNetwork]:
        """The ``--babel-originate`` prefixes of ``config`` our certificate does not grant
        (on the mesh; without one, any prefix is ours to announce)."""
        grants = self._grants(self.node_key) if self._grants is not None else None
        if self.mesh is None or grants is None:
            return []
        return [prefix for prefix, _ in config.originate if not covered(prefix, grants)]

    def own_origins(self, config: BabelConfig) -> set[RouteKey]:
        """What we originate: our overlay /128 and each ``--babel-originate`` prefix our
        certificate allows (one ERROR line for each it does not)."""
        own: set[RouteKey] = {(ipaddress.IPv6Network((self.overlay, 128)), None)}
        refused = self.ungranted(config)
        for prefix, source in config.originate:
            if prefix in refused:
                log.error(
                    "Babel: not announcing %s: this member's certificate does not allow it", prefix
                )
                continue
            own.add((prefix, source))
        return own

    def reconfigure(self, config: BabelConfig) -> None:
        """New ``--babel-originate``, ``--babel-redistribute`` and ``--babel-key`` (a
        SIGHUP), taken by the running core and shell at once
        (:func:`~meshd.daemon.babel_site.retake`; the keys of every site link, as a key
        rollover: :meth:`BabelShell.set_keys`). New ``--babel-interface`` links or a new
        Hello interval start Babel again with everything new, as a new WireGuard key does
        (:meth:`rekey`): the neighbours are heard again within a Hello, the WireGuard
        peers and the members' direct paths are untouched."""
        before, self.config = self.config, config
        if (config.interfaces, config.hello_interval) != (
            before.interfaces,
            before.hello_interval,
        ):
            if self._on_mesh is not None:
                self._on_mesh.set_hello_interval(config.hello_interval)
            log.info(
                "Babel: starting again: site links %s, Hello interval %g s",
                ", ".join(config.interfaces) or "none",
                config.hello_interval,
            )
            if self._restart is not None:
                self._restart.cancel()
            return
        shell = self._shell
        if shell is None:
            return
        if config.keys != before.keys:
            for name in config.interfaces:
                shell.set_keys(name, config.keys)
            log.info(
                "Babel: RFC 8967 keys on %s now: %s",
                ", ".join(config.interfaces) or "no site link",
                ", ".join(key.key_id for key in config.keys) or "none (unauthenticated)",
            )
        shell.submit(partial(retake, self, before))

    def set_mesh_mtu(self, mtu: int) -> None:
        """The mesh interface's MTU changed (a SIGHUP's ``mtu``): Babel's datagrams there
        take their size from it at once (a start again reads it from the interface)."""
        shell = self._shell
        if self.mesh is None or shell is None:
            return
        shell.submit(partial(_set_mtu, self.mesh.ifname, packet_size(mtu)))

    def _site_link_moved(self, name: str) -> None:
        """A site interface was made anew (a new index): start again on it, as under a
        new WireGuard key (meshd.daemon.babel_links)."""
        if self._restart is not None:
            self._restart.cancel()

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

    # --- membership ------------------------------------------------------------------------------

    async def follow(self, subscription: Subscription) -> None:
        """Follow the members the owner's snapshots list; a revocation takes effect at once.
        The newest is taken at once: we may have been built with an older one."""
        snapshot, seen, updates = subscription.latest, -1, aiter(subscription)
        while True:
            self._members = partial(tuple, snapshot.members)
            self._grants = partial(_granted, snapshot.grants)
            self._allowed = cast("Mapping[bytes, Sequence[IPNetwork]]", snapshot.grants)
            self._sync_members(revalidate=snapshot.revocations != seen)
            seen, snapshot = snapshot.revocations, await anext(updates)

    @property
    def members_view(self) -> MeshMembers:
        """The members as Babel on the mesh sees them now."""
        return self._view or NO_MEMBERS

    def _sync_members(self, *, revalidate: bool = True) -> None:
        members = [m for m in self._members() if m.state is MemberState.ADMITTED]
        before = self.members_view
        view = mesh_members(
            members, self._grants_of, self.node_key, before.origins, allowed=self._allowed
        )
        self._view = view
        if self._on_mesh is not None:
            # A member whose announcement changed may be back: ask for it again at once.
            renewed = self._on_mesh.wants.unrouted.keys()
            was, after = before.member_of_overlay, view.member_of_overlay
            self._on_mesh.wants.renewed([p for p in renewed if was.get(p) is not after.get(p)])
        self._origins = view.origins
        site = SiteOrigins(
            overlay=self.overlay_prefix,
            allowed=view.allowed,
            own=self.node_key,
            router_ids=view.origins.router_ids,
        )
        revalidate = revalidate or not site.same(self._site_origins)
        self._site_origins = site
        wanted = view.neighbours
        shell = self._shell
        if shell is None:
            return
        mesh = self.mesh
        if self._on_mesh is not None:
            self._on_mesh.wants.neighbours(wanted, trio.current_time())

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
        self.paths_changed()  # a new member without a direct route: the relays at once

    def hellos(self, wg_key: WgKey) -> bool:
        """Whether Babel's Hellos flow between us and this peer at the Hello interval (we
        speak Babel with it, neither end paces the other at rest; or Babel is not on the
        mesh: then the punching service's rule is unchanged). A peer at rest gets a Hello
        every 32 s: its direct path is judged as one without Hellos
        (:mod:`meshd.mesh.liveness_probe`)."""
        view = self._view
        if self.mesh is None or view is None:
            return True
        if wg_key not in view.neighbour_keys:
            return False
        shell = self._shell
        return shell is None or not shell.core.resting(
            self.mesh.ifname, link_local_from_wg_key(wg_key)
        )

    def member_back(self, wg_key: WgKey) -> None:
        """A member says the peer ``wg_key`` is trying to reach us (its punch notice, on a
        path that does not work): it is online. If its /128 is backed off (no relay had a
        route for it when last asked: offline, as far as we knew), ask for it at the next
        round rather than in up to ``period * 2**BACKOFF`` (:meth:`Wants.renewed`). A
        member sending such notices on purpose gets no more than the asking of one /128
        per ``period``, as before the backoff."""
        on_mesh, view = self._on_mesh, self._view
        if on_mesh is None or view is None:
            return
        member = view.peers.get(link_local_from_wg_key(wg_key))
        if member is None:
            return
        if on_mesh.wants.renewed([member.overlay_prefix]) and self._shell is not None:
            on_mesh.ask_soon(self._shell)

    def _at_rest(self, interface: str, address: IPAddress) -> bool:
        """The core's ``at_rest`` hook: :func:`meshd.daemon.babel_pace.at_rest` on the mesh."""
        on_mesh = self._on_mesh
        if on_mesh is None or self.mesh is None or interface != self.mesh.ifname:
            return False
        return at_rest(self.members_view, address, wanting=on_mesh.wants.active)

    def paths_changed(self) -> None:
        """The punching service's direct paths changed (or the members did): a member we
        do not speak Babel with goes back on its own peer, or to a relay, and what we ask
        for follows (:class:`~meshd.daemon.babel_mesh.MeshRoutes`)."""
        if self._shell is not None and self._on_mesh is not None:
            self._on_mesh.ask_soon(self._shell)
            self._on_mesh.place(self._shell.core)

    def _grants_of(self, member: Member) -> Sequence[IPNetwork]:
        if self._grants is not None:
            return self._grants(member.node_key)  # the snapshot's own tuple, not a copy
        return (member.overlay_prefix,)

    def _redistribute(self, interface: str, prefix: IPNetwork, source: IPNetwork | None) -> bool:
        shell = self._shell
        if (
            not (self.relaying and self.members_view.with_all)
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
        self.paths_changed()  # a neighbour up, a relay's route, a direct route lost

    # --- views -------------------------------------------------------------------------------


def _set_mtu(name: str, size: int, core: BabelCore, now: float) -> None:
    core.set_mtu(name, size)


def _link_down(name: str, core: BabelCore, now: float) -> None:
    core.link_down(name, now)


def _link_up(name: str, core: BabelCore, now: float) -> None:
    core.link_up(name, now)


def _granted(grants: Mapping[NodeKey, Sequence[IPNetwork]], key: bytes) -> Sequence[IPNetwork]:
    return grants.get(NodeKey(key), ())
