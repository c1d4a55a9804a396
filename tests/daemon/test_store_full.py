"""A store that cannot be written (its disk full) holds back neither the daemon's acts nor
its forwards: a revocation gossiped meanwhile takes its peer out at once and is passed on,
one ERROR line says what is wrong, and what was not written is stored once the disk has room
(meshd.daemon.state, NodeState._commit; meshd.node.store.NetEffect)."""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing

from meshd.daemon.state import UNWRITTEN_RETRY
from meshd.errors import StoreError
from meshd.node.statedir import NodeDir, now
from meshd.node.store import Store
from meshd.records import record_id
from tests.daemon.fakes import certify, fake_now, peers, revoke, running, until


@dataclass
class Disk:
    """Whether the store's disk is full (its writes refused) at this moment."""

    full: bool = False


def _on(disk: Disk, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, the store's writes are refused while ``disk.full``, as SQLite refuses
    them on a full disk."""
    real = store.transaction

    @contextmanager
    def transaction() -> Iterator[Any]:
        with real() as db:
            if disk.full:  # what SQLite raises: the store's own transaction says it
                raise sqlite3.OperationalError("database or disk is full")
            yield db

    monkeypatch.setattr(store, "transaction", transaction)


def test_a_full_disk_holds_back_no_revocation_and_what_it_refused_is_stored_later(
    node: NodeDir, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = node.store
    disk = Disk()
    _on(disk, store, monkeypatch)
    clock = trio.testing.MockClock(autojump_threshold=math.inf)  # moved by hand alone

    def stored() -> set[bytes]:
        return {rid for rid, _ in store.rows()}

    async def main() -> None:
        async with (
            running(node, base) as (daemon, transport, backend),
            trio.open_nursery() as nursery,
        ):
            await nursery.start(daemon.state.disk.run)  # as meshd up runs it
            alice = certify(node, fake_now(base), "alice")
            assert transport.deliver(alice.cert.raw, "author", "neighbour")
            await until(lambda: alice.wg in peers(backend), "alice programmed")

            disk.full = True
            revocation = revoke(node, alice.key.public, fake_now(base))
            # Accepted (forwarded) and acted on at once, though not stored.
            assert transport.deliver(revocation.raw, "author", "neighbour")
            await trio.testing.wait_all_tasks_blocked()
            assert alice.wg not in peers(backend)
            assert record_id(revocation.raw) not in stored()
            carol = certify(node, fake_now(base), "carol")  # more comes: no failure
            assert transport.deliver(carol.cert.raw, "author", "neighbour")
            await trio.testing.wait_all_tasks_blocked()
            assert carol.wg in peers(backend)
            assert record_id(carol.cert.raw) not in stored()
            for _ in range(3):  # tried again, refused again: said once
                await _later(clock, UNWRITTEN_RETRY)
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1, [r.getMessage() for r in errors]
            assert "database or disk is full" in errors[0].getMessage()
            assert "kept in memory" in errors[0].getMessage()
            # What to do: the store's own hint (its file system looked at), not a guess.
            assert (
                errors[0]
                .getMessage()
                .endswith(
                    f"free space on the file system of {node.paths.root}; the store is not damaged"
                )
            )
            status = await daemon.control.dispatch("status", {})
            assert status["store_unwritten"] == 2  # the revocation, carol's certificate

            disk.full = False  # room again: written at the next try, with nothing asked
            await _later(clock, UNWRITTEN_RETRY + 1)
            wanted = {record_id(revocation.raw), record_id(carol.cert.raw)}
            await until(lambda: wanted <= stored(), "the kept rows stored")
            assert "the store is written again" in caplog.text
            assert alice.wg not in peers(backend)
            nursery.cancel_scope.cancel()

    base = now()
    caplog.set_level(logging.INFO, logger="meshd.daemon.state")
    trio.run(main, clock=clock)


def test_a_record_made_here_fails_loudly_while_the_store_cannot_be_written(
    node: NodeDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ours (a command's revocation, our announcement) is refused with the StoreError, so
    that whoever made it hears of it; it is still in force here, and stored later."""
    store = node.store
    disk = Disk(full=True)
    clock = trio.testing.MockClock(autojump_threshold=math.inf)
    base = now()

    async def main() -> None:
        async with (
            running(node, base) as (daemon, transport, backend),
            trio.open_nursery() as nursery,
        ):
            await nursery.start(daemon.state.disk.run)
            alice = certify(node, fake_now(base), "alice")
            assert transport.deliver(alice.cert.raw, "author", "neighbour")
            await until(lambda: alice.wg in peers(backend), "alice programmed")
            _on(disk, store, monkeypatch)
            revocation = revoke(node, alice.key.public, fake_now(base))
            with pytest.raises(StoreError, match="disk is full"):
                daemon.state.add_local(revocation)
            await trio.testing.wait_all_tasks_blocked()
            assert alice.wg not in peers(backend)
            disk.full = False
            await _later(clock, UNWRITTEN_RETRY + 1)
            rid = record_id(revocation.raw)
            await until(lambda: rid in {r for r, _ in store.rows()}, "the revocation stored")
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock)


async def _later(clock: trio.testing.MockClock, seconds: float) -> None:
    """``seconds`` of the fake clock pass at once, and what was due meanwhile runs."""
    clock.jump(seconds)
    await trio.testing.wait_all_tasks_blocked()
