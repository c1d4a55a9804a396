"""The store's fsync off the forwarding path (meshd/daemon/disksync.py).

With the disk-sync service running, the gossip validator commits a record and lets it be
forwarded at once, while the record's events (what WireGuard, Babel and the connections
service act on) wait until the write-ahead log is on disk. The fsync here is held back on
purpose, to see each step apart.
"""

from __future__ import annotations

import logging
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


def test_a_failed_fsync_holds_back_no_revocation_and_is_said_once(
    node: NodeDir, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """fsync failing (a full or failing disk): the events go to those who act on them all
    the same, the service runs on, one ERROR line for as long as it fails, and a later sync
    that works is said once."""
    from meshd.errors import StoreError

    base = now()
    certs = [certify(node, base, f"m{i}").cert for i in range(3)]
    revocation = revoke(node, certs[0].subject, base + 1)
    state = NodeState(node, announce_ttl=600)
    failing = True
    real_sync = node.store.sync_to_disk

    def sync() -> None:
        if failing:
            raise StoreError(f"cannot sync the store {node.paths.db}: No space left on device")
        real_sync()

    monkeypatch.setattr(node.store, "sync_to_disk", sync)

    async def main() -> None:
        nonlocal failing
        events = state.feed.events()
        async with trio.open_nursery() as nursery:
            await nursery.start(state.feed.run)
            await nursery.start(state.disk.run)
            for raw in (*(c.raw for c in certs[:2]), revocation.raw):
                assert state.validate(raw, "author", "neighbour")
                await state.disk.synced()
            got = [events.receive_nowait() for _ in range(3)]
            assert [type(e) for e in got] == [Admitted, Admitted, Revoked]
            assert state.disk.syncs == 0
            failing = False
            assert state.validate(certs[2].raw, "author", "neighbour")
            await state.disk.synced()
            assert isinstance(events.receive_nowait(), Admitted)
            assert state.disk.syncs == 1
            nursery.cancel_scope.cancel()

    caplog.set_level(logging.INFO, logger="meshd.daemon.disksync")
    trio.run(main)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "No space left on device" in errors[0]
    assert "synced to disk again" in caplog.text
