"""What a sync brings: announcement signatures checked in a worker thread, off the loop."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
import trio

from meshd.daemon import ingest
from meshd.daemon.ingest import THREAD_MIN, check_sync_records
from meshd.records import Record
from meshd.trust import announced as trust
from tests.factory import T0, Net, Node

NOW = T0 + 100


def flip_signature(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])


def members(net: Net, count: int) -> list[Node]:
    founder = net.founder()
    return [founder] + [net.founder(f"m{i}") for i in range(count - 1)]


def test_bad_signatures_are_refused_in_the_worker_and_the_rest_merge() -> None:
    net = Net()
    nodes = members(net, THREAD_MIN + 4)
    state = net.state()
    for node in nodes:
        state.ingest(node.credential, NOW)
    raws = [node.announce(net, NOW).raw for node in nodes]
    raws[3] = flip_signature(raws[3])
    raws.append(b"\x92junk")
    threads: list[str] = []
    check = trust.drop_bad_announcement_signatures

    def spy(records: Sequence[Record]) -> tuple[list[Record], list[str]]:
        threads.append(threading.current_thread().name)
        return check(records)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ingest, "drop_bad_announcement_signatures", spy)
        checked = trio.run(check_sync_records, raws)
    assert threads
    assert threads[0] != threading.main_thread().name
    assert checked.announcements_checked
    assert sorted(checked.rejected) == ["bad-signature", "decode"]
    assert len(checked.records) == len(nodes) - 1
    batch = state.merge_batch(
        checked.records, NOW, announcements_checked=True, rejected=checked.rejected
    )
    assert batch.new == len(nodes) - 1
    assert state.member(nodes[3].key.public, NOW).announcement is None  # type: ignore[union-attr]


def test_a_few_announcements_are_left_to_the_core() -> None:
    net = Net()
    nodes = members(net, 3)
    state = net.state()
    for node in nodes:
        state.ingest(node.credential, NOW)
    raws = [node.announce(net, NOW).raw for node in nodes]
    raws[0] = flip_signature(raws[0])
    checked = trio.run(check_sync_records, raws)
    assert not checked.announcements_checked
    assert checked.rejected == []
    batch = state.merge_batch(checked.records, NOW)
    assert batch.rejected == ("bad-signature",)
    assert batch.new == 2
