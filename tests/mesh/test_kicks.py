"""The operations that make WireGuard shake hands with a peer now."""

from __future__ import annotations

import ipaddress

from meshd.mesh.kicks import kick, recreate
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
