"""The punching service's path loop: per peer a direct path, laid over the desired peers.

Each member programmed as a WireGuard peer gets a direct path (:mod:`meshd.daemon.peer_paths`:
a :class:`meshd.mesh.punch.DirectPath` over its announced candidates). At each step this
shell reads the device (each peer's latest handshake, endpoint and received bytes), updates
each path on the daemon's clock, and lays the chosen endpoint and keepalive over the desired
peers (:attr:`WireGuardMesh.paths`, :func:`meshd.mesh.paths.with_paths`), all at once at
the end of a step. A new endpoint to try is set together with the keepalive, turned off and
on in one UAPI call, so that WireGuard sends an initiation now (:mod:`meshd.mesh.kicks`);
a peer that never answered is created anew without a keepalive when its round fails, so
that WireGuard stops retrying its initiations until the next round (:func:`meshd.mesh.kicks.
hush`).

Steps come every ``STEP`` seconds while anything moves: a path being tried, a punch request
due, a path gone direct or a member connected within ``QUIET`` seconds. Otherwise every
``IDLE_STEP`` seconds at most, or a third of the silence limit if less (a direct path that
falls silent is seen at most that late): at 10,000 peers a read of the device and a pass
over the peers are the daemon's largest steady cost. With no direct path (nothing to see
fall silent), further apart as a step's pass (its read of the device and its look at each
peer) costs more (:mod:`meshd.daemon.cost_pace`), but never past a path's due time. A step
comes sooner when a path is due (a relay's next round, a session going stale or silent),
and at once on a punch notice, a
new membership snapshot, a new connection, or a change in how members see us (looked at
every ``STEP`` seconds, without reading the device). A step yields to the event loop every
``CHUNK`` peers, so that a stop never waits for a pass over every peer. It logs at most a
few of its per-peer changes at INFO and counts the rest in one line, each at DEBUG
(:func:`meshd.mesh.punch.summary`).

A direct path whose peer sent nothing for four of Babel's Hello intervals (at least 5 s,
at most ``SILENT_AFTER``: Hellos arrive on every working one) is lost at once. Where Hellos
do not flow on the path (``hellos``: two members that both do not relay), the path is judged
by :mod:`meshd.mesh.liveness_probe` instead: quiet for longer than its keepalives or its
traffic allow, it is probed (the peer re-created, at most ``PROBE_BUDGET`` a step), and lost
only when the probe goes unanswered. :meth:`Punching.direct_keys` are the peers whose path
is direct now; ``on_direct_change`` is called at the end of a step that changed them. The
service is six modules, this loop and what it calls at each step:

* :mod:`meshd.daemon.peer_paths`: the peers, each updated from the device, and the
  snapshot ``meshd peers`` and ``meshd netcheck`` read;
* :mod:`meshd.daemon.punch_peer`: a peer's one record, its direct path and what the device
  showed of it;
* :mod:`meshd.daemon.laid_paths`: what a step lays over the desired peers, read from the
  peers (no table made at each step);
* :mod:`meshd.daemon.punch_restarts`: what is kept across our restarts (where our
  WireGuard sees each peer) and a reconnected member's silent peer created anew;
* :mod:`meshd.daemon.nat_messages`: the messages (reports of what we see, the relay pool
  and punch requests out; reports, requests and notices in).

See docs/nat.md and docs/threat-model.md §3.18.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path as FsPath
from typing import TYPE_CHECKING

import trio

from meshd.daemon import wireguard_views
from meshd.daemon.cost_pace import spaced
from meshd.daemon.device_reads import read_cost
from meshd.daemon.endpoints import REANNOUNCE, Endpoints
from meshd.daemon.nat_messages import PunchMessages
from meshd.daemon.nat_view import NatSnapshot
from meshd.daemon.peer_paths import PeerPaths
from meshd.daemon.punch_peer import _Peer
from meshd.daemon.punch_restarts import Restarts
from meshd.daemon.state import NodeState
from meshd.daemon.transport import Transport
from meshd.errors import BackendError, MeshdError
from meshd.gossip import nat as protocol
from meshd.membership import Member
from meshd.mesh.candidates import is_public
from meshd.mesh.kicks import OPS_AT_ONCE, hush, in_batches, kick
from meshd.mesh.liveness_probe import Liveness
from meshd.mesh.punch import PUNCH_INTERVAL, Action
from meshd.mesh.reconnect import WINDOW
from meshd.trust.keys import WgKey
from meshd.wg.model import PeerStatus, RemovePeer, UpdatePeer

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from meshd.daemon.announcer import Announcer
    from meshd.daemon.wireguard import WireGuardMesh

log = logging.getLogger(__name__)

STEP = 1.0  # seconds between two looks at the device while anything moves...
IDLE_STEP = 5.0  # ...and at most this (a third of the silence limit, if less) once
QUIET = WINDOW  # nothing moved for this long (a member connected again is watched so long)
CHUNK = 500  # peers a step goes through between two checkpoints
SILENT_AFTER = 15.0  # a direct path with nothing received for this long is lost...
HELLOS_SILENT = 4  # ...or for this many of Babel's Hello intervals, if less (at least 5 s)


class Punching:
    def __init__(
        self,
        host: Transport,
        state: NodeState,
        mesh: WireGuardMesh,
        endpoints: Endpoints,
        announcer: Announcer,
        keepalive: int,
        hello_interval: float | None = None,
        state_dir: FsPath | None = None,
    ) -> None:
        self.host = host
        self.state = state
        self.mesh = mesh
        self.endpoints = endpoints
        self.announcer = announcer
        self.keepalive = keepalive
        self._hear_hellos(hello_interval)
        self.messages = PunchMessages(host, state, endpoints, self)
        self._announced: tuple[str, ...] = ()
        self._announced_at = -math.inf
        self._wake = trio.Event()
        self._next_step = STEP  # seconds from one step to the next (_cadence)
        # Seconds the last step's pass over every peer took: its read of the device (the
        # last one made, if it was handed on) and its look at each peer, without its writes.
        self.pass_cost = 0.0
        self._seen: tuple[object, ...] = ()  # _outside() as the last step began
        self._relays: list[tuple[float, str, bytes]] = []  # this step's (_relay_pool)
        # What is kept for the next start, and the watch over reconnected members.
        self.restarts = Restarts(host, mesh, keepalive, hello_interval, state_dir)
        self.kept = self.restarts.kept
        self.peer_paths = PeerPaths(mesh, endpoints, self.kept, self.silent_after, STEP)
        self.peers = self.peer_paths.peers  # by node key
        # Whether Babel's Hellos flow on a peer's direct path (set by the service's wiring):
        # where they do not, silence is judged by meshd.mesh.liveness_probe.
        self.hellos: Callable[[WgKey], bool] = lambda _key: True
        self.on_direct_change: Callable[[], None] | None = None  # the direct paths changed
        # A member says this peer is trying to reach us, on a path that does not work: it is
        # online (Babel asks for its /128 again if it had stopped, thinking it offline).
        self.on_member_heard: Callable[[WgKey], None] | None = None
        self._direct: frozenset[WgKey] = frozenset()
        self._wrote = False  # this step wrote to the device: a round is asked for at its end

    def _hear_hellos(self, hello_interval: float | None) -> None:
        self.silent_after = SILENT_AFTER
        if hello_interval is not None:  # Babel's Hellos reach every peer that works
            self.silent_after = min(SILENT_AFTER, max(5.0, HELLOS_SILENT * hello_interval))
        # A direct path gone silent is seen at most a third of the silence limit late.
        self.idle_step = min(IDLE_STEP, max(STEP, self.silent_after / 3))

    def set_hello_interval(self, hello_interval: float | None) -> None:
        """Babel's Hello interval changed (a SIGHUP): the silence after which a direct path
        is judged gone, and after which a member is shaken hands with anew, follow it."""
        self._hear_hellos(hello_interval)
        self.peer_paths.silent_after = self.silent_after
        self.restarts.set_hello_interval(hello_interval)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.set_stream_handler(protocol.PROTOCOL_ID, self.messages.serve)
        try:
            async with trio.open_nursery() as nursery:
                self.messages.nursery = nursery
                task_status.started()
                while True:
                    try:
                        await self.step()
                    except MeshdError as exc:
                        log.warning("punching: %s", exc)
                        self._round_after_writes()  # what it wrote before it failed
                    await self._pause(self._next_step)
        finally:
            self.save_kept()

    async def _pause(self, seconds: float) -> None:
        """Until the next step: ``seconds``, or less if woken (a punch notice) or if what
        the device cannot tell changed since the last step began (looked at every ``STEP``
        seconds)."""
        deadline = trio.current_time() + seconds
        while (left := deadline - trio.current_time()) > 0:
            if self._outside() != self._seen:
                break
            with trio.move_on_after(min(STEP, left)):
                await self._wake.wait()
            if self._wake.is_set():
                break
        self._wake = trio.Event()

    def _outside(self) -> tuple[object, ...]:
        """What a step acts on besides the device: the membership snapshot, the underlay,
        the members connected, and how members see us."""
        now = trio.current_time()
        return (
            self.state.feed.current,
            self.mesh.underlay,
            frozenset(self.host.connected_peers()),
            self.endpoints.announced(now),
            self.endpoints.behind_nat(now),
            self.endpoints.nat_kind(now),
        )

    def _cadence(self, now: float) -> float:
        """Seconds to the next step (see the module documentation)."""
        due = math.inf
        direct = False
        for peer in self.peers.values():
            path = peer  # its path
            acted = path.acted
            if acted is None or acted == "trying":
                return STEP
            if peer.request_due and self._relays:  # without a relay, a connection wakes us
                due = min(due, peer.requested_at + PUNCH_INTERVAL)
            due = min(due, path.next_check)
            if acted != "direct":
                continue
            direct = True
            live = peer.liveness
            if live is not None:  # no Hellos: when it turns quiet, or a probe's answer is due
                due = min(due, live.next_check())
            else:
                due = min(due, peer.rx_at + self.silent_after)
        if now - self.peer_paths.moved_at < QUIET:
            return STEP
        idle = self.idle_step
        if not direct:  # no direct path to see fall silent: what is due, and reads spaced
            idle = spaced(idle, self.pass_cost)
        return min(idle, max(STEP, due - now))

    def save_kept(self) -> None:
        """Write what is kept for the next start now if it changed since the last write
        (:meth:`meshd.daemon.punch_restarts.Restarts.save`)."""
        self.restarts.save()

    async def step(self) -> None:
        # What changes while this step reads the device brings the next step at once.
        self._seen = self._outside()
        now, wall = trio.current_time(), time.time()
        device = await wireguard_views.device(self.mesh)
        read = trio.current_time()
        read_took = read_cost(self.mesh.backend, read - now)
        stats = device.peers_by_key() if device is not None else {}
        if device is not None:
            self.peer_paths.looked_at = now
        self.messages.seen(stats, wall, now)  # its fresh sessions kept, not the whole read
        members = self.peer_paths.members(self.state.feed.current.members)
        behind = self.endpoints.behind_nat(now)
        symmetric = self.endpoints.nat_kind(now) == "symmetric"
        public = any(
            c.kind == "configured" or (c.kind == "local" and is_public(c.address))
            for c in self.endpoints.candidates(now)
        )
        # Who can carry a punch request this step: worked out once, not once a peer (at a
        # start from a 10,000-member store every peer asks, and a look over every member for
        # each held the event loop for ~30 s).
        self._relays = self._relay_pool(members, stats, wall)
        kicks: list[RemovePeer | UpdatePeer] = []
        kicked: list[_Peer] = []
        hellos = self.hellos
        side = self.peer_paths.side  # what every path knows of our side, set once
        side.behind_nat, side.symmetric, side.public = behind, symmetric, public
        await self.peer_paths.follow_underlay(now, CHUNK)
        writing = 0.0  # seconds of the pass spent writing its operations so far
        for n, (wg_key, member) in enumerate(members.items()):
            if n and n % CHUNK == 0:
                if len(kicks) >= OPS_AT_ONCE:  # written as they come, not held to the end
                    began = trio.current_time()
                    await self._write(kicks, kicked, ())
                    writing += trio.current_time() - began
                    kicks, kicked = [], []
                await trio.lowlevel.checkpoint()
            peer = self.peer_paths.peer(member, wg_key, now)
            before = peer.acted
            status = stats.get(wg_key)
            action = self._update(peer, member.node_key, status, now, wall, hellos(wg_key))
            keepalive = action.keepalive or None  # only where a NAT is kept open
            if (
                action.kick
                and action.endpoint is not None
                and (status is None or status.config.endpoint != action.endpoint)
            ):
                # Set now, here or by the reconcile loop (a peer not on the device yet).
                peer.put_endpoint, peer.put_at = action.endpoint, wall
                if status is not None:
                    kicks += kick(status, action.endpoint, keepalive or 0)
                    kicked.append(peer)
            else:  # a round that failed: WireGuard's retries stopped
                kicks += hush(before, action.path, status, wall)
        # The peers of members gone: each other peer is its member's (made anew above for a
        # member whose WireGuard key changed), found by its key (no set of node keys a step).
        gone_ones = [
            key
            for key, peer in self.peers.items()
            if (owner := members.get(WgKey(peer.wg_key))) is None or owner.node_key != key
        ]
        for gone in gone_ones:
            del self.peers[gone]
            self.messages.forget(gone)
            self.endpoints.forget(gone)
            self.restarts.forget(gone)
        kicks += self._reconnected(stats, now, wall)
        probes, asked = self.peer_paths.probes(stats, now)
        kicks += probes
        self.messages.report(device, now)
        self._keep(stats, members.keys(), now, wall)
        # The read is let go before the last write: not held beside the round's next one.
        del device, stats
        self.pass_cost = read_took + trio.current_time() - read - writing
        await self._write(kicks, kicked, asked)
        del kicks, kicked
        self._round_after_writes()
        self._lay(members)
        await self._reannounce(now)
        self.peer_paths.log_events(log)
        self._next_step = self._cadence(now)
        direct = frozenset(WgKey(p.wg_key) for p in self.peers.values() if p.acted == "direct")
        if direct != self._direct:
            self._direct = direct
            if self.on_direct_change is not None:
                self.on_direct_change()

    async def _write(
        self, kicks: list[RemovePeer | UpdatePeer], kicked: list[_Peer], asked: Iterable[Liveness]
    ) -> None:
        """Write a step's operations (:func:`meshd.mesh.kicks.in_batches`): the peers
        ``kicked`` are then put, from the moment the write began (their ``put_at``: a
        handshake no newer did not answer it, but came through the endpoint before); if the
        device refused them, what was ``asked`` of a probe is asked again at the next step. A
        step writes them as they come (``OPS_AT_ONCE`` at a time, at its checkpoints): at
        10,000 peers whose first round failed at once, the 20,000 operations that hush them
        were ~1.4 MB held to the end of the pass."""
        if not kicks:
            return
        began = time.time()  # a handshake answering them is newer than this
        try:
            for batch in in_batches(kicks):
                await self.mesh.backend.set(batch)
        except BackendError as exc:
            log.warning("WireGuard %s: %s", self.mesh.ifname, exc)
            for live in asked:  # not sent: asked again at the next step
                live.cancel()
        else:
            for peer in kicked:
                peer.put_at = began
        # A peer created anew gets the allowed-ips it had when the device was read; if
        # Babel moved a prefix since, the round the step asks for at its end puts it back
        # where Babel says (one round after all of a step's writes: a round kicked by each
        # of them read the device while the step went on, and held that read beside its own).
        self._wrote = True

    def _round_after_writes(self) -> None:
        """Ask for a WireGuard round if the step wrote to the device: one after all of its
        writes, not one a write (see :meth:`_write`)."""
        if self._wrote:
            self._wrote = False
            self.mesh.kick()

    def _lay(self, members: Mapping[WgKey, Member]) -> None:
        """Lay this step's paths over the desired peers (:mod:`meshd.daemon.laid_paths`: read
        from the peers, no table), and ask for a round if they changed."""
        paths, relays = self.peer_paths.laid, self.peer_paths.relays
        changed = paths.lay(members)
        mesh = self.mesh
        if mesh.paths is not paths:  # the kept endpoints of a start (first_paths), or none
            changed = dict(paths) != mesh.paths or set(relays) != mesh.relay_now
            mesh.paths, mesh.relay_now = paths, relays
        if changed:
            mesh.kick()

    def _keep(
        self, stats: Mapping[bytes, PeerStatus], present: Collection[bytes], now: float, wall: float
    ) -> None:
        """Keep where our WireGuard sees each peer for the next start
        (:meth:`meshd.daemon.punch_restarts.Restarts.keep`)."""
        self.restarts.keep(self.peers, stats, present, now, wall)

    def _reconnected(
        self, stats: Mapping[bytes, PeerStatus], now: float, wall: float
    ) -> list[RemovePeer | UpdatePeer]:
        """Re-create the peers of members whose connection came back while our session with
        them stays silent (:meth:`meshd.daemon.punch_restarts.Restarts.reconnected`)."""
        return self.restarts.reconnected(self.peer_paths, stats, now, wall)

    # -- messages out -----------------------------------------------------------------------

    def _update(
        self,
        peer: _Peer,
        node_key: bytes,
        status: PeerStatus | None,
        now: float,
        wall: float,
        hellos: bool,
    ) -> Action:
        return self.peer_paths.update(peer, node_key, status, now, wall, self._request, hellos)

    def _relay_pool(
        self, members: Mapping[WgKey, Member], stats: Mapping[bytes, PeerStatus], wall: float
    ) -> list[tuple[float, str, bytes]]:
        """Who can carry a punch request (:meth:`PunchMessages.relay_pool`)."""
        return self.messages.relay_pool(members, stats, wall)

    def _request(self, peer: _Peer, target: bytes) -> bool:
        """Ask members of this step's pool to tell ``peer`` we are trying now
        (:meth:`PunchMessages.request`)."""
        return self.messages.request(peer, target, self._relays)

    async def _reannounce(self, now: float) -> None:
        announced = self.endpoints.announced(now)
        if announced != self._announced and now - self._announced_at >= REANNOUNCE:
            self._announced, self._announced_at = announced, now
            await self.announcer.announce_if_due()

    def wake(self) -> None:
        """Look at the device now, not at the next step (a notice started a round)."""
        self._wake.set()

    # -- what others read -------------------------------------------------------------------

    def snapshot(self) -> NatSnapshot:
        return self.peer_paths.snapshot()

    def last_handshake(self, node_key: bytes) -> float | None:
        """:meth:`meshd.daemon.peer_paths.PeerPaths.last_handshake`."""
        return self.peer_paths.last_handshake(node_key)

    def direct_keys(self) -> frozenset[WgKey]:
        """The peers whose path is direct now (a working direct session), as of the last
        step; ``on_direct_change`` is called at the end of a step that changed them."""
        return self._direct
