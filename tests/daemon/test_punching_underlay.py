"""Our underlay changing under the punching service (a laptop joining another network): the
paths already made rank their candidates under the new one, as paths made then do, on a
fake clock over a fake device whose peers never answer."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import trio
import trio.testing

from meshd.mesh.desired import Underlay
from meshd.wg.model import DeviceState, PeerConfig, PeerStatus, UpdatePeer
from tests.daemon.punching_support import member, service_over, wg_key

# The member announces a reflexive address and its private one on its LAN.
ANNOUNCED = ("203.0.113.9:40000", "192.168.7.5:51820", "kinds=rl")
LAN = ipaddress.ip_network("192.168.7.0/24")


class Device:
    """Peers that never answer; what the service puts on them is kept."""

    def __init__(self) -> None:
        self.peers: dict[bytes, PeerConfig] = {}

    async def get(self) -> DeviceState:
        return DeviceState(peers=tuple(PeerStatus(c, None) for _, c in sorted(self.peers.items())))

    async def set(self, ops: Any) -> None:
        for op in ops:
            if isinstance(op, UpdatePeer):
                old = self.peers.get(op.public_key, PeerConfig(op.public_key, None, (), None))
                self.peers[op.public_key] = dataclasses.replace(
                    old, endpoint=op.endpoint or old.endpoint
                )
            else:
                self.peers.pop(op.public_key, None)


def test_a_path_made_before_we_joined_the_peers_lan_tries_its_lan_address_first() -> None:
    async def main() -> None:
        device = Device()
        peer_member = member(1)
        peer_member.announcement.endpoints = ANNOUNCED  # type: ignore[misc,union-attr]
        device.peers[wg_key(1)] = PeerConfig(wg_key(1), "203.0.113.9:40000", (), 25)
        punching = service_over(device, [peer_member])
        await punching.step()
        peer = punching.peers[peer_member.node_key]
        assert peer.candidates[0].endpoint == "203.0.113.9:40000"
        assert device.peers[wg_key(1)].endpoint == "203.0.113.9:40000"  # tried first
        await trio.sleep(1.0)
        punching.mesh.underlay = Underlay(frozenset({4}), (LAN,))  # we joined its LAN
        await punching.step()
        assert peer.candidates[0].endpoint == "192.168.7.5:51820"
        assert peer.acted == "trying"
        assert device.peers[wg_key(1)].endpoint == "192.168.7.5:51820"  # tried at once

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
