"""The announcer: what we tell the network about ourselves, and when.

It reads our interface addresses (the WireGuard endpoints and libp2p addresses we announce,
and the underlay the WireGuard service reaches peers through), and announces when
:class:`~meshd.daemon.announce_policy.AnnouncePolicy` (pure) says: at start, when those
addresses change (looked at every 10 s), and otherwise every ``announce_interval`` (two hours by
default: a refresh, not a heartbeat; members learn we are alive from connections and WireGuard
handshakes, meshd.daemon.liveness).

The announcement also says whether this member relays for others (``relays``: what Babel on
the other members needs to know, meshd.daemon.relaying); when that decision changes, the
relaying service wakes the announcer (:meth:`Announcer.wake`) and the change goes out at
once, not at the next look. So does one after an outage (:meth:`Announcer.renew`, and the
policy's own look at the clocks): members that found no route to us meanwhile ask for one
again when they hear it.

Each announcement is logged at INFO with why it went out (the policy's reason: start,
addresses changed, relay decision changed, back after an outage, refresh), so that a digest
that moves on the members can be traced to the member that announced and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from meshd.daemon.announce_policy import Addresses, AnnouncePolicy, check_every, next_seq
from meshd.daemon.config import DaemonConfig
from meshd.daemon.flooding import Flooder
from meshd.daemon.state import NodeState
from meshd.daemon.transport import Transport
from meshd.daemon.wireguard import WireGuardMesh
from meshd.daemon.wireguard_open import local_addresses
from meshd.errors import MeshdError, VerifyError
from meshd.mesh.underlay import (
    LocalAddress,
    default_endpoints,
    endpoint_hosts,
    expand_listen_addrs,
    underlay_of,
    usable_addresses,
)
from meshd.records import make_announcement
from meshd.wg.model import IPAddress

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from meshd.daemon.relaying import Relaying

log = logging.getLogger(__name__)


class Announcer:
    def __init__(
        self,
        host: Transport,
        state: NodeState,
        mesh: WireGuardMesh,
        config: DaemonConfig,
        flooder: Flooder,
    ) -> None:
        self.host = host
        self.state = state
        self.mesh = mesh
        self.config = config
        self.flooder = flooder
        self.policy = AnnouncePolicy(
            config.announce_interval, check=check_every(config.announce_interval)
        )
        self.endpoints: tuple[str, ...] = config.endpoints
        self._hosts: list[IPAddress] = []
        # Our ranked candidates as the endpoints to announce (meshd.daemon.endpoints), given
        # our interface addresses; set where WireGuard runs.
        self.candidates: Callable[[list[LocalAddress]], tuple[str, ...]] | None = None
        # Whether we relay for other members now (:meth:`follow_relaying`); never without a
        # relaying service (no Babel on the mesh).
        self.relaying: Callable[[], bool] = _not_relaying
        # Called after every look at the underlay, told whether our addresses changed since
        # the last (not at the first): the daemon follows the MTU, which may move with no
        # address of ours changing (meshd.daemon.underlay_mtu).
        self.on_look: Callable[[bool], Awaitable[None]] | None = None
        self._local: frozenset[tuple[str, object]] | None = None
        self._wake = trio.Event()

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.refresh_underlay()
        self._remember(tuple(self.listen_addrs()))
        task_status.started()
        while True:
            try:
                await self.announce_if_due()
            except MeshdError as exc:
                log.warning("announce: %s", exc)
                self.policy.failed(trio.current_time())  # again later, not at once
            with trio.move_on_after(self.policy.wait(trio.current_time())):
                await self._wake.wait()
            self._wake = trio.Event()

    def wake(self) -> None:
        """Look now, not at the next look (whether we relay has changed)."""
        self._wake.set()

    def reconfigure(self, config: DaemonConfig) -> None:
        """New options (a SIGHUP: ``--endpoint`` and ``--announce-interval`` among them):
        looked at now."""
        self.config = config
        self.policy.interval = config.announce_interval
        self.policy.check = check_every(config.announce_interval)
        if self.mesh.kind == "none":
            self.endpoints = config.endpoints  # announced as configured, no candidates
        self.wake()

    def follow_relaying(self, relaying: Relaying) -> None:
        """Announce ``relaying``'s decision, and a change of it at once."""
        self.relaying = relaying.relays
        relaying.on_change = self.wake

    def listen_addrs(self) -> list[str]:
        """Where others can dial us: the host's listen addresses, wildcards made concrete."""
        return expand_listen_addrs(self.host.listen_addrs(), self._hosts)

    def _remember(self, addrs: tuple[str, ...]) -> None:
        self.state.node.store.set_meta("listen_addrs", "\n".join(addrs).encode())

    async def refresh_underlay(self) -> None:
        """Read our interface addresses: the endpoints and hosts we announce, what we reach."""
        config = self.config
        exclude = [config.interface, "lo"]
        local = await local_addresses()
        self.mesh.set_underlay(underlay_of(local, exclude=exclude))
        seen = frozenset((a.ifname, a.interface) for a in local if a.ifname not in exclude)
        changed, self._local = self._local is not None and seen != self._local, seen
        if self.on_look is not None:
            await self.on_look(changed)
        if config.endpoints:
            self._hosts = endpoint_hosts(config.endpoints)
        else:
            self._hosts = [a.address for a in usable_addresses(local, exclude=exclude)]
            if self.mesh.kind != "none":
                self.endpoints = default_endpoints(local, config.listen_port, exclude=exclude)
        if self.candidates is not None and self.mesh.kind != "none":
            self.endpoints = self.candidates(local)

    def renew(self) -> None:
        """We are back after an outage others may have seen: announce anew, now."""
        self.policy.renew()
        self.wake()

    async def announce_if_due(self) -> None:
        await self.refresh_underlay()
        addresses: Addresses = (self.endpoints, tuple(self.listen_addrs()))
        relays = self.relaying()
        now = trio.current_time()
        self.policy.looked(time.monotonic(), time.time())
        why = self.policy.why(now, addresses, relays)
        if why is None:
            return
        endpoints, addrs = addresses
        log.info(
            "announcing (%s): endpoints %s; addresses %s; relays %s",
            why,
            ", ".join(endpoints) or "none",
            ", ".join(addrs) or "none",
            "yes" if relays else "no",
        )
        await self.announce(addresses, relays)
        self.policy.announced(now, addresses, relays)

    async def announce(self, addresses: Addresses, relays: bool = False) -> None:
        state = self.state
        endpoints, addrs = addresses
        own = state.member(state.key)
        held = own.announcement if own is not None else None
        announcement = make_announcement(
            state.node.node_key,
            network_id=state.node.anchor.network_id,
            seq=next_seq(time.time_ns(), held.seq if held is not None else None),
            issued_at=state.clock(),
            endpoints=endpoints,
            addrs=addrs,
            relays=relays,
        )
        try:
            outcome = state.add_local(announcement)
        except VerifyError as exc:
            log.warning("not announcing: %s", exc)
            return
        if self.policy.changed(addresses):
            self._remember(addrs)
        if outcome.new:
            await self.flooder.flood(announcement.raw)


def _not_relaying() -> bool:
    return False
