"""The disk-sync service: the store's fsync off the event loop and off the forwarding path.

A record that changes the record set is committed by the owner (:mod:`meshd.daemon.state`)
at once, in the validator, before gossipsub forwards it: the commit is atomic and survives
the daemon being killed. What it no longer waits for there is the fsync that makes it survive
the machine losing power (``synchronous=FULL``), which on a busy disk took from 15 to 250 ms
in the revocation benchmark, with the event loop blocked and the forward held back at every
hop. This service syncs the store's write-ahead log in a worker thread, everything committed
since the last sync at once, and only then hands the changes' events to the feed: WireGuard,
Babel and the connections service act on a revocation once it is on disk, as before.

A revocation forwarded before its fsync and lost to a power cut here is still held by every
neighbour it went to; anti-entropy hands it back when this node returns. Commands that report
"stored" to a user (``meshd revoke``, ``publish``) wait for :meth:`DiskSync.synced` before
answering. Until :meth:`run` starts (tests of the owner alone, the offline commands) the owner
commits with a synchronous fsync and delivers events at once, as it always did.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio

from meshd.errors import StoreError
from meshd.membership import Event
from meshd.node.store import Store

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)


class DiskSync:
    """Events wait here for the fsync of the commits that caused them."""

    def __init__(self, store: Store, deliver: Callable[[Sequence[Event]], None]) -> None:
        self.store = store
        self.deliver = deliver
        self.running = False
        self.syncs = 0
        """fsyncs done (each covers every commit since the previous one)."""
        self._events: list[Event] = []
        self._written = 0  # commits handed in
        self._synced = 0  # commits on disk
        self._progress = trio.Event()
        self._wake_send, self._wake_receive = trio.open_memory_channel[None](1)
        self._failed = ""  # the last failure to sync, said once

    @property
    def idle(self) -> bool:
        """Nothing waits for a sync: events may go to the feed at once."""
        return self._synced == self._written and not self._events

    def after_sync(self, events: Sequence[Event]) -> None:
        """Deliver ``events`` once what was committed so far is on disk (never blocks)."""
        self._events.extend(events)
        self._written += 1
        with contextlib.suppress(trio.WouldBlock):  # a wake-up is pending: it covers this too
            self._wake_send.send_nowait(None)

    async def synced(self) -> None:
        """Return once every commit handed in so far is on disk."""
        target = self._written
        while self._synced < target:
            await self._progress.wait()

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.running = True
        task_status.started()
        try:
            async for _ in self._wake_receive:
                await self._sync_once()
        finally:
            self.running = False
            if not self.idle:  # on the way out (cancelled): nothing committed stays unsynced
                with contextlib.suppress(StoreError):  # said already, if it fails
                    self.store.sync_to_disk()
                self._mark(self._written, [])

    async def _sync_once(self) -> None:
        target = self._written
        events, self._events = self._events, []
        try:
            await trio.to_thread.run_sync(self.store.sync_to_disk)
        except StoreError as exc:
            # Committed, not known to be on disk (fsync failed: a full or failing disk). The
            # daemon acts on what it holds all the same, and tries again at the next commit.
            if str(exc) != self._failed:
                log.error("%s; what was committed since is acted on, and synced later", exc)
                self._failed = str(exc)
        else:
            if self._failed:
                log.info("the store is synced to disk again")
                self._failed = ""
            self.syncs += 1
        self._mark(target, events)

    def _mark(self, target: int, events: list[Event]) -> None:
        self._synced = target
        progress, self._progress = self._progress, trio.Event()
        progress.set()
        if events:
            self.deliver(events)
