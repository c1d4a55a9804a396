"""The punching service's messages (``/meshd/nat/1.0.0``): sending them, and taking them in.

:class:`~meshd.daemon.punching.Punching` drives each peer's direct path; this is its voice
on libp2p. Out, each on a short stream of its own, never holding up the path loop:

* every member **reports** to each peer with a fresh handshake the endpoint its WireGuard
  shows for it, with the address its libp2p connection comes from
  (:mod:`meshd.daemon.endpoints`), when that changes and every ``REPORT_EVERY`` seconds;
* when a round starts, a **punch request** goes to up to ``RELAYS`` members of the step's
  relay pool (connected, with a fresh handshake with us, so that their notice carries where
  we are; freshest first); each forwards a **punch notice** to the peer and one back to us,
  with the endpoint its WireGuard shows for the other side as a hint, and both start a
  round.

In: a member's **report** goes to the endpoint observations
(:class:`~meshd.daemon.endpoints.Endpoints`); a **punch request** is forwarded as a notice
to both sides, with where our WireGuard sees each (the hints), at most
``REQUESTS_PER_MEMBER`` per requesting member per ``REQUEST_WINDOW``; a **notice** starts a
round on the peer's path, unless that path works (packets from the peer within the silence
limit): no member's hints move traffic that flows. Non-members and malformed messages are
dropped and counted (``Endpoints.refuse``). See docs/nat.md and docs/threat-model.md §3.18.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import trio

from meshd.daemon.state import NodeState
from meshd.daemon.transport import Transport, key_of
from meshd.errors import DecodeError, MeshdError
from meshd.gossip import nat as protocol
from meshd.gossip.peers import peer_id_of
from meshd.gossip.streams import FramedStream
from meshd.trust.keys import WgKey

if TYPE_CHECKING:
    from meshd.daemon.endpoints import Endpoints
    from meshd.daemon.punch_peer import _Peer
    from meshd.daemon.punching import Punching
    from meshd.membership import Member
    from meshd.wg.model import DeviceState, PeerStatus

log = logging.getLogger(__name__)
paths_log = logging.getLogger("meshd.daemon.punching")  # the path loop's lines, one logger

FRESH: Final = 180.0  # a handshake this recent means a session: its endpoint is worth telling
REQUESTS_PER_MEMBER: Final = 4  # punch requests forwarded per requesting member...
REQUEST_WINDOW: Final = 10.0  # ...per this many seconds
SEND_DEADLINE: Final = 5.0  # seconds to open a stream and send one message
REPORT_EVERY = 60.0  # an unchanged observation is reported again this often
RELAYS = 2  # members a punch request goes to
# A notice we forward names a member our WireGuard has no fresh session with yet (members
# that joined together: the request came before the session did), so it would carry no
# hint: it waits for one, looked for at each step, this long at most, then goes without.
HINT_WAIT: Final = 3.0
WAITING_MAX: Final = 1024  # notices waiting at once; beyond, they go without a hint


class PunchMessages:
    def __init__(
        self, host: Transport, state: NodeState, endpoints: Endpoints, paths: Punching
    ) -> None:
        self.host = host
        self.state = state
        self.endpoints = endpoints
        self.paths = paths
        self.requests: dict[bytes, deque[float]] = {}  # punch requests taken, by member
        self.sent = {"report": 0, "request": 0, "notice": 0}
        self._peer_ids: dict[bytes, str] = {}
        # The device's peers with a fresh session as of the last step (:meth:`seen`), for
        # the reports and the hints of the punch requests forwarded between steps: each
        # one's endpoint and last handshake, not the whole device read (a status and its
        # counters a peer, ~165 bytes a member at 1,000) nor a fresh peer's status (its
        # configuration, allowed IPs and counters: ~100 bytes more than the pair).
        self.sessions: dict[bytes, tuple[str, float]] = {}
        # Notices waiting for a hint (HINT_WAIT): (to whom, about whom) -> until when.
        self.waiting: dict[tuple[bytes, bytes], float] = {}
        self.nursery: trio.Nursery | None = None  # set by the punching service's loop

    def peer_id(self, node_key: bytes) -> str:
        found = self._peer_ids.get(node_key)
        if found is None:
            # Bounded, yet never below every peer's (a base58 encoding each: at 10,000 peers
            # a bound of 4,096 made every step encode them all again, 0.4 s).
            if len(self._peer_ids) > max(4096, 2 * len(self.paths.peers)):
                self._peer_ids.clear()
            found = self._peer_ids[node_key] = peer_id_of(node_key)
        return found

    def forget(self, node_key: bytes) -> None:
        """``node_key`` is no peer of ours any more."""
        self.requests.pop(node_key, None)

    # -- out --------------------------------------------------------------------------------

    def send(self, node_key: bytes, message: protocol.Message) -> None:
        if self.nursery is not None:
            self.nursery.start_soon(self._send_now, node_key, message)

    def relay_pool(
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
            and self.peer_id(member.node_key) in connected
        )

    def request(self, peer: _Peer, target: bytes, relays: list[tuple[float, str, bytes]]) -> bool:
        """Ask up to RELAYS members of this step's pool (``relays``: :meth:`relay_pool`) other
        than ``peer`` (node key ``target``) to tell it we are trying now. False if there is no
        such member yet (asked again at the next step)."""
        chosen: list[tuple[str, bytes]] = []
        for _, name, relay in relays:
            if relay != target:
                chosen.append((name, relay))
                if len(chosen) == RELAYS:
                    break
        for name, relay in chosen:
            paths_log.debug("punch request for %s to %s", peer.name, name)
            self.send(relay, protocol.PunchRequest(target))
        return bool(chosen)

    def seen(self, stats: Mapping[bytes, PeerStatus], wall: float, now: float) -> None:
        """The device as this step read it (at Unix time ``wall`` or later, ``now`` on the
        event loop's clock): its peers with a fresh session and an endpoint are kept
        (:attr:`sessions`) until the next step, and the notices waiting for a hint that
        now has one, or that waited long enough, go."""
        self.sessions = {
            key: (status.config.endpoint, status.last_handshake)
            for key, status in stats.items()
            if status.config.endpoint is not None
            and status.last_handshake
            and wall - status.last_handshake <= FRESH
        }
        if self.waiting:
            self._send_waiting(now)

    def _send_waiting(self, now: float) -> None:
        for (to, about), until in list(self.waiting.items()):
            hints = self._hints(about)
            if hints or now >= until:
                del self.waiting[(to, about)]
                if self.state.is_member(to) and self.state.is_member(about):
                    self.send(to, protocol.PunchNotice(about, hints))

    def report(self, device: DeviceState | None, now: float) -> None:
        """Tell each peer with a fresh session (:meth:`seen`) where we see its WireGuard."""
        if device is None:
            return
        sessions = self.sessions
        connected = set(self.host.connected_peers())
        wall = time.time()
        for key, peer in self.paths.peers.items():
            session = sessions.get(peer.wg_key)
            if session is None:
                continue
            endpoint, last_handshake = session
            if wall - last_handshake > FRESH or self.peer_id(key) not in connected:
                continue
            if endpoint == peer.reported_endpoint and now - peer.reported_at < REPORT_EVERY:
                continue
            peer.reported_endpoint, peer.reported_at = endpoint, now
            self.send(key, protocol.Report(endpoint, self._tcp_address(key)))

    def _tcp_address(self, node_key: bytes) -> str:
        remote = getattr(self.host, "remote_address_of", None)
        found = remote(self.peer_id(node_key)) if remote is not None else None
        return found or ""

    async def _send_now(self, node_key: bytes, message: protocol.Message) -> None:
        with contextlib.suppress(MeshdError), trio.move_on_after(SEND_DEADLINE):
            stream = await self.host.open_stream(self.peer_id(node_key), protocol.PROTOCOL_ID)
            try:
                await stream.send_frame(protocol.encode_message(message))
            finally:
                await stream.close()
            kind = type(message).__name__
            key = {"Report": "report", "PunchRequest": "request"}.get(kind, "notice")
            self.sent[key] += 1

    # -- in ---------------------------------------------------------------------------------

    async def serve(self, stream: FramedStream) -> None:
        # Who sends is known before a byte is read: a non-member's stream is not read, a
        # member's no further than one message can be (not the host's frame limit, 1 MiB).
        sender = key_of(stream.remote_peer_id)
        if sender is None or not self.state.is_member(sender):
            self.endpoints.refuse("message", "not-member")
            return
        try:
            data = await stream.receive_frame(max_size=protocol.MAX_MESSAGE)
            message = protocol.decode_nat_message_untrusted(data)
        except DecodeError:
            self.endpoints.refuse("message", "malformed")
            return
        now = trio.current_time()
        if isinstance(message, protocol.Report):
            self.endpoints.report(sender, message.wg_endpoint, message.tcp_address, now)
        elif isinstance(message, protocol.PunchRequest):
            self._forward(sender, message.target, now)
        else:
            self._noticed(message, now)

    def _forward(self, requester: bytes, target: bytes, now: float) -> None:
        taken = self.requests.setdefault(requester, deque())
        while taken and now - taken[0] >= REQUEST_WINDOW:
            taken.popleft()
        if len(taken) >= REQUESTS_PER_MEMBER:
            self.endpoints.refuse("punchrequest", "rate")
            return
        if target == requester or not self.state.is_member(target):
            self.endpoints.refuse("punchrequest", "target")
            return
        if self.peer_id(target) not in set(self.host.connected_peers()):
            self.endpoints.refuse("punchrequest", "not-connected")
            return
        taken.append(now)
        log.debug("forwarding a punch request between %s and %s", requester.hex()[:8],
                  target.hex()[:8])  # fmt: skip
        self._notify(target, requester, now)
        self._notify(requester, target, now)

    def _notify(self, to: bytes, about: bytes, now: float) -> None:
        """Tell ``to`` that ``about`` is trying to reach it now, with where our WireGuard
        sees ``about``; without a fresh session with it, once one comes (at a step within
        HINT_WAIT), else without a hint. A pair already waiting waits on, not longer."""
        hints = self._hints(about)
        if hints or len(self.waiting) >= WAITING_MAX:
            self.send(to, protocol.PunchNotice(about, hints))
        else:
            self.waiting.setdefault((to, about), now + HINT_WAIT)

    def _hints(self, node_key: bytes) -> tuple[str, ...]:
        """Where our WireGuard sees the member now (a fresh session's endpoint), if anywhere."""
        peer = self.paths.peers.get(node_key)
        session = self.sessions.get(peer.wg_key) if peer is not None else None
        if session is None or time.time() - session[1] > FRESH:
            return ()
        return (session[0],)

    def _noticed(self, notice: protocol.PunchNotice, now: float) -> None:
        peer = self.paths.peers.get(notice.peer)
        if peer is None:
            self.endpoints.refuse("punchnotice", "unknown-peer")
            return
        # Whether it works is known as of the device's last look: a look that comes late
        # (the event loop busy, a flood of notices among its work) is no silence.
        looked = self.paths.peer_paths.looked_at
        if peer.works(now if looked is None else min(now, looked), self.paths.silent_after):
            # A working direct path is never disturbed: whoever sends the notice, its
            # hints would only move the peer's traffic off a path that works (an idle one
            # without Hellos too, until its own probe goes unanswered).
            self.endpoints.refuse("punchnotice", "direct")
            if peer.liveness is not None and now - peer.rx_at > self.paths.silent_after:
                # Quiet without Hellos, and the peer says it cannot reach us: ask WireGuard
                # (a probe, within the path's own budget), not the notice's hints.
                peer.liveness.doubt(now)
                if peer.liveness.next_check() <= now:  # not while probed in this interval
                    self.paths.wake()
            return
        heard = self.paths.on_member_heard
        if heard is not None:
            heard(WgKey(peer.wg_key))
        why = peer.path.punch(now, notice.hints)
        log.debug("punch notice for %s, hints %s: %s", peer.name, notice.hints, why or "round")
        if why is not None:
            self.endpoints.refuse("punchnotice", why)
        if why != "busy":
            peer.requested_at = now  # the round the notice started needs no request of ours
            self.paths.wake()
