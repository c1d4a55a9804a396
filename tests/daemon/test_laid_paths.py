"""What a step lays over the desired peers is read from its peers, not a table made at each
step: the same paths and relays as the table had, a round asked for only when they change,
and what a step is in the middle of not seen before it ends."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import trio
import trio.testing

from meshd.daemon.laid_paths import LaidPaths, LaidRelays
from meshd.trust.keys import WgKey
from meshd.wg.model import PeerConfig, PeerStatus
from tests.daemon.punching_support import wg_key
from tests.daemon.test_punching_scale import service


def expected(punching: Any) -> tuple[dict[bytes, Any], set[bytes]]:
    """The table and set a step used to make, from each peer's last action."""
    paths: dict[bytes, Any] = {}
    relays: set[bytes] = set()
    for peer in punching.peers.values():
        action = peer.action
        since = peer.trying_since if action.path == "trying" else None
        paths[peer.wg_key] = (action.endpoint, action.keepalive or None, since)
        if action.relay and action.path != "direct":
            relays.add(peer.wg_key)
    return paths, relays


def test_the_paths_are_read_from_the_peers_as_the_table_had_them() -> None:
    punching, backend = service(50)
    kicks: list[None] = []
    punching.mesh.kick = lambda: kicks.append(None)  # type: ignore[method-assign]

    def laid_kicks() -> int:  # a step that sets endpoints on the device asks for one too
        return len(kicks) - len(backend.sets)

    first = {wg_key(3): ("192.0.2.3:51820", 25, None)}  # kept from the last start
    punching.mesh.paths = first

    async def run() -> None:
        await punching.step()
        mesh = punching.mesh
        assert isinstance(mesh.paths, LaidPaths)  # no table of its own a step
        assert isinstance(mesh.relay_now, LaidRelays)
        assert (dict(mesh.paths), set(mesh.relay_now)) == expected(punching)
        assert len(mesh.paths) == 50
        assert mesh.paths
        assert mesh.paths.get(bytes(32)) is None
        assert laid_kicks() == 1
        await trio.sleep(1.0)
        await punching.step()  # every path still tries its one candidate: nothing new
        assert laid_kicks() == 1
        await trio.sleep(6.0)
        backend.peers[wg_key(7)] = PeerStatus(
            PeerConfig(wg_key(7), "203.0.113.7:51820", (), 25), time.time(), 148, 92
        )
        await punching.step()  # every other path failed its round: relayed now
        assert laid_kicks() == 2
        paths, relays = expected(punching)
        assert (dict(mesh.paths), set(mesh.relay_now)) == (paths, relays)
        assert paths[wg_key(7)] == ("203.0.113.7:51820", 25, None)
        assert wg_key(7) not in mesh.relay_now
        assert wg_key(8) in mesh.relay_now
        assert len(relays) == 49

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_step_under_way_is_not_seen_before_it_ends() -> None:
    """The peers' paths change during a step (it yields between chunks of peers); the
    reconcile loop reads what the last step laid until the next one lays its own."""
    punching, _ = service(20)

    async def run() -> None:
        await punching.step()
        before = dict(punching.mesh.paths)
        for peer in punching.peers.values():  # updated, not laid yet
            peer.update(1_000.0, None, None)
        assert dict(punching.mesh.paths) == before
        assert punching.peer_paths.laid.lay(punching.peer_paths.members(()))  # gone: changed
        assert dict(punching.mesh.paths) == {}
        assert not punching.mesh.paths
        assert not punching.mesh.relay_now

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_member_gone_is_forgotten_and_one_with_a_new_key_is_laid_under_it() -> None:
    punching, _ = service(5)
    feed: Any = punching.state.feed
    members = feed.current.members
    forgotten: list[bytes] = []
    punching.restarts.forget = forgotten.append  # type: ignore[method-assign,assignment]
    new_key = WgKey(bytes([9]) * 32)

    async def run() -> None:
        await punching.step()
        gone, moved = members[0], members[1]
        feed.current.members = (replace(moved, wg_key=new_key), *members[2:])
        await punching.step()
        assert forgotten == [gone.node_key]
        assert set(punching.peers) == {m.node_key for m in members[1:]}
        assert punching.peers[moved.node_key].wg_key == new_key
        assert set(punching.mesh.paths) == {new_key, *(m.wg_key for m in members[2:])}

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
