"""The round that gives 2,000 peers of a real wireguard-go device their keepalives completes
(root).

The first round creates the peers without their persistent keepalive; the next sets them,
and wireguard-go sends each keepalive inside the ``set``, making a handshake initiation for
a peer without a session first. Those sets must each be answered within the UAPI deadline,
so the round completes without an error. The device runs in a namespace made here with
only ``lo``: the peers' endpoints (198.18.0.0/15) have no route, nothing leaves it, and the
namespace and the process are removed even on failure.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Sequence

import pytest
import trio

from meshd.daemon.wireguard import WireGuardMesh
from meshd.daemon.wireguard_sets import KEEPALIVE_CHUNK
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.backend import InterfaceConfig
from meshd.wg.backend_userspace import UserspaceBackend
from meshd.wg.model import Operation, UpdatePeer, clamp_private_key
from tests.mesh.support import OVERLAY, key, member

pytestmark = pytest.mark.root

PEERS = 2000
BOUND = 90.0  # seconds for both rounds; they took ~3 s on a loaded 2-core machine


class CountingBackend(UserspaceBackend):
    """Remembers the keepalives every ``set`` gives."""

    sets: list[int]

    async def set(self, operations: Sequence[Operation]) -> None:
        keepalives = sum(
            isinstance(op, UpdatePeer) and bool(op.persistent_keepalive) for op in operations
        )
        self.__dict__.setdefault("sets", []).append(keepalives)
        await super().set(operations)


async def scenario(netns: str) -> None:
    config = InterfaceConfig(
        f"mk{os.getpid() % 0x10000:x}{secrets.token_hex(2)}",
        clamp_private_key(secrets.token_bytes(32)),
        netns=netns,
    )
    members = [
        member(i, endpoints=(f"198.18.{i >> 8 & 255}.{i & 255}:51820",)) for i in range(PEERS)
    ]
    backend = await CountingBackend.start(config)
    assert isinstance(backend, CountingBackend)
    try:
        mesh = WireGuardMesh(
            backend,
            kind="userspace",
            own_node_key=NodeKey(key("me")),
            own_wg_key=WgKey(config.public_key),
            overlay=OVERLAY.network_address + 1,
            overlay_prefix=OVERLAY,
            listen_port=0,
            interval=3600.0,
            keepalive=25,
            poke=False,
        )
        mesh.set_members(members)
        with trio.fail_after(BOUND):
            assert await mesh.reconcile()  # every peer, without its keepalive
            assert await mesh.reconcile()  # the keepalives
        assert mesh.errors == 0, mesh.last_error
        assert mesh.rounds == 2
        state = await backend.get()
        assert len(state.peers) == PEERS
        assert {p.config.persistent_keepalive for p in state.peers} == {25}
        # The first round without keepalives, then the keepalives KEEPALIVE_CHUNK a set.
        assert backend.sets == [0, 0] + [KEEPALIVE_CHUNK] * (PEERS // KEEPALIVE_CHUNK)
    finally:
        await backend.aclose()


def test_keepalives_for_2000_peers_are_set_within_the_uapi_deadline() -> None:
    netns = f"meshd-ka-{os.getpid() % 0x10000:x}{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        trio.run(scenario, netns)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
