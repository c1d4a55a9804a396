"""The punching service: per peer a direct path, punch messages, and reports of what we see.

Each member programmed as a WireGuard peer gets a :class:`meshd.mesh.punch.DirectPath`
(pure) over its announced candidates (:mod:`meshd.mesh.announced`, checked by
:func:`meshd.mesh.candidates.parse_announced`, refusals counted). At each step this shell
reads the device (each peer's latest handshake, endpoint and received bytes), updates each
path on the daemon's clock, and lays the chosen endpoint and keepalive over the desired
peers (:attr:`WireGuardMesh.paths`, :func:`meshd.mesh.paths.with_paths`). A new endpoint to
try is set together with the keepalive, turned off and on in one UAPI call, so that
WireGuard sends an initiation now (:mod:`meshd.mesh.kicks`).

Steps come every ``STEP`` seconds while anything moves: a path being tried, a punch request
due, a path gone direct or a member connected within ``QUIET`` seconds. Otherwise every
``IDLE_STEP`` seconds at most, or a third of the silence limit if less (a direct path that
falls silent is seen at most that late): at 10,000 peers a read of the device and a pass
over the peers are the daemon's largest steady cost. A step comes sooner when a path is due
(a relay's next round, a session going stale or silent), and at once on a punch notice, a
new membership snapshot, a new connection, or a change in how members see us (looked at
every ``STEP`` seconds, without reading the device). A step yields to the event loop every
``CHUNK`` peers, so that a stop never waits for a pass over every peer. It logs at most a
few of its per-peer changes at INFO and counts the rest in one line, each at DEBUG
(:func:`meshd.mesh.punch.summary`).

* a direct path whose peer sent nothing for four of Babel's Hello intervals (at least 5 s,
  at most ``SILENT_AFTER``: Hellos arrive on every working one) is lost at once (a NAT
  mapping changed), not when its handshake goes stale;
* when a round starts, we send a **punch request** (``/meshd/nat/1.0.0``) to up to two
  connected members; each forwards a **punch notice** to the peer and one back to us, with
  the endpoint its WireGuard shows for the other side as a hint, and both start a round;
  requests from non-members are dropped and counted, and each member's are rate-limited; a
  notice about a peer whose direct path works (packets from it within that time) is
  refused, so no member's hints move traffic that flows;
* every member **reports** to each peer with a fresh handshake the endpoint its WireGuard
  shows for it, with the address its libp2p connection comes from
  (:mod:`meshd.daemon.endpoints`), when that changes and every ``REPORT_EVERY`` seconds;
* where our WireGuard sees each peer, when a start from the store would not program it
  there, is **kept** in the state dir (:mod:`meshd.mesh.remembered`), and a path made at
  the next start tries it first; an endpoint this service set (a candidate or hint a round
  tries) only once a handshake newer than its setting answered it.

See docs/nat.md and docs/threat-model.md §3.18.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import TYPE_CHECKING

import trio

from meshd.daemon import last_endpoints, wireguard_views
from meshd.daemon.endpoints import REANNOUNCE, Endpoints
from meshd.daemon.nat_messages import FRESH, PunchMessages
from meshd.daemon.nat_view import NatSnapshot, PeerPathView
from meshd.daemon.state import NodeState
from meshd.daemon.transport import Transport, key_of
from meshd.errors import BackendError, DecodeError, MeshdError
from meshd.gossip import nat as protocol
from meshd.membership import Member
from meshd.mesh.announced import decode_candidates_untrusted
from meshd.mesh.candidates import Candidate, counts, is_public, parse_announced
from meshd.mesh.desired import choose_endpoint, peer_members
from meshd.mesh.kicks import kick, recreate
from meshd.mesh.paths import Path
from meshd.mesh.punch import PUNCH_INTERVAL, Action, DirectPath, summary
from meshd.mesh.reconnect import WINDOW, Reconnects, silence_for
from meshd.mesh.remembered import Kept
from meshd.trust.keys import WgKey
from meshd.wg.model import DeviceState, PeerStatus, RemovePeer, UpdatePeer

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
REPORT_EVERY = 60.0  # an unchanged observation is reported again this often
RELAYS = 2  # members a punch request goes to


@dataclass(slots=True)
class _Peer:
    wg_key: bytes
    name: str
    announced: tuple[str, ...]
    path: DirectPath
    action: Action | None = None
    handshake: float | None = None  # Unix time
    rx_bytes: int = 0
    rx_at: float = 0.0
    heard_at: float = 0.0  # when the peer's received bytes last grew (never reset)
    requested_at: float = -math.inf
    request_due: bool = False
    trying_since: float = 0.0  # Unix time the current candidate began to be tried
    # The endpoint this service last put on the device for the peer, and the Unix time from
    # which it was there: a handshake no newer did not answer it (it is not kept).
    put: tuple[str | None, float] = (None, -math.inf)
    reported: tuple[str, float] = ("", -math.inf)
    # (announced, underlay, the endpoint a start programs from them): worked out again only
    # when either changes (meshd.mesh.desired.choose_endpoint parses every candidate)
    chosen: tuple[object, object, str | None] = (None, None, None)


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
        self.silent_after = SILENT_AFTER
        if hello_interval is not None:  # Babel's Hellos reach every peer that works
            self.silent_after = min(SILENT_AFTER, max(5.0, HELLOS_SILENT * hello_interval))
        # A direct path gone silent is seen at most a third of the silence limit late.
        self.idle_step = min(IDLE_STEP, max(STEP, self.silent_after / 3))
        self.peers: dict[bytes, _Peer] = {}  # by node key
        self.reconnects: Reconnects[bytes] = Reconnects(silence_for(hello_interval))
        self._connected: set[bytes] = set()  # members connected at the last step
        self.messages = PunchMessages(host, state, endpoints, self)
        self._announced: tuple[str, ...] = ()
        self._announced_at = -math.inf
        self._wake = trio.Event()
        self._moved_at = -math.inf  # when a path last went direct or a member connected
        self._next_step = STEP  # seconds from one step to the next (_cadence)
        self._events: list[tuple[str, str]] = []  # this step's per-peer lines (summary)
        self._members: tuple[tuple[object, ...], Mapping[WgKey, Member]] | None = None
        self._seen: tuple[object, ...] = ()  # _outside() as the last step began
        self.stats: dict[bytes, PeerStatus] = {}  # the device's peers at the last step
        self._relays: list[tuple[float, str, bytes]] = []  # this step's (_relay_pool)
        # Where our WireGuard last saw peers that announce no such endpoint (a NAT's mapping
        # for us): kept in the state dir for the next start (meshd.mesh.remembered).
        self.state_dir = state_dir
        loaded = last_endpoints.load(state_dir, mesh.overlay_prefix) if state_dir else {}
        self.kept = Kept(loaded)

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
        due = now + self.idle_step
        for peer in self.peers.values():
            action = peer.action
            if action is None or action.path == "trying":
                return STEP
            if peer.request_due and self._relays:  # without a relay, a connection wakes us
                due = min(due, peer.requested_at + PUNCH_INTERVAL)
            due = min(due, action.next_check)
            if action.path == "direct":
                due = min(due, peer.rx_at + self.silent_after)
        if now - self._moved_at < QUIET:
            return STEP
        return min(self.idle_step, max(STEP, due - now))

    def save_kept(self) -> None:
        """Write what is kept for the next start now if it changed since the last write
        (at a stop: writes come at most every few seconds, and a daemon stopped a second
        after a NATed member's session began would otherwise start without its mapping)."""
        data = self.kept.unwritten(trio.current_time())
        if data is not None and self.state_dir is not None:
            last_endpoints.save(self.state_dir, data)

    async def step(self) -> None:
        # What changes while this step reads the device brings the next step at once.
        self._seen = self._outside()
        now, wall = trio.current_time(), time.time()
        device = await wireguard_views.device(self.mesh)
        stats = device.peers_by_key() if device is not None else {}
        self.stats = stats
        members = self._peer_members()
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
        relay_now: set[bytes] = set()
        paths: dict[bytes, Path] = {}
        kicks: list[RemovePeer | UpdatePeer] = []
        kicked: list[_Peer] = []
        present: set[bytes] = set()
        for n, (wg_key, member) in enumerate(members.items()):
            if n and n % CHUNK == 0:
                await trio.lowlevel.checkpoint()
            present.add(member.node_key)
            peer = self._peer(member, wg_key, now)
            peer.path.behind_nat = behind
            peer.path.symmetric, peer.path.public = symmetric, public
            action = self._update(peer, member.node_key, stats.get(wg_key), now, wall)
            if action.relay and action.path != "direct":
                relay_now.add(wg_key)
            keepalive = action.keepalive or None  # only where a NAT is kept open
            since = peer.trying_since if action.path == "trying" else None
            paths[wg_key] = (action.endpoint, keepalive, since)
            status = stats.get(wg_key)
            if (
                action.kick
                and action.endpoint is not None
                and (status is None or status.config.endpoint != action.endpoint)
            ):
                # Set now, here or by the reconcile loop (a peer not on the device yet).
                peer.put = (action.endpoint, wall)
                if status is not None:
                    kicks += kick(status, action.endpoint, keepalive or 0)
                    kicked.append(peer)
        for gone in set(self.peers) - present:
            del self.peers[gone]
            self.messages.forget(gone)
            self.endpoints.forget(gone)
            self.reconnects.forget(gone)
        kicks += self._reconnected(stats, now)
        if kicks:
            try:
                await self.mesh.backend.set(kicks)
            except BackendError as exc:
                log.warning("WireGuard %s: %s", self.mesh.ifname, exc)
            else:
                done = time.time()  # a handshake answering them is newer than this
                for peer in kicked:
                    peer.put = (peer.put[0], done)
            # A peer created anew gets the allowed-ips it had when the device was read; if
            # Babel moved a prefix since, the next round puts it back where Babel says.
            self.mesh.kick()
        if paths != self.mesh.paths or relay_now != self.mesh.relay_now:
            self.mesh.paths = paths
            self.mesh.relay_now = frozenset(relay_now)
            self.mesh.kick()
        self._report(device, now)
        self._keep(stats, members.keys(), now, wall)
        await self._reannounce(now)
        self._log_events()
        self._next_step = self._cadence(now)

    def _log_events(self) -> None:
        """This step's per-peer lines, bounded at INFO (:func:`meshd.mesh.punch.summary`)."""
        events, self._events = self._events, []
        info, debug = summary(events)
        for line in info:
            log.info("%s", line)
        if log.isEnabledFor(logging.DEBUG):
            for line in debug:
                log.debug("%s", line)

    def _peer_members(self) -> Mapping[WgKey, Member]:
        """The members programmed as peers (:func:`meshd.mesh.desired.peer_members`), worked
        out again only for a new membership snapshot or a new key of ours (0.18 s at
        10,000 members)."""
        mesh = self.mesh
        source = (self.state.feed.current.members, mesh.own_node_key, mesh.own_wg_key)
        cached = self._members
        if cached is None or any(a is not b for a, b in zip(cached[0], source, strict=True)):
            chosen = peer_members(source[0], own_node_key=source[1], own_wg_key=source[2])
            self._members = cached = (source, chosen)
        return cached[1]

    def _keep(
        self, stats: dict[bytes, PeerStatus], present: Collection[bytes], now: float, wall: float
    ) -> None:
        """Keep where our WireGuard sees each peer with a live session, when the first
        round of a start would not program it there from the announcement alone
        (meshd.mesh.remembered), for the next start.

        An endpoint this service set (a round's candidate or hint) counts only once a
        handshake newer than its setting answered it, as :func:`meshd.mesh.paths.with_paths`
        judges a session against a round: before that, the last handshake came through the
        endpoint before it, and the peer keeps what it had."""
        seen: dict[bytes, tuple[str, bool]] = {}
        underlay = self.mesh.underlay
        for peer in self.peers.values():
            status = stats.get(peer.wg_key)
            if status is None or not status.last_handshake or status.config.endpoint is None:
                continue
            if wall - status.last_handshake > FRESH:
                continue
            put, put_at = peer.put
            if status.config.endpoint == put and status.last_handshake <= put_at:
                continue  # set by a round, answered by no handshake yet
            announced, was, chosen = peer.chosen
            if announced is not peer.announced or was is not underlay:
                chosen = choose_endpoint(peer.announced, underlay)
                peer.chosen = (peer.announced, underlay, chosen)
            endpoint = status.config.endpoint
            seen[peer.wg_key] = (endpoint, endpoint == chosen)
        data = self.kept.update(now, seen, present)
        if data is not None and self.state_dir is not None:
            last_endpoints.save(self.state_dir, data)

    def _reconnected(
        self, stats: dict[bytes, PeerStatus], now: float
    ) -> list[RemovePeer | UpdatePeer]:
        """Re-create the peers of members whose connection came back while our session with
        them stays silent (a restarted daemon: :mod:`meshd.mesh.reconnect`)."""
        # From the connected peers' ids (a few), not each peer's id (base58 for 10,000).
        found = (key_of(peer_id) for peer_id in self.host.connected_peers())
        connected = sorted({k for k in found if k is not None and k in self.peers})
        for key in set(connected) - self._connected:
            # A new connection (a restarted member lost what we reported): report again now.
            self.peers[key].reported = ("", -math.inf)
            self._moved_at = now  # it is watched (meshd.mesh.reconnect) for WINDOW s
        self._connected = set(connected)
        heard: dict[bytes, float | None] = {}
        for key, peer in self.peers.items():
            status = stats.get(peer.wg_key)
            has_session = status is not None and status.last_handshake
            heard[key] = peer.heard_at if has_session else None
        ops: list[RemovePeer | UpdatePeer] = []
        for key in self.reconnects.update(now, connected, heard):
            peer = self.peers[key]
            status = stats.get(peer.wg_key)
            if status is None or status.config.endpoint is None:
                continue
            self._events.append(
                (
                    "shaken anew",
                    f"{peer.name}: connected again, and nothing heard on its WireGuard session "
                    f"for {now - peer.heard_at:.0f} s (restarted?): shaking hands anew",
                )
            )
            keepalive = status.config.persistent_keepalive or self.keepalive or 25
            ops += recreate(status, status.config.endpoint, keepalive)
        return ops

    def _peer(self, member: Member, wg_key: bytes, now: float) -> _Peer:
        ann = member.announcement
        announced = ann.endpoints if ann is not None else ()
        peer = self.peers.get(member.node_key)
        if peer is not None and peer.wg_key == wg_key:
            if peer.announced != announced:
                peer.announced = announced
                peer.path.set_candidates(self._candidates(announced), now)
            return peer
        underlay = self.mesh.underlay
        path = DirectPath(
            self._candidates(announced),
            now,
            families=underlay.families,
            networks=underlay.networks,
            overlay=self.mesh.overlay_prefix,
            kept=self.kept.kept.get(wg_key),
        )
        peer = _Peer(wg_key, member.name, announced, path, rx_at=now, heard_at=now)
        self.peers[member.node_key] = peer
        return peer

    def _candidates(self, announced: tuple[str, ...]) -> list[Candidate]:
        try:
            pairs = decode_candidates_untrusted(announced)
        except DecodeError:
            self.endpoints.refuse("candidates", "malformed")
            return []
        kept, refused = parse_announced(pairs, self.mesh.overlay_prefix)
        for reason, n in counts(refused).items():
            for _ in range(n):
                self.endpoints.refuse("candidates", reason)
        return kept

    def _update(
        self, peer: _Peer, node_key: bytes, status: PeerStatus | None, now: float, wall: float
    ) -> Action:
        handshake: float | None = None
        endpoint: str | None = None
        if status is not None:
            endpoint = status.config.endpoint
            peer.handshake = status.last_handshake
            if status.last_handshake:
                handshake = now - (wall - status.last_handshake)
            if status.rx_bytes != peer.rx_bytes:
                peer.rx_bytes, peer.rx_at, peer.heard_at = status.rx_bytes, now, now
        path = peer.path
        if (
            path.state == "direct"
            and now - peer.rx_at > self.silent_after
            and handshake is not None
            and now - handshake > self.silent_after
            and path.lost(now)
        ):
            peer.rx_at = now
            self._events.append(
                (
                    "silent",
                    f"{peer.name}: nothing received for {self.silent_after:.0f} s on the "
                    "direct path; trying",
                )
            )
        before = peer.action.path if peer.action is not None else None
        action = path.update(now, handshake, endpoint)
        if action.path != before:
            if action.path == "direct":  # its session is new: reported to it, kept
                self._moved_at = now
            if action.endpoint is not None:
                line = f"{peer.name}: {action.path} at {action.endpoint}"
                self._events.append((action.path, line))
        if action.path == "trying" and (before != "trying" or action.kick):
            peer.request_due = True  # a round started: ask for a punch
            peer.trying_since = wall - STEP  # the device was read up to a step ago
        elif action.path == "direct":
            peer.request_due = False
        if (
            peer.request_due
            and now - peer.requested_at >= PUNCH_INTERVAL
            and self._request(peer, node_key)
        ):
            peer.requested_at = now
            peer.request_due = False
        peer.action = action
        return action

    # -- messages out -----------------------------------------------------------------------

    def _relay_pool(
        self, members: Mapping[WgKey, Member], stats: Mapping[bytes, PeerStatus], wall: float
    ) -> list[tuple[float, str, bytes]]:
        """The connected members that see our WireGuard (a fresh handshake with us, so that
        their notice carries where we are), freshest first: (-handshake, name, node key)."""
        connected = set(self.host.connected_peers())
        return sorted(
            (-status.last_handshake, member.name, member.node_key)
            for wg_key, member in members.items()
            if (status := stats.get(wg_key)) is not None
            and status.last_handshake
            and wall - status.last_handshake <= FRESH
            and self.messages.peer_id(member.node_key) in connected
        )

    def _request(self, peer: _Peer, target: bytes) -> bool:
        """Ask up to RELAYS members of this step's pool (:meth:`_relay_pool`) other than
        ``peer`` (node key ``target``) to tell it we are trying now. False if there is no such
        member yet (asked again at the next step)."""
        chosen: list[tuple[str, bytes]] = []
        for _, name, relay in self._relays:
            if relay != target:
                chosen.append((name, relay))
                if len(chosen) == RELAYS:
                    break
        for name, relay in chosen:
            log.debug("punch request for %s to %s", peer.name, name)
            self.messages.send(relay, protocol.PunchRequest(target))
        return bool(chosen)

    def _report(self, device: DeviceState | None, now: float) -> None:
        """Tell each peer with a fresh session where we see its WireGuard."""
        if device is None:
            return
        stats = device.peers_by_key()
        connected = set(self.host.connected_peers())
        wall = time.time()
        for key, peer in self.peers.items():
            status = stats.get(peer.wg_key)
            if status is None or not status.last_handshake or status.config.endpoint is None:
                continue
            if wall - status.last_handshake > FRESH or self.messages.peer_id(key) not in connected:
                continue
            endpoint = status.config.endpoint
            last, at = peer.reported
            if endpoint == last and now - at < REPORT_EVERY:
                continue
            peer.reported = (endpoint, now)
            self.messages.send(key, protocol.Report(endpoint, self._tcp_address(key)))

    def _tcp_address(self, node_key: bytes) -> str:
        remote = getattr(self.host, "remote_address_of", None)
        found = remote(self.messages.peer_id(node_key)) if remote is not None else None
        return found or ""

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
        now = trio.current_time()
        endpoints = self.endpoints
        views = []
        for key, peer in sorted(self.peers.items(), key=lambda kv: (kv[1].name, kv[0])):
            action = peer.action
            path = action.path if action is not None else "none"
            if action is not None and action.endpoint is None and path != "direct":
                path = "none" if not peer.path.candidates else path
            views.append(
                PeerPathView(
                    node_key=key,
                    name=peer.name,
                    path=path,
                    endpoint=action.endpoint if action is not None else None,
                    last_handshake=peer.handshake or None,
                    keepalive=action.keepalive if action else 0,
                )
            )
        return NatSnapshot(
            candidates=tuple((c.kind, c.endpoint) for c in endpoints.candidates(now)),
            observed=tuple(endpoints.observed(now)),
            behind_nat=endpoints.behind_nat(now),
            nat_kind=endpoints.nat_kind(now),
            peers=tuple(views),
            refused=dict(endpoints.refused),
        )
