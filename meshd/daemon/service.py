"""The daemon: a nursery of small named services around one owner of membership.

:class:`~meshd.daemon.state.NodeState` owns the membership and its store; every change goes
through it, and it tells the others through :attr:`NodeState.feed`
(:mod:`meshd.daemon.feed`): frozen, versioned snapshots and bounded event channels. The
services, each its own file, each started with ``nursery.start`` (it reports started once
it serves), each with its policy in a pure core that takes ``now``:

* gossip: the transport's validator is :meth:`NodeState.validate` (merge, store, then
  forward); delivered messages are drained here;
* control (:mod:`~meshd.daemon.control`): the control socket, one handler per command;
* anti-entropy (:mod:`~meshd.daemon.antientropy`, :mod:`~meshd.daemon.sync_policy`);
* enrollment (:mod:`~meshd.daemon.enrollment`, :class:`meshd.gossip.enroll.GracePolicy`);
* connections (:mod:`~meshd.daemon.connections`, :mod:`~meshd.daemon.connect_policy`);
* the announcer (:mod:`~meshd.daemon.announcer`, :mod:`~meshd.daemon.announce_policy`);
* expiry (:mod:`~meshd.daemon.expiry`, :meth:`meshd.membership.Membership.tick`);
* Babel (:mod:`~meshd.daemon.babel`), when asked for or when WireGuard runs.

The WireGuard service (:mod:`~meshd.daemon.wireguard`) starts before all of these, in
:mod:`meshd.daemon.launch`, and follows the same feed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from meshd.control.commands import Request
from meshd.daemon import live_config
from meshd.daemon.announcer import Announcer
from meshd.daemon.antientropy import AntiEntropy
from meshd.daemon.babel import BabelService
from meshd.daemon.bootstrap import invite_addrs, stored_bootstrap, stored_public
from meshd.daemon.config import DaemonConfig, topic_of
from meshd.daemon.connect_policy import ConnectionPolicy
from meshd.daemon.connections import Connections
from meshd.daemon.control import Control
from meshd.daemon.endpoints import Endpoints
from meshd.daemon.enrollment import Enrollment
from meshd.daemon.expiry import Expiry
from meshd.daemon.flooding import Flooder
from meshd.daemon.liveness import LIVENESS_INTERVAL, Liveness
from meshd.daemon.punching import Punching
from meshd.daemon.rejoin_policy import bootstrap_targets
from meshd.daemon.relaying import BEHIND_NAT, OWN_ADDRESS, Forwarding, Relaying
from meshd.daemon.renew_slot import AutoRenewSlot
from meshd.daemon.renewer import lifecycle_services
from meshd.daemon.state import NodeState, SyncSessions
from meshd.daemon.sync_policy import SyncPolicy
from meshd.daemon.transport import Transport, key_of
from meshd.daemon.wireguard import WireGuardMesh
from meshd.errors import BackendError
from meshd.gossip import enroll
from meshd.gossip.admission import StrangerBudget
from meshd.gossip.backoff import DialBackoff
from meshd.gossip.dial_order import listens_on_loopback
from meshd.gossip.host import GossipHost, HostConfig, peer_id_of
from meshd.mesh.underlay import LocalAddress
from meshd.node.statedir import NodeDir
from meshd.trust.keys import NodeKey, WgKey, fingerprint

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from meshd.daemon.metrics import MetricsSlot
    from meshd.daemon.reload import Reloader
    from meshd.daemon.underlay_mtu import UnderlayMtu

log = logging.getLogger(__name__)

A = TypeVar("A")

# Established inbound connections of non-members (fresh keys cost nothing), per source (an
# IPv4 address or IPv6 /64) and in all; and the graces given per source per enrollment_grace.
# Graces are many more than connections: at most 8 strangers of a source are connected at
# once anyway, and machines that join together from behind one NAT each need one.
STRANGERS_PER_SOURCE = 8
STRANGERS_TOTAL = 128
GRACES_PER_SOURCE = 64


class Daemon:
    """The running node: its services, wired. Build it with :func:`serve`."""

    def __init__(
        self,
        config: DaemonConfig,
        state: NodeState,
        host: Transport,
        mesh: WireGuardMesh,
        forwarding: Forwarding | None = None,
    ) -> None:
        self.config = config
        self.state = state
        self.host = host
        self.mesh = mesh
        # What SIGHUPs did (meshd.daemon.reload): set by meshd.daemon.launch once running.
        self.reloader: Reloader | None = None
        # The metrics endpoint (on or off), set by meshd.daemon.launch once running.
        self.metrics: MetricsSlot | None = None
        rng = random.Random()  # noqa: S311 (peer choice, not secrets)
        self.grace = enroll.GracePolicy(
            connect=config.non_member_grace,
            enroll=config.enrollment_grace,
            attempts=config.enrollment_attempts,
            cooldown=config.grace_cooldown,
        )
        self.strangers: StrangerBudget[Any] = StrangerBudget(
            STRANGERS_PER_SOURCE,
            STRANGERS_TOTAL,
            graces_per_source=GRACES_PER_SOURCE,
            grace_window=config.enrollment_grace,
        )
        self.sync_sessions = SyncSessions()
        state.peer_key = key_of
        self.flooder = Flooder(host, state)
        self.antientropy = AntiEntropy(
            host, state, SyncPolicy(config.sync_interval, rng), self.grace, self.sync_sessions
        )
        policy = ConnectionPolicy(
            self.grace, DialBackoff(config.max_backoff), config.degree, peer_id_of, rng
        )
        policy.rejoin.bootstrap = self.bootstrap_targets(config)
        if config.public_addrs:  # for `meshd invite` while the daemon is down
            state.node.store.set_meta("public_addrs", "\n".join(config.public_addrs).encode())
        self.connections = Connections(
            host,
            state,
            policy,
            self.strangers,
            self.antientropy,
            config.connect_interval,
            peer_id_of,
        )
        bound = getattr(host, "bound_strangers", None)
        if bound is not None:
            bound(self.strangers, self.connections.is_member_peer)
        self.enrollment = Enrollment(host, state, self.grace, self.flooder, policy.told)
        self.announcer = Announcer(host, state, mesh, config, self.flooder)
        self.connections.on_back = self.announcer.renew
        self.connections.on_link = lambda: mesh.underlay.networks
        self.connections.loopback = listens_on_loopback(config.listen)
        self.endpoints = Endpoints(
            overlay=mesh.overlay_prefix,
            listen_port=config.listen_port,
            configured=config.endpoints,
            is_member=state.is_member,
        )
        self.punching = Punching(
            host,
            state,
            mesh,
            self.endpoints,
            self.announcer,
            config.keepalive,
            config.babel.hello_interval,
            state.node.paths.root,
        )
        self.announcer.candidates = self._candidates
        self.announcer.on_look = self._underlay_looked
        self.expiry = Expiry(state, config.tick_interval)
        self.liveness = Liveness(host, state, lambda: mesh.handshakes, LIVENESS_INTERVAL)
        # --auto-renew, taken again by a SIGHUP (UsageError now: no key that may renew here).
        self.renewal = AutoRenewSlot(state, self.flooder.flood, config)
        self._mtu: UnderlayMtu | None = None  # follows the underlay's MTU, made at the first look
        self._mtu_trouble: str | None = None  # the last failure to follow it, said once
        self.lifecycle = [*lifecycle_services(state), self.renewal]
        self.control = Control(self)
        self.babel = _babel_service(config, state, mesh, self.punching.direct_keys)
        if self.babel is not None and self.babel.mesh is not None:
            # Babel only with the mesh's relays and gateways (meshd.daemon.babel_peers): the
            # punching service judges the other direct paths without Hellos, and says when
            # they change.
            self.punching.hellos = self.babel.hellos
            self.punching.on_direct_change = self.babel.paths_changed
            self.punching.on_member_heard = self.babel.member_back
        self.relaying: Relaying | None = None
        if self.babel is not None and self.babel.mesh is not None:
            self.relaying = Relaying(config, self.babel, self._seen, forwarding=forwarding)
            self.announcer.follow_relaying(self.relaying)

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            # Handlers first, so that no stream a peer opens finds none.
            await nursery.start(self.antientropy.run)
            await nursery.start(self.enrollment.run)
            if self.relaying is not None:  # before Babel's first Update and our announcement
                await nursery.start(self.relaying.run)
            await nursery.start(self.announcer.run)
            nursery.start_soon(self._drain_messages)
            await nursery.start(self.expiry.run)
            await nursery.start(self.liveness.run)
            for service in self.lifecycle:
                await nursery.start(service.run)
            await nursery.start(self.connections.run)
            if self.mesh.kind != "none":
                await nursery.start(self.punching.run)
                nursery.start_soon(self._watch_default_routes)
            if self.babel is not None:
                await nursery.start(self.babel.run)
                nursery.start_soon(self.babel.follow, self.state.feed.subscribe())
            log.info(
                "meshd up: node %s (%s) in network %s, listening on %s",
                self.state.node.name,
                fingerprint(self.state.key),
                self.state.node.anchor.network.name,
                ", ".join(self.listen_addrs())
                or ", ".join(self.host.listen_addrs())
                + " (no address of this host to announce yet: members cannot dial us until one"
                " appears)",
            )
            # The control socket last: a node that answers `meshd status` is up, as it is
            # for systemd once this returns (READY=1).
            await nursery.start(self.control.run)
            task_status.started()

    async def _watch_default_routes(self) -> None:
        """A default route added, changed or deleted (an uplink replaced, a failover): the
        announcer looks at once (our endpoints, the MTU derived again), not at its next
        look; lost notifications have the next look read the routes."""
        from meshd.daemon.underlay_mtu import watch_default_routes

        def changed(now: bool) -> None:
            if self._mtu is not None:
                self._mtu.routes_changed()
            if now:
                self.announcer.wake()

        await watch_default_routes(changed)

    async def _underlay_looked(self, addresses_changed: bool) -> None:
        """At each look at the underlay, without ``--mtu``: the WireGuard MTU derived again
        (another network, the default route on another uplink, an uplink's MTU changed) and,
        if it moved, set (meshd.daemon.underlay_mtu); Babel's datagrams on the mesh follow.
        A failure to read or set it is a WARNING once, not at every look, until it changes
        or it works again."""
        if self.config.mtu is not None or self.mesh.kind == "none":
            return
        if self._mtu is None:
            from meshd.daemon.underlay_mtu import UnderlayMtu

            self._mtu = UnderlayMtu(self.mesh)
        try:
            mtu = await self._mtu.look(trio.current_time(), addresses_changed)
        except (OSError, BackendError) as exc:
            if str(exc) != self._mtu_trouble:
                log.warning("the underlay's MTU could not be followed; it stays %d: %s",
                            self.mesh.mtu, exc)  # fmt: skip
            self._mtu_trouble = str(exc)
            return
        self._mtu_trouble = None
        if mtu is not None and self.babel is not None:
            self.babel.set_mesh_mtu(mtu)

    async def reconfigure(self, new: DaemonConfig, keys: Collection[str]) -> tuple[str, ...]:
        """A SIGHUP's new options that the running services take (meshd.daemon.live_config):
        the keys taken; a one-line error, with nothing changed, for a value refused."""
        return await live_config.take(self, new, keys)

    def listen_addrs(self) -> list[str]:
        return self.announcer.listen_addrs()

    def bootstrap_targets(self, config: DaemonConfig) -> dict[bytes, tuple[str, ...]]:
        """What a node that lost every member dials besides their last addresses
        (meshd.daemon.rejoin_policy): the ``bootstrap`` option's (``--bootstrap`` of ``up``
        or the config file: a way in that outlives the addresses join kept, a name), then
        those ``meshd join`` kept, by the member each names."""
        kept = stored_bootstrap(self.state.node)
        addrs = [*config.bootstrap, *(a for a in kept if a not in config.bootstrap)]
        return bootstrap_targets(addrs, self.state.peer_key)

    def invite_addrs(self) -> list[str]:
        """What invites carry: ``--public-addr`` (or what ``init`` kept) first, then our
        reflexive addresses, then where we listen (meshd.daemon.bootstrap)."""
        public = self.config.public_addrs or tuple(stored_public(self.state.node))
        return invite_addrs(
            (*public, *self._reflexive_hosts()), self.listen_addrs(), self.state.key
        )

    def _reflexive_hosts(self) -> list[str]:
        """The public addresses members agree they see us at (meshd.daemon.endpoints): with
        our libp2p port, they work from outside behind a 1:1 NAT (a cloud machine's)."""
        found = self.endpoints.candidates(trio.current_time())
        return [str(c.address) for c in found if c.kind == "reflexive"]

    def _candidates(self, local: list[LocalAddress]) -> tuple[str, ...]:
        """The endpoints we announce: our ranked candidates (meshd.daemon.endpoints)."""
        self.endpoints.set_local(local, [self.config.interface, "lo"])
        return self.endpoints.announced(trio.current_time())

    def _seen(self) -> str | None:
        """Where members see our WireGuard (meshd.daemon.endpoints), for ``--relay auto``:
        behind a NAT, at our own address, or None while none has said."""
        now = trio.current_time()
        if self.endpoints.behind_nat(now):
            return BEHIND_NAT
        return OWN_ADDRESS if self.endpoints.nat_kind(now) == "none" else None

    async def _control(self, request: Request, answer: type[A]) -> A:
        """A control command asked inside the daemon (:class:`meshd.control.commands.Ask`)."""
        return await self.control.ask(request, answer)

    async def _drain_messages(self) -> None:
        # Records were merged and stored by the validator; what is delivered is only drained.
        async for _ in self.host.messages:
            pass

    def shed_view(self) -> dict[str, int]:
        """What was refused to stay within budget (docs/threat-model.md, §3.16)."""
        control = self.control.stats
        host: Any = self.host
        handshakes = getattr(host, "handshakes", None)
        streams = getattr(host, "streams", None)
        return {
            "handshakes": handshakes.shed if handshakes is not None else 0,
            "handshakes_pending": handshakes.pending if handshakes is not None else 0,
            "handshakes_evicted": handshakes.evicted if handshakes is not None else 0,
            "streams": streams.refused if streams is not None else 0,
            "control": control.shed,
            "control_idle": control.idle,
            "control_accept_errors": control.accept_errors,
            "strangers": self.strangers.shed,
            "strangers_held": len(self.strangers),
            "strangers_evicted": self.strangers.evicted,
            "strangers_unclosed": getattr(host, "unclosed_sheds", 0),
            "graces_refused": self.strangers.graces_refused,
            # NAT messages and candidates refused, by what and reason (docs/nat.md).
            **{f"nat_{what}": n for what, n in sorted(self.endpoints.refused.items())},
        }

    def budgets_view(self) -> dict[str, int]:
        """What the per-peer budgets of sync and enrollment refused (docs/daemon.md)."""
        sessions = self.sync_sessions
        return {
            "sync_sessions_open": sessions.open_count,
            "sync_sessions_refused": sessions.refused,
            "sync_items_dropped": sessions.dropped,
            "enroll_attempts_refused": self.grace.refused_attempts,
            "grace_tracked": len(self.grace),
        }


def _babel_service(
    config: DaemonConfig,
    state: NodeState,
    mesh: WireGuardMesh,
    direct: Callable[[], Collection[WgKey]] = frozenset,
) -> BabelService | None:
    """The Babel service when ``--babel-*`` asks for it; on the mesh when WireGuard runs
    and takes extra allowed-ips from Babel."""
    on_mesh = mesh.kind != "none" and hasattr(mesh, "set_extra_prefixes")
    if not (config.babel.enabled or on_mesh):
        return None
    first = state.feed.current
    return BabelService(
        config.babel,
        node_key=state.key,
        overlay=mesh.overlay,
        own_wg_key=mesh.own_wg_key if on_mesh else None,
        members=lambda: first.members,
        grants=lambda key: first.grants.get(NodeKey(key), ()),
        mesh=mesh if on_mesh else None,
        direct=direct,
    )


def host_config(config: DaemonConfig, node: NodeDir, listen: Sequence[str]) -> HostConfig:
    return HostConfig(
        identity_seed=node.node_key.seed,
        listen_addrs=tuple(listen),
        topic=topic_of(fingerprint(node.anchor.root_key)),
        degree=config.degree,
        degree_low=max(1, min(4, config.degree - 2)),
        degree_high=max(config.degree * 2, 2),
        stream_timeout=config.stream_timeout,
        dial_timeout=config.dial_timeout,
        shutdown_timeout=config.shutdown_timeout,
    )


async def serve(
    config: DaemonConfig,
    state: NodeState,
    mesh: WireGuardMesh,
    forwarding: Forwarding | None = None,
    *,
    task_status: TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gossip side of a node whose state and WireGuard are open, until cancelled."""
    validate = state.traffic.counting(state.validate)
    async with GossipHost(host_config(config, state.node, config.listen), validate) as host:
        daemon = Daemon(config, state, host, mesh, forwarding)
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            task_status.started(daemon)
