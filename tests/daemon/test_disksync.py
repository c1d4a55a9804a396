"""The store's fsync off the forwarding path (meshd/daemon/disksync.py).

With the disk-sync service running, the gossip validator commits a record and lets it be
forwarded at once, while the record's events (what WireGuard, Babel and the connections
service act on) wait until the write-ahead log is on disk. The fsync here is held back on
purpose, to see each step apart.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import trio

from meshd.daemon.state import NodeState
from meshd.membership import Admitted, Revoked
from meshd.node.statedir import NodeDir, now
from meshd.node.store import Store
from meshd.records import record_id
from tests.daemon.fakes import certify, revoke


def _rows(node: NodeDir) -> set[bytes]:
    """The record ids committed, read through a connection of its own."""
    with sqlite3.connect(node.paths.db) as db:
        return {bytes(rid) for (rid,) in db.execute("SELECT rid FROM records")}


def test_forwarded_once_committed_acted_on_once_on_disk(
    node: NodeDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = now()
    cert = certify(node, base).cert
    revocation = revoke(node, cert.subject, base + 1)
    state = NodeState(node, announce_ttl=600)
    release = threading.Event()
    syncing = threading.Event()
    real_sync = node.store.sync_to_disk

    def held_sync() -> None:
        syncing.set()
        assert release.wait(10)
        real_sync()

    monkeypatch.setattr(node.store, "sync_to_disk", held_sync)

    async def main() -> None:
        events = state.feed.events()
        async with trio.open_nursery() as nursery:
            await nursery.start(state.feed.run)
            await nursery.start(state.disk.run)
            for raw, kind in ((cert.raw, Admitted), (revocation.raw, Revoked)):
                release.clear()
                syncing.clear()
                assert state.validate(raw, "author", "neighbour")  # forwarded at once
                assert record_id(raw) in _rows(node)  # committed before that
                await trio.to_thread.run_sync(syncing.wait, 10)
                with pytest.raises(trio.WouldBlock):
                    events.receive_nowait()  # nothing acts on it before the fsync
                assert state.disk.syncs == (0 if kind is Admitted else 1)
                release.set()
                await state.disk.synced()
                assert isinstance(events.receive_nowait(), kind)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_without_the_service_the_commit_waits_for_the_disk_and_events_go_at_once(
    node: NodeDir,
) -> None:
    state = NodeState(node, announce_ttl=600)
    cert = certify(node, now()).cert

    async def main() -> None:
        events = state.feed.events()
        assert state.validate(cert.raw, "author", "neighbour")
        assert isinstance(events.receive_nowait(), Admitted)
        assert state.disk.syncs == 0

    trio.run(main)


def test_sync_to_disk_with_and_without_a_log(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        store.set_meta("k", b"v")
        assert (tmp_path / "s.db-wal").exists()
        store.sync_to_disk()
    finally:
        store.close()
    assert not (tmp_path / "s.db-wal").exists()  # checkpointed and removed on close
    Store.sync_to_disk(store)  # no log: nothing to sync, no error
