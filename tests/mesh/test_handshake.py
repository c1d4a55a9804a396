"""A new endpoint for a never-answered peer re-creates it (fresh handshake state)."""

from __future__ import annotations

import ipaddress

from meshd.mesh.handshake import recreate_unanswered
from meshd.wg.model import DeviceState, PeerConfig, PeerStatus, RemovePeer, UpdatePeer
from meshd.wg.reconcile import apply_operations, plan

A, B = b"\x0a" * 32, b"\x0b" * 32
NETS = (ipaddress.ip_network("fd00::a/128"),)


def test_only_never_answered_peers_with_a_new_endpoint_are_recreated() -> None:
    want = {
        A: PeerConfig(A, "192.0.2.1:1", NETS, 25),
        B: PeerConfig(B, "192.0.2.2:1", (ipaddress.ip_network("fd00::b/128"),), 25),
    }
    device = DeviceState(
        peers=(
            PeerStatus(PeerConfig(A, None, NETS, 25)),  # never answered
            PeerStatus(PeerConfig(B, None, want[B].allowed_ips, 25), last_handshake=1.0),
        )
    )
    ops = recreate_unanswered(plan(want, device), want, device)
    assert ops == [
        RemovePeer(A),
        UpdatePeer(A, endpoint="192.0.2.1:1", persistent_keepalive=25,
                   replace_allowed_ips=True, allowed_ips=NETS),
        UpdatePeer(B, update_only=True, endpoint="192.0.2.2:1"),
    ]  # fmt: skip
    after = apply_operations(device, ops)
    assert after.peer_configs() == want
    assert recreate_unanswered(plan(want, after, want), want, after) == []
