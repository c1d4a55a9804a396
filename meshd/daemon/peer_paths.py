"""The punching service's per-peer state: each programmed member's direct path, by node key.

:class:`PeerPaths` holds one ``_Peer`` per member programmed as a WireGuard peer, one object
a member (:mod:`meshd.daemon.punch_peer`): its :class:`meshd.mesh.punch.DirectPath` (pure;
the peer is one, with what is known of our side shared by all, a
:class:`meshd.mesh.punch.Side`) over its announced candidates
(:mod:`meshd.mesh.announced`, checked by :func:`meshd.mesh.candidates.parse_announced`,
refusals counted), and what the device last showed of it. The path loop
(:class:`meshd.daemon.punching.Punching`) creates and updates them at each step
(:meth:`PeerPaths.update`: the device's handshake, endpoint and received bytes on the
daemon's clock); a direct path whose peer sent nothing for the silence limit is lost at
once (a NAT mapping changed), not when its handshake goes stale. Where Babel's Hellos do not
flow on the path (two members that both do not relay), silence means little: the peer's
:class:`meshd.mesh.liveness_probe.Liveness` judges it, and a quiet path is probed (the peer
re-created, so that WireGuard initiates: :func:`meshd.mesh.kicks.recreate`) before it is
declared lost; :meth:`PeerPaths.probes` asks for at most ``PROBE_BUDGET`` of them a step.
The per-peer lines of a step are collected in ``events`` and logged, bounded
(:meth:`PeerPaths.log_events`, :func:`meshd.mesh.punch.summary`), without holding every line
of a step that moves thousands of peers (:class:`StepLines`). What is kept across restarts
(:mod:`meshd.daemon.punch_restarts`) and the punching messages
(:mod:`meshd.daemon.nat_messages`) read and mark these peers; :meth:`PeerPaths.snapshot` is
what ``meshd peers`` and ``meshd netcheck`` see of them (:mod:`meshd.daemon.nat_view`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import trio

from meshd.daemon.laid_paths import LaidPaths, LaidRelays
from meshd.daemon.nat_view import NatSnapshot, PeerPathView
from meshd.daemon.punch_peer import UNCHOSEN, _Peer
from meshd.errors import DecodeError
from meshd.membership import Member
from meshd.mesh.announced import decode_candidates_untrusted
from meshd.mesh.candidates import Candidate, counts, parse_announced
from meshd.mesh.desired import peer_members
from meshd.mesh.kicks import recreate
from meshd.mesh.liveness_probe import PROBE_BUDGET, Liveness
from meshd.mesh.punch import KEEPALIVE, NAMED, PUNCH_INTERVAL, Action, Side, summary
from meshd.mesh.reach import more_line
from meshd.mesh.remembered import Kept
from meshd.trust.keys import WgKey
from meshd.wg.model import PeerStatus, RemovePeer, UpdatePeer

if TYPE_CHECKING:
    from meshd.daemon.endpoints import Endpoints
    from meshd.daemon.wireguard import WireGuardMesh

# The punching service's lines (meshd.daemon.punching logs them).
log = logging.getLogger("meshd.daemon.punching")


class StepLines:
    """A step's per-peer lines, ``(kind, line)`` in order, as :func:`summary` logs them
    (:meth:`take`), without holding each one: the first ``named`` + 1, the others counted
    by kind, their lines kept only while ``wanted()`` (DEBUG on: they are logged). A first
    step at 10,000 members held 10,000 tuples and strings (~1.5 MB, freed at once, but
    the heap stayed that much larger) to log three of them and a count."""

    def __init__(self, wanted: Callable[[], bool], named: int = NAMED) -> None:
        self.wanted = wanted
        self.named = named
        self._head: list[tuple[str, str]] = []
        self._kinds: dict[str, int] = {}
        self._rest: list[str] = []
        self._count = 0

    def append(self, event: tuple[str, str]) -> None:
        if self._count <= self.named:
            self._head.append(event)
        if self._count >= self.named:
            kind, line = event
            self._kinds[kind] = self._kinds.get(kind, 0) + 1
            if self.wanted():
                self._rest.append(line)
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def take(self) -> tuple[list[str], list[str]]:
        """The (info, debug) lines :func:`summary` makes of this step's events (the debug
        ones those kept); then none are held."""
        head, kinds, rest, count = self._head, self._kinds, self._rest, self._count
        self._head, self._kinds, self._rest, self._count = [], {}, [], 0
        if count <= self.named + 1:
            return summary(head, self.named)
        more = more_line(count - self.named, kinds)
        return [*(line for _, line in head[: self.named]), more], rest


class PeerPaths:
    """The peers by node key, this step's per-peer lines, and when a path last moved."""

    def __init__(
        self,
        mesh: WireGuardMesh,
        endpoints: Endpoints,
        kept: Kept,
        silent_after: float,
        step: float,
    ) -> None:
        self.mesh = mesh
        self.endpoints = endpoints
        self.kept = kept  # where our WireGuard saw peers (meshd.daemon.punch_restarts)
        self.silent_after = silent_after
        self.step = step  # the loop's step while anything moves: the device's age at most
        self.peers: dict[bytes, _Peer] = {}  # by node key
        # What the last step laid over the desired peers, read from the peers themselves.
        self.laid = LaidPaths(self.peers)
        self.relays = LaidRelays(self.laid)
        # What is known of our side, for every path (set once a step, not on each path).
        self.side = Side()
        # This step's per-peer lines (summary).
        self.events = StepLines(lambda: log.isEnabledFor(logging.DEBUG))
        self.moved_at = -math.inf  # when a path last went direct or a member connected
        # When the last step that read the device began (None: none yet): what each path
        # received is known up to then (its ``rx_at``), not beyond.
        self.looked_at: float | None = None
        self.due: list[_Peer] = []  # this step's peers due a probe (probes)
        # The Unix time a round begun at this step's read counts from (the device was read up
        # to a step before ``wall``): one float for every peer that starts one, not one each.
        self._wall = math.nan
        self._since = math.nan
        self._members: tuple[tuple[object, ...], Mapping[WgKey, Member]] | None = None
        self._underlay: object = None  # our underlay the paths rank their candidates under

    def members(self, members: Iterable[Member]) -> Mapping[WgKey, Member]:
        """The members programmed as peers (:func:`meshd.mesh.desired.peer_members`) of a
        membership snapshot's ``members``, worked out again only for a new snapshot or a
        new key of ours (0.18 s at 10,000 members)."""
        mesh = self.mesh
        source = (members, mesh.own_node_key, mesh.own_wg_key)
        cached = self._members
        if cached is None or any(a is not b for a, b in zip(cached[0], source, strict=True)):
            chosen = peer_members(members, own_node_key=source[1], own_wg_key=source[2])
            self._members = cached = (source, chosen)
        return cached[1]

    async def follow_underlay(self, now: float, chunk: int) -> None:
        """Our underlay changed (another network, an address gained or lost): every path
        ranks its candidates under the new one, as a path made now does (a laptop that
        joined a LAN tries the members on it first; :meth:`DirectPath.set_underlay`), a
        checkpoint every ``chunk`` paths (~0.2 s for 10,000)."""
        underlay = self.mesh.underlay
        if underlay is self._underlay:
            return
        self._underlay = underlay
        for n, peer in enumerate(list(self.peers.values())):
            if n and n % chunk == 0:
                await trio.lowlevel.checkpoint()
            peer.set_underlay(underlay.families, underlay.networks, now)

    def peer(self, member: Member, wg_key: bytes, now: float) -> _Peer:
        peer = self.peers.get(member.node_key)
        if peer is not None and peer.wg_key == wg_key:
            if peer.member is not member:
                was, peer.member = peer.announced, member
                announced = peer.announced
                if announced != was:
                    peer.chosen = UNCHOSEN
                    peer.set_candidates(self.candidates(announced), now)
                else:
                    peer.hold_announced()
            return peer
        ann = member.announcement
        announced = ann.endpoints if ann is not None else ()
        underlay = self.mesh.underlay
        peer = _Peer(
            member,
            self.candidates(announced),
            now,
            families=underlay.families,
            networks=underlay.networks,
            overlay=self.mesh.overlay_prefix,
            kept=self.kept.kept.get(wg_key),
            side=self.side,
            rx_at=now,
            heard_at=now,
        )
        self.peers[member.node_key] = peer
        return peer

    def candidates(self, announced: tuple[str, ...]) -> list[Candidate]:
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

    def update(
        self,
        peer: _Peer,
        node_key: bytes,
        status: PeerStatus | None,
        now: float,
        wall: float,
        request: Callable[[_Peer, bytes], bool],
        hellos: bool = True,
    ) -> Action:
        """Update ``peer``'s path from what the device shows of it (``status``); when a
        round starts, ask for a punch (``request``: False while no member can carry it).
        ``hellos``: whether Babel's Hellos flow on the direct path (else its silence is
        judged by :class:`meshd.mesh.liveness_probe.Liveness`)."""
        handshake: float | None = None
        endpoint: str | None = None
        came_before = False
        if status is not None:
            endpoint = status.config.endpoint
            if status.last_handshake:
                # Kept when the peer is created anew (a hushed round, a dead session
                # dropped): its last handshake stays what the path saw last.
                peer.shaken = True
                handshake = now - (wall - status.last_handshake)
                # The endpoint shown is the one we put after this handshake came (it
                # landed between a step's read and its write): not where it came from.
                came_before = (
                    endpoint is not None
                    and endpoint == peer.put_endpoint
                    and status.last_handshake <= peer.put_at
                )
            if status.rx_bytes > peer.rx_bytes:
                peer.heard(now)
            peer.rx_bytes = status.rx_bytes  # lower: the peer was created anew
        path = peer  # its path
        path.watched = not hellos  # a stale handshake alone does not lose it then
        if not hellos or peer.liveness is not None:
            self._judge(peer, status, handshake, now, hellos)
        elif (
            path.state == "direct"
            and now - peer.rx_at > self.silent_after
            and handshake is not None
            and now - handshake > self.silent_after
            and path.lost(now)
        ):
            peer.rx_at = now
            self.events.append(
                (
                    "silent",
                    f"{peer.name}: nothing received for {self.silent_after:.0f} s on the "
                    "direct path; trying",
                )
            )
        before = path.acted
        action = path.update(now, handshake, endpoint, came_before=came_before)
        if action.path != before:
            if action.path == "direct":  # its session is new: reported to it, kept
                self.moved_at = now
            if action.endpoint is not None:
                line = f"{peer.name}: {action.path} at {action.endpoint}"
                self.events.append((action.path, line))
        if action.path == "trying" and (before != "trying" or action.kick):
            peer.request_due = True  # a round started: ask for a punch
            if wall != self._wall:
                self._wall, self._since = wall, wall - self.step
            peer.trying_since = self._since  # the device was read up to a step ago
        elif action.path == "direct":
            peer.request_due = False
        if (
            peer.request_due
            and now - peer.requested_at >= PUNCH_INTERVAL
            and request(peer, node_key)
        ):
            peer.requested_at = now
            peer.request_due = False
        if action.path != "direct":
            peer.liveness = None
        return action

    def _judge(
        self,
        peer: _Peer,
        status: PeerStatus | None,
        handshake: float | None,
        now: float,
        hellos: bool,
    ) -> None:
        """A direct path without Hellos: judged by its :class:`Liveness`, lost once a probe
        went unanswered (a peer whose Hellos came back starts the Hello rule afresh)."""
        path = peer  # its path
        if hellos or path.state != "direct" or status is None:
            if hellos:
                peer.liveness = None
                peer.rx_at = now
            return
        keepalive = status.config.persistent_keepalive or 0
        live = peer.liveness
        if live is None:
            live = peer.liveness = Liveness(now, status.rx_bytes, status.tx_bytes, keepalive)
        verdict = live.judge(now, status.rx_bytes, status.tx_bytes, handshake, keepalive)
        if verdict == "probe":
            self.due.append(peer)
        elif verdict == "lost" and path.lost(now):
            peer.liveness = None
            peer.rx_at = now
            self.events.append(
                (
                    "silent",
                    f"{peer.name}: nothing received on the direct path, and a handshake "
                    "asked for went unanswered; trying",
                )
            )

    def probes(
        self, stats: Mapping[bytes, PeerStatus], now: float, budget: int = PROBE_BUDGET
    ) -> tuple[list[RemovePeer | UpdatePeer], list[Liveness]]:
        """This step's probes: the peers due one (:meth:`update`), quiet longest first, at
        most ``budget``, each re-created so that WireGuard initiates now (a live peer
        answers a handshake initiation; a keepalive it would not). The operations and the
        probes asked for (:meth:`Liveness.cancel` them if the operations fail)."""
        due, self.due = self.due, []
        ops: list[RemovePeer | UpdatePeer] = []
        asked: list[Liveness] = []
        due.sort(key=lambda p: p.liveness.heard if p.liveness is not None else now)
        for peer in due:
            status = stats.get(peer.wg_key)
            live = peer.liveness
            if len(asked) >= budget:
                break
            if live is None or status is None or status.config.endpoint is None:
                continue
            # A keepalive turned on is what makes the new peer initiate (set back by the
            # reconcile loop where the path keeps none).
            keepalive = status.config.persistent_keepalive or KEEPALIVE
            ops += recreate(status, status.config.endpoint, keepalive)
            live.probed(now)
            asked.append(live)
            self.events.append(
                ("asked", f"{peer.name}: nothing received for {now - live.heard:.0f} s; asking")
            )
        return ops, asked

    def log_events(self, log: logging.Logger) -> None:
        """This step's per-peer lines, bounded at INFO (:func:`meshd.mesh.punch.summary`)."""
        info, debug = self.events.take()
        for line in info:
            log.info("%s", line)
        if log.isEnabledFor(logging.DEBUG):
            for line in debug:
                log.debug("%s", line)

    def snapshot(self) -> NatSnapshot:
        now, wall = trio.current_time(), time.time()
        endpoints = self.endpoints
        views = []
        for key, peer in sorted(self.peers.items(), key=lambda kv: (kv[1].name, kv[0])):
            action = peer.action
            path = action.path if action is not None else "none"
            if action is not None and action.endpoint is None and path != "direct":
                path = "none" if not peer.candidates else path
            views.append(
                PeerPathView(
                    node_key=key,
                    name=peer.name,
                    path=path,
                    endpoint=action.endpoint if action is not None else None,
                    last_handshake=self._wall_time(peer, now, wall),
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

    def last_handshake(self, node_key: bytes) -> float | None:
        """The Unix time of the last handshake the member's path saw (None: none), which a
        peer created anew since keeps where the device forgot it."""
        peer = self.peers.get(node_key)
        if peer is None:
            return None
        return self._wall_time(peer, trio.current_time(), time.time())

    @staticmethod
    def _wall_time(peer: _Peer, now: float, wall: float) -> float | None:
        """The Unix time of the peer's last handshake, None where the device never showed
        one (its path keeps it on the daemon's clock, ``now``: the device's reading moved
        there by :meth:`update`; a peer created anew since keeps the one it had)."""
        hs = peer._last_handshake
        return None if hs is None or not peer.shaken else wall - (now - hs)
