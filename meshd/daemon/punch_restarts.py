"""The punching service across restarts: ours (what is kept for the next start) and a
member's (its silent peer created anew).

* where our WireGuard sees each peer, when a start from the store would not program it
  there, is **kept** in the state dir (:mod:`meshd.mesh.remembered`,
  :mod:`meshd.daemon.last_endpoints`), and a path made at the next start tries it first
  (:meth:`meshd.daemon.peer_paths.PeerPaths.peer`); an endpoint the service set (a candidate
  or hint a round tries) only once a handshake newer than its setting answered it;
* a member whose libp2p connection comes back while our WireGuard session with it stays
  silent (a restarted daemon: :mod:`meshd.mesh.reconnect`) has its peer removed and created
  again as it was, so that WireGuard shakes hands anew (:func:`meshd.mesh.kicks.recreate`),
  and is reported to again at once (it lost every observation). Only a member connected
  *again* is doubted: seen connected at an earlier step, then gone, with our session older
  than the last look that saw it connected (a session begun since is a new one: a member
  that restarted and reached us, a joiner whose enrollment's connection went before its
  daemon's came; a member's first connection doubts nothing). Silence is the sign only where
  Babel's Hellos flow on the session; on a direct path without them (two members that do
  not relay: idle for minutes) the path's liveness is doubted instead, so its judge asks
  WireGuard (:meth:`meshd.mesh.liveness_probe.Liveness.doubt`, within its one probe an
  interval).

:class:`Restarts` holds the kept endpoints and the watch over reconnections; the path loop
(:class:`meshd.daemon.punching.Punching`) calls it at each step with the device it read and
its peers (:class:`meshd.daemon.peer_paths.PeerPaths`), and once more at its stop.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from pathlib import Path as FsPath
from typing import TYPE_CHECKING

import trio

from meshd.daemon import last_endpoints
from meshd.daemon.nat_messages import FRESH
from meshd.daemon.punch_peer import UNCHOSEN
from meshd.daemon.transport import Transport, key_of
from meshd.mesh.desired import choose_endpoint
from meshd.mesh.kicks import recreate
from meshd.mesh.reconnect import Reconnects, silence_for
from meshd.mesh.remembered import Kept
from meshd.wg.model import PeerStatus, RemovePeer, UpdatePeer

if TYPE_CHECKING:
    from meshd.daemon.peer_paths import PeerPaths
    from meshd.daemon.punch_peer import _Peer
    from meshd.daemon.wireguard import WireGuardMesh


class Restarts:
    def __init__(
        self,
        host: Transport,
        mesh: WireGuardMesh,
        keepalive: int,
        hello_interval: float | None,
        state_dir: FsPath | None,
    ) -> None:
        self.host = host
        self.mesh = mesh
        self.keepalive = keepalive
        self.reconnects: Reconnects[bytes] = Reconnects(silence_for(hello_interval))
        self._connected: set[bytes] = set()  # members connected at the last step
        self._looked = False  # whether a step looked at the connections before
        # Members seen connected at a step and gone at a later one: the last look (wall
        # clock) that saw them connected. Their next connection is one again.
        self._gone_at: dict[bytes, float] = {}
        self._looked_at = 0.0  # the last look, wall clock
        # Where our WireGuard last saw peers that announce no such endpoint (a NAT's mapping
        # for us): kept in the state dir for the next start (meshd.mesh.remembered).
        self.state_dir = state_dir
        loaded = last_endpoints.load(state_dir, mesh.overlay_prefix) if state_dir else {}
        self.kept = Kept(loaded)
        self._chosen_under: object = None  # the underlay the peers' chosen endpoints are for

    def set_hello_interval(self, hello_interval: float | None) -> None:
        """The silence after which a reconnected member is shaken hands with anew follows
        Babel's Hello interval (a SIGHUP)."""
        self.reconnects.silence = silence_for(hello_interval)

    def forget(self, node_key: bytes) -> None:
        """``node_key`` is no peer of ours any more."""
        self.reconnects.forget(node_key)
        self._gone_at.pop(node_key, None)

    def save(self) -> None:
        """Write what is kept for the next start now if it changed since the last write
        (at a stop: writes come at most every few seconds, and a daemon stopped a second
        after a NATed member's session began would otherwise start without its mapping)."""
        data = self.kept.unwritten(trio.current_time())
        if data is not None and self.state_dir is not None:
            last_endpoints.save(self.state_dir, data)

    def keep(
        self,
        peers: Mapping[bytes, _Peer],
        stats: Mapping[bytes, PeerStatus],
        present: Collection[bytes],
        now: float,
        wall: float,
    ) -> None:
        """Keep where our WireGuard sees each peer with a live session, when the first
        round of a start would not program it there from the announcement alone
        (meshd.mesh.remembered), for the next start.

        An endpoint the service set (a round's candidate or hint) counts only once a
        handshake newer than its setting answered it, as :func:`meshd.mesh.paths.with_paths`
        judges a session against a round: before that, the last handshake came through the
        endpoint before it, and the peer keeps what it had."""
        seen: dict[bytes, tuple[str, bool]] = {}
        underlay = self.mesh.underlay
        if underlay is not self._chosen_under:  # each peer's chosen endpoint, anew
            self._chosen_under = underlay
            for peer in peers.values():
                peer.chosen = UNCHOSEN
        for peer in peers.values():
            status = stats.get(peer.wg_key)
            if status is None or not status.last_handshake or status.config.endpoint is None:
                continue
            if wall - status.last_handshake > FRESH:
                continue
            if status.config.endpoint == peer.put_endpoint and status.last_handshake <= peer.put_at:
                continue  # set by a round, answered by no handshake yet
            if peer.chosen == UNCHOSEN:
                peer.chosen = choose_endpoint(peer.announced, underlay)
            endpoint = status.config.endpoint
            seen[peer.wg_key] = (endpoint, endpoint == peer.chosen)
        data = self.kept.update(now, seen, present)
        if data is not None and self.state_dir is not None:
            last_endpoints.save(self.state_dir, data)

    def reconnected(
        self, paths: PeerPaths, stats: Mapping[bytes, PeerStatus], now: float, wall: float
    ) -> list[RemovePeer | UpdatePeer]:
        """Re-create the peers of members connected again whose session, older than the
        last look that saw them connected, stays silent (a restarted daemon:
        :mod:`meshd.mesh.reconnect`), where Babel's Hellos flow on it; elsewhere doubt their
        path. ``wall``: the device's read, in Unix seconds (its handshakes')."""
        peers = paths.peers
        # From the connected peers' ids (a few), not each peer's id (base58 for 10,000).
        found = (key_of(peer_id) for peer_id in self.host.connected_peers())
        connected = {k for k in found if k is not None and k in peers}
        if self._looked:
            for key in self._connected - connected:
                self._gone_at.setdefault(key, self._looked_at)
        doubted: set[bytes] = set()  # connected again now, with a session from before
        for key in connected - self._connected:
            # A new connection (a restarted member lost what we reported): report again now.
            peer = peers[key]
            peer.reported_endpoint, peer.reported_at = "", -math.inf
            paths.moved_at = now  # steps come sooner while it may be watched
            gone = self._gone_at.pop(key, None)
            status = stats.get(peer.wg_key)
            shaken = status.last_handshake if status is not None else 0
            if gone is None or not shaken or shaken >= gone:
                continue  # a first connection, or a session begun since: no doubt
            # Its session is older than its going: dead if it restarted. Watched
            # (meshd.mesh.reconnect) for WINDOW s where Hellos flow; without them, silence
            # says nothing and its judge asks WireGuard.
            doubted.add(key)
            live = peer.liveness
            if peer.watched and live is not None:
                live.doubt(now)
        self._connected = connected
        self._looked, self._looked_at = True, wall
        heard: dict[bytes, float | None] = {}
        for key, peer in peers.items():
            status = stats.get(peer.wg_key)
            # A session without Hellos is silent when idle: its silence is no sign.
            has_session = status is not None and status.last_handshake and not peer.watched
            heard[key] = peer.heard_at if has_session else None
        ops: list[RemovePeer | UpdatePeer] = []
        for key in self.reconnects.update(now, connected, heard, doubted):
            peer = peers[key]
            status = stats.get(peer.wg_key)
            if status is None or status.config.endpoint is None:
                continue
            paths.events.append(
                (
                    "shaken anew",
                    f"{peer.name}: connected again, and nothing heard on its WireGuard session "
                    f"for {now - peer.heard_at:.0f} s (restarted?): shaking hands anew",
                )
            )
            keepalive = status.config.persistent_keepalive or self.keepalive or 25
            ops += recreate(status, status.config.endpoint, keepalive)
        return ops
