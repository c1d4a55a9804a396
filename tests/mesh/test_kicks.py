"""The operations that make WireGuard shake hands with a peer now."""

from __future__ import annotations

import ipaddress
import itertools

from meshd.mesh.kicks import in_batches, kick, recreate
from meshd.wg.model import PeerConfig, PeerStatus, RemovePeer, UpdatePeer

KEY = bytes([7]) * 32
NET = ipaddress.ip_network("fd00::7/128")


def status(handshake: float) -> PeerStatus:
    return PeerStatus(PeerConfig(KEY, "192.168.1.7:51820", (NET,), 25), handshake, 0, 0)


def test_a_peer_with_a_session_gets_its_keepalive_turned_off_and_on_with_the_endpoint() -> None:
    ops = kick(status(1000.0), "198.51.100.5:51820", 25)
    assert ops == [
        UpdatePeer(KEY, update_only=True, persistent_keepalive=0),
        UpdatePeer(KEY, update_only=True, endpoint="198.51.100.5:51820", persistent_keepalive=25),
    ]


def test_a_never_answered_peer_is_created_anew_as_it_was() -> None:
    ops = kick(status(0.0), "198.51.100.5:51820", 25)
    assert ops == recreate(status(0.0), "198.51.100.5:51820", 25)
    assert ops[0] == RemovePeer(KEY)
    assert isinstance(ops[1], UpdatePeer)
    assert (ops[1].endpoint, ops[1].persistent_keepalive, ops[1].allowed_ips) == (
        "198.51.100.5:51820",
        25,
        (NET,),
    )
    assert ops[1].replace_allowed_ips


def test_a_steps_operations_are_written_in_bounded_batches_never_splitting_a_peer() -> None:
    """10,000 peers re-created (two operations each) and kicked (two each): batches of about
    the size asked, every operation once and in order, a peer's pair always in one."""
    ops: list[RemovePeer | UpdatePeer] = []
    for i in range(10_000):
        key = i.to_bytes(4, "big") * 8
        config = PeerConfig(key, "192.168.1.7:51820", (NET,), 25)
        handshake = 1000.0 if i % 3 else 0.0
        ops += kick(PeerStatus(config, handshake, 0, 0), "198.51.100.5:51820", 25)
    batches = list(in_batches(ops, 999))  # odd: a cut would fall inside a pair
    assert [op for batch in batches for op in batch] == ops
    assert all(len(batch) <= 1000 for batch in batches)
    assert len(batches) == 20
    for before, after in itertools.pairwise(batches):
        assert before[-1].public_key != after[0].public_key
    assert list(in_batches([], 10)) == []
    lone = [RemovePeer(KEY), RemovePeer(bytes(32))]
    assert list(in_batches(lone, 1)) == [lone[:1], lone[1:]]
