"""The connections service: keep ``degree`` members connected, drop who must go.

Its policy is :class:`~meshd.daemon.connect_policy.ConnectionPolicy` (pure); this shell feeds it
the transport's peer events and a pass every ``interval`` seconds, and does what it decides:
dial, disconnect, ask anti-entropy for a sync with a peer that connects. It also follows the
membership's events: each is logged, and a member just revoked gets one short sync (so it
learns why) and is then dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import trio

from meshd.daemon.announce_policy import RENEW_AFTER
from meshd.daemon.antientropy import AntiEntropy
from meshd.daemon.connect_policy import ConnectionPolicy, Peer, Standing
from meshd.daemon.state import NodeState
from meshd.daemon.transport import Transport, key_of
from meshd.errors import MeshdError
from meshd.gossip.admission import StrangerBudget
from meshd.gossip.dial_order import IPNetwork, dialable
from meshd.gossip.peers import PeerConnected
from meshd.membership import Event, Member, MemberState, Revoked, Updated

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

EXCLUSION_NOTICE: Final = 2.0  # seconds to sync with a member we just excluded, so it learns it
ISOLATION_NOTICE: Final = 10.0  # seconds with no member connected before we say so


class Connections:
    def __init__(
        self,
        host: Transport,
        state: NodeState,
        policy: ConnectionPolicy,
        strangers: StrangerBudget[Any],
        sync: AntiEntropy,
        interval: float,
        peer_id_of: Callable[[bytes], str],
    ) -> None:
        self.host = host
        self.state = state
        self.policy = policy
        self.strangers = strangers
        self.sync = sync
        self.interval = interval
        self.peer_id_of = peer_id_of
        self._events = state.feed.events()
        self._nursery: trio.Nursery | None = None
        self._alone_since: float | None = None  # no member connected since (monotonic)
        # The same moment in Unix seconds (``meshd status``: isolated since), None: a member
        # is connected (or none other exists).
        self.alone_since: int | None = None
        # Called when a member is connected again after RENEW_AFTER seconds alone.
        self.on_back: Callable[[], None] | None = None
        # The networks our interface addresses are on now: a member's addresses on one of
        # them are dialled first (meshd.gossip.dial_order).
        self.on_link: Callable[[], Sequence[IPNetwork]] = tuple
        # Whether this node listens on a loopback address itself: only then is a member's
        # loopback address dialled (meshd.gossip.dial_order.dialable).
        self.loopback = True
        self._said_alone = False

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._peer_events)
            nursery.start_soon(self._membership_events)
            task_status.started()
            while True:
                try:
                    await self._pass()
                except MeshdError as exc:
                    log.warning("connections: %s", exc)
                await trio.sleep(self.interval)

    def told(self, peer: str) -> None:
        """``peer`` was told why it is refused: it goes at the next pass."""
        self.policy.told(peer)

    def standing(self, peer: str) -> Peer:
        key = key_of(peer)
        if key is None or self.state.is_revoked(key):
            return Peer(peer, Standing.REFUSED, key)
        if self.state.is_member(key):
            return Peer(peer, Standing.MEMBER, key)
        return Peer(peer, Standing.STRANGER, key)

    def is_member_peer(self, peer: str) -> bool:
        return self.standing(peer).standing is Standing.MEMBER

    async def _pass(self) -> None:
        now = time.monotonic()
        peers = [self.standing(p) for p in self.host.connected_peers()]
        # The feed's snapshot, made once per change of the membership (time's changes too:
        # the expiry tick publishes them), not every member judged again at every pass (at
        # 10,000 members that was a quarter of an idle daemon's CPU).
        members = self.state.feed.current.members
        decided = self.policy.sweep(now, peers, members, self.state.key)
        self._say_isolation(now, peers, members)
        for peer, why in decided.drop:
            await self.disconnect(peer, why)
        assert self._nursery is not None
        for key, addrs in decided.dial:
            self._nursery.start_soon(self._dial, key, addrs)

    def _say_isolation(self, now: float, peers: list[Peer], members: Sequence[Member]) -> None:
        """A WARNING once no member has been connected for ISOLATION_NOTICE (while others
        exist), and an INFO when one is again: the dialling goes on meanwhile. While no member
        is connected, members' silence does not count (Membership.cut_off): the silence is
        ours, and expiring everyone would take them out of WireGuard too."""
        alone = not any(p.standing is Standing.MEMBER for p in peers) and any(
            m.node_key != self.state.key and m.state is not MemberState.REVOKED for m in members
        )
        if not alone:
            self._back(now)
            return
        if self._alone_since is None:
            self._alone_since = now
            self.alone_since = int(time.time())
            self.state.membership.cut_off(self.state.clock())
        elif not self._said_alone and now - self._alone_since >= ISOLATION_NOTICE:
            self._said_alone = True
            log.warning(
                "no member connected for %.0f s: dialling every member's last addresses and "
                "the bootstrap addresses, each every %.0f s at most, until one answers",
                now - self._alone_since,
                self.policy.rejoin.cap * 1.5,
            )

    def _back(self, now: float) -> None:
        """A member is connected: the isolation, if any, ends now (not at the next pass).
        After ``RENEW_AFTER`` seconds of it, ``on_back`` (the announcer's renewal: the others
        may have seen us gone, meshd.daemon.announce_policy)."""
        if self._alone_since is not None:
            self.state.membership.reconnected(self.state.clock())
            if self._said_alone:
                log.info("a member is connected again, after %.0f s", now - self._alone_since)
            if now - self._alone_since >= RENEW_AFTER and self.on_back is not None:
                self.on_back()
        self._alone_since, self._said_alone, self.alone_since = None, False, None

    async def _dial(self, key: bytes, addrs: tuple[str, ...]) -> None:
        expected = self.peer_id_of(key)
        loopback = self.loopback
        usable = [a for a in addrs if a.endswith("/p2p/" + expected) and dialable(a, loopback)]
        ok = False
        try:
            results = await self.host.connect_any(usable, self.on_link()) if usable else []
            ok = any(r.ok for r in results)
        finally:
            delay = self.policy.dialled(key, addrs, ok, time.monotonic())
        if not ok:
            log.debug("could not reach %s; next try in %.0f s", expected, delay)

    async def disconnect(self, peer: str, why: str) -> None:
        if peer not in self.host.connected_peers():
            return
        log.info("disconnecting %s: %s", peer, why)
        try:
            await self.host.disconnect(peer)
        except MeshdError as exc:
            log.debug("disconnect %s: %s", peer, exc)

    async def _peer_events(self) -> None:
        async for event in self.host.events:
            peer = event.peer_id
            if not isinstance(event, PeerConnected):
                self.policy.disconnected(peer)
                continue
            now = time.monotonic()
            self.policy.connected(peer, now)
            seen = self.standing(peer)
            if seen.key is None:
                await self.disconnect(peer, "not an Ed25519 peer")
                continue
            if seen.standing is Standing.STRANGER:
                source = self.host.source_of_peer(peer)
                if source is not None and not self.strangers.grant_grace(source, peer, now):
                    # A fresh key costs nothing: a source gets so many graces per window.
                    assert self._nursery is not None
                    self._nursery.start_soon(self.disconnect, peer, f"no grace left for {source}")
                    continue
                self.policy.grace.connected(peer, now)  # once per window, not per connection
            elif seen.standing is Standing.MEMBER:
                self._back(now)
            if seen.standing is not Standing.REFUSED:
                # Unknown peers too: it may be a member whose admission we have not heard of
                # (two sides of a healed partition); if not, it is dropped after the grace.
                self.sync.request(peer)
            # A revoked member that dials us goes at a pass within REVOKED_GRACE: long
            # enough to tell it why if it tries to enroll again.

    async def _membership_events(self) -> None:
        async for event in self._events:
            self._log(event)
            member = event.member
            if isinstance(event, Revoked) and member.node_key != self.state.key:
                assert self._nursery is not None
                self._nursery.start_soon(
                    self._tell_and_disconnect, self.peer_id_of(member.node_key)
                )

    @staticmethod
    def _log(event: Event) -> None:
        member = event.member
        what = type(event).__name__.lower()  # admitted, updated, expired, revoked
        # A member's new endpoints or addresses are routine: at thousands of members
        # (1 % of them moving a minute) they would fill the log.
        level = logging.DEBUG if isinstance(event, Updated) else logging.INFO
        log.log(level, "member %s (%s) %s", member.name, member.node_id[:10], what)

    async def _tell_and_disconnect(self, peer: str) -> None:
        """Drop a member that was just excluded, after one short sync so it learns why."""
        if peer in self.host.connected_peers():
            with trio.move_on_after(EXCLUSION_NOTICE):
                await self.sync.sync_once(peer)
        self.policy.told(peer)
        await self.disconnect(peer, "revoked")
