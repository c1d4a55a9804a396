"""A programmed member's state is one object (its direct path and what the device showed
of it), and every path of the service shares one record of our side, set once a step."""

from __future__ import annotations

import ipaddress
from typing import Any

import trio
import trio.testing

from meshd.daemon.peer_paths import _Peer
from meshd.mesh.candidates import Candidate
from meshd.mesh.punch import DirectPath
from tests.daemon.test_punching_scale import service

LAN = Candidate("local", ipaddress.ip_address("192.168.1.7"), 51820)


def test_a_peer_is_its_own_path_without_a_dict() -> None:
    peer = _Peer(bytes(32), "b", (), [LAN], 0.0, rx_at=3.0)
    assert isinstance(peer, DirectPath)
    assert peer.path is peer
    assert not hasattr(peer, "__dict__")
    assert (peer.rx_at, peer.heard_at, peer.liveness, peer.action) == (3.0, 0.0, None, None)
    assert peer.update(0.0, None, None).endpoint == "192.168.1.7:51820"
    assert peer.action is not None
    assert peer.action.path == "trying"


def test_every_peer_shares_the_service_side_set_once_a_step() -> None:
    punching, _ = service(20)
    behind: Any = lambda now: True  # noqa: E731
    punching.endpoints.behind_nat = behind  # type: ignore[method-assign]

    async def run() -> None:
        await punching.step()

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    side = punching.peer_paths.side
    assert len(punching.peers) == 20
    assert all(p._side is side for p in punching.peers.values())
    assert side.behind_nat
    assert all(p.path.behind_nat for p in punching.peers.values())


def test_peers_share_one_not_yet() -> None:
    a = _Peer(bytes(32), "a", (), [LAN], 0.0)
    b = _Peer(bytes([1]) * 32, "b", (), [LAN], 0.0)
    assert a.requested_at == a.put_at == a.reported_at == float("-inf")
    assert a.requested_at is b.requested_at is b.put_at is b.reported_at
