"""A scrape reads its own figures of the daemon (meshd.daemon.metrics_views), not the control
socket's whole views: the same samples as from ``status``, ``peers`` and ``routes`` as they go on
the wire, for a fraction of the work."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import trio
import trio.testing

from benchmarks.synthetic_store import build_store
from meshd.control.commands import (
    PeersAnswer,
    PeersRequest,
    StatusAnswer,
    StatusRequest,
)
from meshd.control.typed_json import to_json
from meshd.daemon.metrics import gather
from meshd.metrics.collector import SnapshotCollector
from meshd.metrics.snapshot import Snapshot
from meshd.node.statedir import NodeDir, now
from tests.daemon.fakes import first_announced, running

MEMBERS = 60
CHANGING = ("meshd_uptime_seconds", "meshd_tasks")  # move between two reads


def _samples(snapshot: Snapshot) -> Iterator[tuple[str, tuple[tuple[str, str], ...], float]]:
    for family in SnapshotCollector(snapshot).collect():
        if family.name.startswith(CHANGING):
            continue
        for s in family.samples:
            yield s.name, tuple(sorted(s.labels.items())), s.value


def test_a_scrape_reads_the_same_figures_as_the_views_show(tmp_path: Path) -> None:
    build_store(tmp_path / "n", MEMBERS)
    node = NodeDir.open(tmp_path / "n")
    base = now()

    async def main() -> None:
        async with running(node, base) as (daemon, _transport, backend):
            await first_announced(daemon)
            # The device's peers with handshakes and counters, some never heard from.
            state = backend.state
            assert len(state.peers) == MEMBERS - 1
            peers = tuple(
                dataclasses.replace(
                    p,
                    last_handshake=None if n % 3 == 0 else base - n,
                    rx_bytes=100 * n,
                    tx_bytes=7 * n,
                )
                for n, p in enumerate(state.peers)
            )
            backend.state = dataclasses.replace(state, peers=peers)
            ours = await gather(daemon, daemon.state.traffic)
            status = await daemon.control.ask(StatusRequest(), StatusAnswer)
            rows = await daemon.control.ask(PeersRequest(), PeersAnswer)
            theirs: Snapshot = dataclasses.replace(
                ours, status=to_json(status), peers=to_json(rows)
            )
            expected = sorted(_samples(theirs))
            got = sorted(_samples(ours))
            assert got == expected
            per_peer = [s for s in got if s[0] == "meshd_wireguard_peer_handshake_age_seconds"]
            assert len(per_peer) == MEMBERS - 1 - len(range(0, MEMBERS - 1, 3))
            assert ("meshd_members", (("state", "admitted"),), float(MEMBERS)) in got
            # Only what the catalogue reads: no member's keys nor addresses.
            row = ours.peers[1]
            assert "node_key" not in row
            assert "overlay_ip" not in row

    try:
        # The clock never jumps: the two reads compared are of one instant (handshake ages
        # and the like are read from it), and a jump from deadline to deadline while a thread
        # worked (the host's addresses, a store sync) could take it past the members'
        # announcements' TTL. The test needs no jump at all.
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=math.inf))
    finally:
        node.close()
