"""The handshake initiations WireGuard sends to peers that never answer, beside the punching
service (stub collaborators, a device in memory with wireguard-go's handshake timers, a fake
clock): two a round, on the service's schedule, not one every 5 s for as long as the path
stays on the relay."""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import trio
import trio.testing

from meshd.daemon.peer_paths import PeerPaths
from meshd.daemon.punching import CHUNK, Punching
from meshd.mesh.kicks import OPS_AT_ONCE, SESSION_LIFE, hush, recreate
from meshd.mesh.punch import ATTEMPT, RETRY_BASE
from meshd.wg.model import DeviceState, PeerConfig, PeerStatus, RemovePeer, UpdatePeer
from tests.daemon.punching_support import endpoint, member, service_over, wg_key

#: wireguard-go's REKEY_TIMEOUT and MaxTimerHandshakes (90 s / 5 s).
REKEY_TIMEOUT = 5.0
MAX_TIMER_HANDSHAKES = 18
TICK = 0.25


@dataclass
class Timers:
    """One peer of the device: its configuration and handshake timers."""

    config: PeerConfig
    attempts: int = 0
    retry_at: float | None = None
    last_sent: float = -math.inf
    keepalive_at: float | None = None
    handshake: float | None = None


@dataclass
class WireGuardGo:
    """A device whose peers never answer, with wireguard-go's rules (device/send.go,
    timers.go, uapi.go): a packet queued for a peer without a session (a persistent keepalive
    turned on, or due) sends an initiation unless one went out less than REKEY_TIMEOUT ago,
    and resets the count of retries; an initiation is retried every REKEY_TIMEOUT until
    MAX_TIMER_HANDSHAKES retries; a persistent keepalive is due its interval after the last
    packet sent; a removed peer has no timers left."""

    peers: dict[bytes, Timers] = field(default_factory=dict)
    sent: dict[bytes, list[float]] = field(default_factory=dict)

    async def get(self) -> DeviceState:
        return DeviceState(
            peers=tuple(PeerStatus(p.config, p.handshake) for _, p in sorted(self.peers.items()))
        )

    async def set(self, ops: Any) -> None:
        for op in ops:
            self.apply(op, trio.current_time())

    def apply(self, op: RemovePeer | UpdatePeer, now: float) -> None:
        key = op.public_key
        if isinstance(op, RemovePeer):
            self.peers.pop(key, None)
            return
        peer = self.peers.get(key)
        if peer is None:
            if op.update_only:
                return
            peer = self.peers[key] = Timers(PeerConfig(key, None, (), None))
        old = peer.config.persistent_keepalive or 0
        new = old if op.persistent_keepalive is None else op.persistent_keepalive
        peer.config = replace(
            peer.config,
            endpoint=op.endpoint or peer.config.endpoint,
            persistent_keepalive=new or None,
        )
        if not old and new:  # uapi.go: a keepalive turned on is sent at once
            self.queue(key, peer, now)

    def queue(self, key: bytes, peer: Timers, now: float) -> None:
        peer.attempts = 0
        self.initiate(key, peer, now)

    def initiate(self, key: bytes, peer: Timers, now: float) -> None:
        if now - peer.last_sent < REKEY_TIMEOUT:
            return
        peer.last_sent = now
        self.sent.setdefault(key, []).append(now)
        peer.retry_at = now + REKEY_TIMEOUT
        if peer.config.persistent_keepalive:
            peer.keepalive_at = now + peer.config.persistent_keepalive

    def tick(self, now: float) -> None:
        for key, peer in self.peers.items():
            if peer.retry_at is not None and now >= peer.retry_at:
                peer.retry_at = None
                if peer.attempts < MAX_TIMER_HANDSHAKES:
                    peer.attempts += 1
                    self.initiate(key, peer, now)
            if peer.keepalive_at is not None and now >= peer.keepalive_at:
                peer.keepalive_at = None
                if peer.config.persistent_keepalive:
                    self.queue(key, peer, now)

    def reconcile(self, paths: Any, now: float) -> None:
        """What the reconcile loop programs of the laid paths (their keepalives)."""
        for key, (_, keepalive, _) in dict(paths).items():
            self.apply(UpdatePeer(key, update_only=True, persistent_keepalive=keepalive or 0), now)


def service(n: int) -> tuple[Punching, WireGuardGo]:
    """The punching service over ``n`` members, each a peer programmed from the store (its
    announced endpoint, a keepalive of 25 s: its first initiation at once)."""
    device = WireGuardGo()
    for i in range(1, n + 1):
        up = UpdatePeer(wg_key(i), endpoint=endpoint(i), persistent_keepalive=25)
        device.apply(up, 0.0)
    punching = service_over(device, [member(i) for i in range(1, n + 1)])
    return punching, device


def run_for(punching: Punching, device: WireGuardGo, seconds: float) -> list[tuple[float, str]]:
    """Steps on their cadence and the device's timers every TICK for ``seconds`` of a fake
    clock, the reconcile loop programming each step's paths; when m1's path changed, and to
    what."""
    changes: list[tuple[float, str]] = []

    async def run() -> None:
        due = 0.0
        while (now := trio.current_time()) < seconds:
            device.tick(now)
            if now >= due:
                await punching.step()
                device.reconcile(punching.mesh.paths, now)
                due = now + punching._next_step
                acted = punching.peers[member(1).node_key].acted
                if acted is not None and (not changes or changes[-1][1] != acted):
                    changes.append((now, acted))
            await trio.sleep(TICK)

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    return changes


def test_a_peer_that_never_answers_is_sent_two_initiations_a_round_on_its_schedule() -> None:
    """Over 10 minutes, every path on the relay but for its rounds (30 s after the first,
    doubling): each round begins with an initiation, and sends two (at once and one retry);
    between rounds, none (before, one every 5 s throughout: each round's keepalive queued a
    packet that WireGuard retried for 90 s, and the next round came before they ended)."""
    punching, device = service(3)
    changes = run_for(punching, device, 600.0)
    rounds = [t for t, path in changes if path == "trying"]
    assert len(rounds) == 5, changes  # at 0, ~36, ~102, ~228, ~474 s
    assert rounds[1] - rounds[0] >= RETRY_BASE
    for i in (1, 2, 3):
        sent = device.sent[wg_key(i)]
        for start in rounds:
            first = [t for t in sent if start <= t < start + ATTEMPT]
            assert first, (start, sent)  # our retries on the punching service's schedule
        assert len(sent) <= 2 * len(rounds), sent
        between = [t for t in sent if not any(s <= t < s + 7.0 for s in rounds)]
        assert between == [], between
    assert {p.acted for p in punching.peers.values()} == {"relay"}


def test_a_peer_whose_session_ended_long_ago_is_hushed_too() -> None:
    """A member that was connected once and went away (a laptop shut): its session's keys
    died 180 s after its last handshake (WireGuard's RejectAfterTime), so a round's
    keepalive starts 90 s of initiations all the same. Its failed rounds hush it as one
    that never answered: two initiations a round, none between (before: one every 5 s,
    every round's keepalive starting 90 s of them). What ``meshd peers`` shows of its last
    handshake is the path's, which the re-created peer on the device no longer holds."""
    punching, device = service(3)
    long_ago = time.time() - 1000.0
    for i in (1, 2, 3):
        device.peers[wg_key(i)].handshake = long_ago
    changes = run_for(punching, device, 600.0)
    rounds = [t for t, path in changes if path == "trying"]
    assert len(rounds) >= 4, changes
    for i in (1, 2, 3):
        sent = device.sent[wg_key(i)]
        assert len(sent) <= 2 * len(rounds), sent
        between = [t for t in sent if not any(s <= t < s + 7.0 for s in rounds)]
        assert between == [], between
        assert device.peers[wg_key(i)].handshake is None  # re-created
    # What the snapshot shows (Unix time; the path keeps it on the fake clock, which ran
    # 600 s in a moment of the wall's: only whether there is one can be said here).
    peer = punching.peers[member(1).node_key]
    assert PeerPaths._wall_time(peer, 600.0, time.time()) is not None


def test_a_member_that_comes_up_later_reaches_us_and_its_path_goes_direct() -> None:
    """A peer on the relay with WireGuard's retries stopped: its own initiation (a member
    that came up) makes a session, and the next step takes the direct path."""
    punching, device = service(2)
    run_for(punching, device, 20.0)
    assert punching.peers[member(1).node_key].acted == "relay"
    assert device.peers[wg_key(1)].config.persistent_keepalive is None  # nothing retried
    device.peers[wg_key(1)].handshake = time.time()  # the peer reached us

    async def run() -> None:
        await punching.step()

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    assert punching.peers[member(1).node_key].acted == "direct"
    assert punching.peers[member(2).node_key].acted == "relay"


def status(handshake: float | None, at: str | None = "192.0.2.7:51820") -> PeerStatus:
    net = ipaddress.ip_network("fd00::7/128")
    return PeerStatus(PeerConfig(wg_key(7), at, (net,), 25), handshake)


def test_only_a_failed_round_of_a_peer_without_a_session_is_hushed() -> None:
    """The peer re-created as it was without a keepalive, when its path goes from trying to
    the relay and it has no session (it never completed a handshake, or its last is as old
    as a session lives); nothing otherwise (a live session to keep, no endpoint, or another
    change of path)."""
    wall = 10_000.0
    ended = wall - SESSION_LIFE
    assert hush("trying", "relay", status(None), wall) == recreate(
        status(None), "192.0.2.7:51820", 0
    )
    assert hush("trying", "relay", status(0.0), wall) == recreate(status(0.0), "192.0.2.7:51820", 0)
    assert hush("trying", "relay", status(ended), wall) == recreate(
        status(ended), "192.0.2.7:51820", 0
    )
    assert hush("trying", "relay", status(ended + 1.0), wall) == []  # a live session
    assert hush("trying", "relay", status(None, at=None), wall) == []
    assert hush("trying", "relay", None, wall) == []
    assert hush("relay", "relay", status(None), wall) == []
    assert hush("trying", "trying", status(None), wall) == []
    assert hush("trying", "direct", status(None), wall) == []
    assert hush(None, "relay", status(None), wall) == []


def test_a_step_that_hushes_every_peer_writes_its_operations_as_it_goes() -> None:
    """Every peer's first round fails at once (an isolated node at a start): the step's
    20,000 operations at 10,000 peers were held to the end of its pass (~1.4 MB), then
    written. They are written at its checkpoints, ``OPS_AT_ONCE`` or so at a time."""
    n = 5 * CHUNK
    punching, device = service(n)
    writes: list[tuple[int, int]] = []  # (operations, peers on the relay by then)
    set_ops = device.set

    async def counted(ops: Any) -> None:
        relayed = sum(1 for p in punching.peers.values() if p.acted == "relay")
        writes.append((len(ops), relayed))
        await set_ops(ops)

    device.set = counted  # type: ignore[method-assign]
    run_for(punching, device, ATTEMPT + 2.0)
    hushed = [w for w in writes if w[0] >= OPS_AT_ONCE]
    assert sum(ops for ops, _ in hushed) == 2 * n  # each peer removed and created again
    assert [relayed for _, relayed in hushed] == [CHUNK * (k + 1) for k in range(len(hushed))]
    assert all(device.peers[wg_key(i)].config.persistent_keepalive is None for i in (1, n))
