"""What the punching service keeps a member, at 1,000 members, traced: its peers (each its
direct path), their candidates and what a step lays over the desired peers."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import trio
import trio.testing

from meshd.wg.model import PeerConfig, PeerStatus
from tests.daemon.test_punching_scale import service

N = 1_000
#: The files of the service and of the paths it keeps (an allocation counts in the innermost
#: of meshd's frames that made it).
SERVICE = (
    "meshd/daemon/punching.py",
    "meshd/daemon/peer_paths.py",
    "meshd/daemon/laid_paths.py",
    "meshd/mesh/punch.py",
    "meshd/mesh/punch_parts.py",
    "meshd/mesh/candidates.py",
    "meshd/mesh/reach.py",
)


def kept_a_member(
    steps: int, state: str = "relay", programmed: bool = True, behind_nat: bool = False
) -> float:
    punching, backend = service(N)
    for member in punching.state.feed.current.members if behind_nat else ():
        # As members behind a NAT announce: the mapping others see, then their LAN address.
        n = int.from_bytes(member.wg_key[:4], "big")
        public, lan = (
            f"203.0.{n >> 8 & 255}.{n & 255}:40000",
            f"192.168.{n >> 8 & 255}.{n & 255}:51820",
        )
        announcement: Any = member.announcement  # the stand-in's, set here
        announcement.endpoints = (public, lan, "kinds=rl")
    for key in list(backend.peers) if programmed else ():  # where the members announce
        n = int.from_bytes(key[:4], "big")
        endpoint = f"198.18.{n >> 8 & 255}.{n & 255}:51820"
        backend.peers[key] = PeerStatus(PeerConfig(key, endpoint, (), None))

    async def run() -> None:
        for _ in range(steps):
            await punching.step()
            await trio.sleep(6.0)

    gc.collect()
    tracemalloc.start(16)
    try:
        trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    kept = 0
    for stat in snapshot.statistics("traceback"):
        ours = [f.filename for f in stat.traceback if "/meshd/" in f.filename]
        parsed = any(f.endswith("meshd/mesh/candidates.py") for f in ours)  # an address
        if ours and (ours[-1].endswith(SERVICE) or parsed):
            kept += stat.size
    assert len(punching.peers) == N
    assert {p.acted for p in punching.peers.values()} == {state}
    return kept / N


def test_a_member_costs_the_punching_service_under_330_bytes() -> None:
    # 689 bytes a member at 1649f91: each peer 36 slots (320 bytes), the table a step laid
    # (~135), each candidate and its parsed address (~150); of what is left, ~45 are the
    # addresses ipaddress keeps in its cache of is_global (128 of them, whatever the size)
    assert kept_a_member(steps=3) < 330


def test_a_member_whose_path_is_trying_costs_under_300_bytes() -> None:
    # 366 at 9cc260b: a round an object a path (64), the peer's key, name, announced
    # endpoints and last handshake fields of its own (22 slots)
    assert kept_a_member(steps=1, state="trying") < 300


def test_a_member_whose_endpoint_was_put_on_the_device_costs_under_260_bytes() -> None:
    # 478 at 9cc260b: the endpoint put on the device (every peer's at a start, where the
    # device holds none yet) in an object of its own a peer (96), besides the above
    assert kept_a_member(steps=1, state="trying", programmed=False) < 260


def test_a_member_that_announces_several_candidates_costs_no_more() -> None:
    # 438 bytes a member at abf6d2c: its candidates parsed and kept (two of 56 bytes each)
    # in a tuple of the peer's own (56), besides the above; now the announcement's own
    # tuple, each candidate made from its text when asked for
    assert kept_a_member(steps=1, state="trying", programmed=False, behind_nat=True) < 260
