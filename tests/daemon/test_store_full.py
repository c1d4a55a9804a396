"""A store that cannot be written (its disk full) holds back neither the daemon's acts nor
its forwards: a revocation gossiped meanwhile takes its peer out at once and is passed on,
one ERROR line says what is wrong, and what was not written is stored once the disk has room
(meshd.daemon.state, NodeState._commit; meshd.node.store.NetEffect)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
import trio.testing

from meshd.daemon.state import UNWRITTEN_RETRY
from meshd.errors import StoreError
from meshd.node.statedir import NodeDir, now
from meshd.records import record_id
from tests.daemon.fakes import certify, fake_now, peers, revoke, run_on_fake_clock, running


def test_a_full_disk_holds_back_no_revocation_and_what_it_refused_is_stored_later(
    node: NodeDir, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = node.store
    real = store.transaction
    full = False

    @contextmanager
    def transaction() -> Iterator[Any]:
        if full:
            raise StoreError(f"cannot write the store {store.path}: database or disk is full")
        with real() as db:
            yield db

    monkeypatch.setattr(store, "transaction", transaction)

    def stored() -> set[bytes]:
        return {rid for rid, _ in store.rows()}

    async def main() -> None:
        nonlocal full
        async with running(node, base) as (daemon, transport, backend):
            await trio.testing.wait_all_tasks_blocked()
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.state.disk.run)  # as meshd up runs it
                alice = certify(node, fake_now(base), "alice")
                assert transport.deliver(alice.cert.raw, "author", "neighbour")
                await daemon.state.disk.synced()
                await trio.testing.wait_all_tasks_blocked()
                assert alice.wg in peers(backend)

                full = True
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
                await trio.sleep(3 * UNWRITTEN_RETRY)  # tried again, refused again: said once
                errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
                assert len(errors) == 1, [r.getMessage() for r in errors]
                assert "database or disk is full" in errors[0].getMessage()
                assert "kept in memory" in errors[0].getMessage()
                status = await daemon.control.dispatch("status", {})
                assert status["store_unwritten"] == 2  # the revocation, carol's certificate

                full = False  # room again: written at the next try, with nothing asked
                await trio.sleep(UNWRITTEN_RETRY + 1)
                assert {record_id(revocation.raw), record_id(carol.cert.raw)} <= stored()
                assert "the store is written again" in caplog.text
                assert alice.wg not in peers(backend)
                nursery.cancel_scope.cancel()

    base = now()
    caplog.set_level(logging.INFO, logger="meshd.daemon.state")
    run_on_fake_clock(main)


def test_a_record_made_here_fails_loudly_while_the_store_cannot_be_written(
    node: NodeDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ours (a command's revocation, our announcement) is refused with the StoreError, so
    that whoever made it hears of it; it is still in force here, and stored later."""
    store = node.store
    real = store.transaction
    full = True

    @contextmanager
    def transaction() -> Iterator[Any]:
        if full:
            raise StoreError(f"cannot write the store {store.path}: database or disk is full")
        with real() as db:
            yield db

    base = now()

    async def main() -> None:
        nonlocal full
        async with running(node, base) as (daemon, transport, backend):
            await trio.testing.wait_all_tasks_blocked()
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.state.disk.run)
                alice = certify(node, fake_now(base), "alice")
                assert transport.deliver(alice.cert.raw, "author", "neighbour")
                await daemon.state.disk.synced()
                await trio.testing.wait_all_tasks_blocked()
                assert alice.wg in peers(backend)
                monkeypatch.setattr(store, "transaction", transaction)
                revocation = revoke(node, alice.key.public, fake_now(base))
                with pytest.raises(StoreError, match="disk is full"):
                    daemon.state.add_local(revocation)
                await trio.testing.wait_all_tasks_blocked()
                assert alice.wg not in peers(backend)
                full = False
                await trio.sleep(UNWRITTEN_RETRY + 1)
                assert record_id(revocation.raw) in {rid for rid, _ in store.rows()}
                nursery.cancel_scope.cancel()

    run_on_fake_clock(main)
