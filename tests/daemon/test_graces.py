"""A fresh key past its source's share of graces is refused once, and counted once: in
``status`` → ``shed`` → ``graces_refused`` and in ``meshd_shed_total{what="graces_refused"}``
(the fake daemon of tests/daemon/fakes.py; every fake peer connects from 127.0.0.1)."""

from __future__ import annotations

import re

import trio
import trio.testing

from meshd.daemon.metrics import gather, render
from meshd.daemon.service import GRACES_PER_SOURCE, Daemon
from meshd.gossip.peers import peer_id_of
from meshd.node.statedir import NodeDir, now
from meshd.trust.keys import SigningKey
from tests.daemon.fake_transport import FakeTransport
from tests.daemon.fakes import run_on_fake_clock, running


async def _shed_in_metrics(daemon: Daemon) -> dict[str, float]:
    """``meshd_shed_total`` by ``what``, as the metrics endpoint renders it."""
    text = render(await gather(daemon, daemon.state.traffic)).decode()
    found = re.findall(r'^meshd_shed_total\{what="([^"]+)"\} (\S+)$', text, re.M)
    assert found, text
    return {what: float(n) for what, n in found}


async def _strangers(transport: FakeTransport, count: int) -> list[str]:
    peers = [peer_id_of(SigningKey.generate().public) for _ in range(count)]
    for peer in peers:
        transport.connect(peer)
    await trio.testing.wait_all_tasks_blocked()
    return peers


def test_one_refused_grace_counts_once(node: NodeDir) -> None:
    async def main() -> None:
        async with running(node, now()) as (daemon, transport, _):
            given = await _strangers(transport, GRACES_PER_SOURCE)
            assert not set(given) & set(transport.disconnects)
            assert daemon.shed_view()["graces_refused"] == 0
            before = await _shed_in_metrics(daemon)
            assert before["graces_refused"] == 0
            (refused,) = await _strangers(transport, 1)
            assert transport.disconnects == [refused]  # at once, not after a grace
            assert daemon.shed_view()["graces_refused"] == 1
            after = await _shed_in_metrics(daemon)
            assert after["graces_refused"] == 1
            assert sum(after.values()) - sum(before.values()) == 1  # under no other name

    run_on_fake_clock(main)
