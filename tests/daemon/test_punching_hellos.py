"""Direct paths with and without Babel's Hellos on them (meshd/daemon/punching.py,
meshd/daemon/peer_paths.py): a peer whose Hellos flow keeps the silence rule; one without is
asked (re-created, so that WireGuard initiates) before it is declared lost; the set of
direct peers and its change callback."""

from __future__ import annotations

import dataclasses
import ipaddress
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from meshd.daemon.endpoints import Endpoints
from meshd.daemon.punching import Punching
from meshd.mesh.announced import encode_candidates
from meshd.mesh.candidates import Candidate
from meshd.mesh.liveness_probe import PROBE_BUDGET, Liveness
from meshd.trust.keys import WgKey
from meshd.wg.model import DeviceState, PeerConfig, PeerStatus, RemovePeer, UpdatePeer
from tests.daemon.punching_support import fake_mesh, who
from tests.mesh.support import member

PUBLIC = Candidate("configured", ipaddress.ip_address("198.51.100.1"), 51820)


class Device:
    """A WireGuard device: re-creating a peer clears its counters and its session."""

    def __init__(self, statuses: list[PeerStatus]) -> None:
        self.peers = {s.config.public_key: s for s in statuses}
        self.sets: list[list[Any]] = []

    async def get(self) -> DeviceState:
        return DeviceState(peers=tuple(sorted(self.peers.values(), key=lambda s: s.public_key)))

    async def set(self, ops: list[Any]) -> None:
        self.sets.append(ops)
        for op in ops:
            if isinstance(op, RemovePeer):
                del self.peers[op.public_key]
            elif isinstance(op, UpdatePeer) and not op.update_only:
                config = PeerConfig(
                    op.public_key, op.endpoint, op.allowed_ips, op.persistent_keepalive
                )
                self.peers[op.public_key] = PeerStatus(config)

    def show(self, key: bytes, **changes: Any) -> None:
        self.peers[key] = dataclasses.replace(self.peers[key], **changes)


def service(
    monkeypatch: pytest.MonkeyPatch, keepalive: int | None = 25
) -> tuple[Punching, Device, bytes, bytes, Any]:
    from meshd.daemon import punching as punching_module

    b = member("b", endpoints=encode_candidates([PUBLIC]))
    c = member("c", endpoints=encode_candidates([PUBLIC]))
    net = ipaddress.ip_network("fd00::b/128")
    device = Device(
        [
            PeerStatus(
                PeerConfig(m.wg_key, "198.51.100.1:51820", (net,), keepalive), 996.0, 100, 100
            )
            for m in (b, c)
        ]
    )
    mesh: Any = fake_mesh(device)
    state: Any = SimpleNamespace(feed=SimpleNamespace(current=SimpleNamespace(members=[b, c])))
    host: Any = SimpleNamespace(connected_peers=list)
    endpoints = Endpoints(overlay=None, listen_port=51820, configured=(), is_member=bool)
    punching = Punching(host, state, mesh, endpoints, SimpleNamespace(), 25, 4.0)  # type: ignore[arg-type]
    wall = [0.0]
    monkeypatch.setattr(punching_module, "time", SimpleNamespace(time=lambda: wall[0]))

    def step(now: float) -> None:
        wall[0] = 1000.0 + now
        clock = trio.testing.MockClock()
        clock.jump(now)
        trio.run(punching.step, clock=clock)

    return punching, device, bytes(b.wg_key), bytes(c.wg_key), step


def test_without_hellos_a_quiet_path_is_asked_before_it_is_lost_and_hellos_keep_the_old_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    punching, device, wg_b, wg_c, step = service(monkeypatch)
    punching.hellos = lambda key: key != wg_c  # Hellos flow to b, not to c
    changes: list[frozenset[WgKey]] = []
    punching.on_direct_change = lambda: changes.append(punching.direct_keys())
    step(0.0)  # both direct: handshakes 4 s ago
    assert punching.direct_keys() == {wg_b, wg_c}
    assert changes == [{wg_b, wg_c}]
    step(1.0)
    assert changes == [{wg_b, wg_c}]  # called only when the set changes
    # Nothing received from either for 20 s, handshakes 24 s old: b (Hellos) is lost at
    # once, c (keepalives only) is not.
    step(20.0)
    assert punching.direct_keys() == {wg_c}
    assert changes[-1] == {wg_c}
    paths = {p.wg_key: p.action.path for p in punching.peers.values() if p.action}
    assert paths == {wg_b: "trying", wg_c: "direct"}
    # c's peer sends our keepalives' worth, nothing received: quiet 35 s after the last
    # thing it heard (its watch began at the step after it went direct); asked once, by
    # re-creating the peer.
    device.show(wg_c, tx_bytes=196)
    step(35.0)
    assert device.sets == []
    step(36.0)
    (ops,) = [ops for ops in device.sets if any(o.public_key == wg_c for o in ops)]
    assert [type(o) for o in ops if o.public_key == wg_c] == [RemovePeer, UpdatePeer]
    assert device.peers[wg_c].rx_bytes == 0
    assert device.peers[wg_c].last_handshake is None
    step(37.0)
    assert punching.direct_keys() == {wg_c}  # waiting for the answer
    device.show(wg_c, last_handshake=1037.5, rx_bytes=92, tx_bytes=180)  # answered
    step(38.0)
    step(42.0)
    assert punching.direct_keys() == {wg_c}
    assert sum(1 for ops in device.sets for o in ops if isinstance(o, RemovePeer)) == 1


def test_an_unanswered_probe_declares_the_path_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    punching, device, wg_b, wg_c, step = service(monkeypatch)
    punching.hellos = lambda key: False
    changes: list[frozenset[WgKey]] = []
    punching.on_direct_change = lambda: changes.append(punching.direct_keys())
    step(0.0)
    step(1.0)  # the watch begins
    step(37.0)  # quiet: both asked
    removed = {o.public_key for ops in device.sets for o in ops if isinstance(o, RemovePeer)}
    assert removed == {wg_b, wg_c}
    step(38.0)
    assert punching.direct_keys() == {wg_b, wg_c}
    device.show(wg_b, last_handshake=1038.2, rx_bytes=92)  # b answers, c does not
    step(40.0)
    assert punching.direct_keys() == {wg_b}
    assert changes == [{wg_b, wg_c}, {wg_b}]
    paths = {p.wg_key: p.action.path for p in punching.peers.values() if p.action}
    assert paths == {wg_b: "direct", wg_c: "trying"}


def test_by_default_every_peer_keeps_the_silence_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    punching, _, _, _, step = service(monkeypatch)
    step(0.0)
    step(20.0)
    assert punching.direct_keys() == frozenset()
    assert all(p.liveness is None for p in punching.peers.values())


def test_without_keepalives_an_idle_path_stays_direct_and_only_traffic_is_judged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two public members keep no keepalive: nothing flows on an idle path, and WireGuard
    lets its session expire. It stays direct, unasked, past the handshake's staleness (195
    s); traffic that goes unanswered is asked about, and the path lost."""
    punching, device, wg_b, wg_c, step = service(monkeypatch, keepalive=None)
    punching.hellos = lambda key: False
    for t in range(0, 601, 5):
        step(float(t))
    assert punching.direct_keys() == {wg_b, wg_c}
    assert device.sets == []
    device.show(wg_c, tx_bytes=100 + 148 + 4 * 80)  # data, and WireGuard's initiation
    step(605.0)
    step(614.0)
    assert device.sets == []  # 10 s to answer data
    step(615.0)
    assert {o.public_key for ops in device.sets for o in ops} == {wg_c}
    ops = [o for ops in device.sets for o in ops if isinstance(o, UpdatePeer)]
    assert [o.persistent_keepalive for o in ops] == [25]  # turned on: it initiates at once
    step(617.0)
    assert punching.direct_keys() == {wg_b, wg_c}
    step(618.0)  # no answer in 3 s
    assert punching.direct_keys() == {wg_b}


def test_probes_of_one_step_are_bounded_quiet_longest_first() -> None:
    from meshd.daemon.peer_paths import PeerPaths
    from meshd.daemon.punch_peer import _Peer

    paths = PeerPaths(SimpleNamespace(), SimpleNamespace(), SimpleNamespace(), 15.0, 1.0)  # type: ignore[arg-type]
    stats = {}
    n = 3 * PROBE_BUDGET
    for i in range(n):
        key = i.to_bytes(2, "big") * 16
        peer = _Peer(who(key, f"m{i}"), [], 0.0)
        peer.liveness = Liveness(float(n - i), 0, 0, 25)  # the last ones quiet longest
        paths.due.append(peer)
        stats[key] = PeerStatus(PeerConfig(key, "198.51.100.1:51820", (), 25), 1.0)
    ops, asked = paths.probes(stats, 1000.0)
    assert len(asked) == PROBE_BUDGET
    removed = [o.public_key for o in ops if isinstance(o, RemovePeer)]
    assert removed == [i.to_bytes(2, "big") * 16 for i in range(n - 1, n - 1 - PROBE_BUDGET, -1)]
    assert all(live.probing for live in asked)
    assert paths.due == []  # the rest are due again at the next step (Liveness.judge)
