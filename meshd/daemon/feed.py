"""What the membership owner hands the other services: frozen, versioned snapshots.

:class:`~meshd.daemon.state.NodeState` owns the membership. Whenever a merge, an expiry or a
revocation changes it, the owner puts the events on a bounded channel
(:meth:`MembershipFeed.changed`, which never blocks, so the gossip validator stays short);
:meth:`MembershipFeed.run` turns what piled up into one :class:`Snapshot` and hands it to every
:class:`Subscription`. A subscriber that falls behind sees only the newest snapshot (each
subscription holds one, and a size-one channel says a newer one is there), so no subscriber
can make the owner wait or grow a queue. Events themselves (for the log and for dropping a
revoked member's connection) go on their own bounded channels (:meth:`MembershipFeed.events`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from meshd.addressing import Prefix
from meshd.membership import Event, Member, MemberState, Revoked
from meshd.trust.keys import NodeKey

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

EVENT_QUEUE = 4096  # membership events a subscriber of events may have waiting


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The membership at one version: every member as of ``at``, and what each admitted
    member may route (its own /128 and its credential's prefixes)."""

    version: int
    at: int
    members: tuple[Member, ...] = ()
    grants: Mapping[NodeKey, tuple[Prefix, ...]] = field(default_factory=dict)
    revocations: int = 0
    """Revocations applied since the start: a subscriber that sees it grow revalidates."""

    def admitted(self) -> list[Member]:
        return [m for m in self.members if m.state is MemberState.ADMITTED]


class Subscription:
    """One service's view of the feed: the newest snapshot, and a wake-up when it changes."""

    def __init__(self, first: Snapshot) -> None:
        self.latest = first
        self._send, self._receive = trio.open_memory_channel[None](1)

    def _offer(self, snapshot: Snapshot) -> None:
        self.latest = snapshot
        with contextlib.suppress(trio.WouldBlock):
            self._send.send_nowait(None)

    async def __aiter__(self) -> AsyncIterator[Snapshot]:
        while True:
            await self._receive.receive()
            yield self.latest


Build = Callable[[int, int], Snapshot]
"""``build(version, revocations)``: a snapshot of the membership now."""


class MembershipFeed:
    """The owner's side: events in (never blocking), snapshots and events out."""

    def __init__(self, build: Build) -> None:
        self._build = build
        self._version = 0
        self._revocations = 0
        self.current = build(0, 0)
        self._subscriptions: list[Subscription] = []
        self._event_channels: list[trio.MemorySendChannel[Event]] = []
        self._dirty_send, self._dirty_receive = trio.open_memory_channel[None](1)
        self.dropped = 0

    def subscribe(self) -> Subscription:
        subscription = Subscription(self.current)
        self._subscriptions.append(subscription)
        return subscription

    def events(self, size: int = EVENT_QUEUE) -> trio.MemoryReceiveChannel[Event]:
        """A bounded channel of every membership event from now on; when it is full, events
        are dropped (counted in ``dropped``): the snapshots still say where things stand."""
        send, receive = trio.open_memory_channel[Event](size)
        self._event_channels.append(send)
        return receive

    def changed(self, events: Sequence[Event]) -> None:
        """The membership changed (called by the owner, synchronously; never blocks)."""
        if not events:
            return
        self._revocations += sum(isinstance(e, Revoked) for e in events)
        for channel in self._event_channels:
            for event in events:
                try:
                    channel.send_nowait(event)
                except trio.WouldBlock:
                    self.dropped += 1
                    log.warning("membership event queue full; dropped %s", type(event).__name__)
        with contextlib.suppress(trio.WouldBlock):
            self._dirty_send.send_nowait(None)

    def publish(self) -> Snapshot:
        """Build a snapshot of the membership now and hand it to every subscription."""
        self._version += 1
        self.current = _sharing(self.current, self._build(self._version, self._revocations))
        for subscription in self._subscriptions:
            subscription._offer(self.current)
        return self.current

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Publish a snapshot after every change (changes that pile up make one)."""
        task_status.started()
        while True:
            await self._dirty_receive.receive()
            self.publish()


def _sharing(last: Snapshot, new: Snapshot) -> Snapshot:
    """``new`` with each member unchanged since ``last`` the very object ``last`` holds, and
    ``last``'s grants table if the grants did not change (most changes leave them as they
    were): a service still holding ``last`` (until its next turn) holds no second copy of
    either."""
    before = {m.node_key: m for m in last.members}
    members = tuple(
        m if (old := before.get(m.node_key)) is None or old != m else old for m in new.members
    )
    grants = last.grants if new.grants == last.grants else new.grants
    return dataclasses.replace(new, members=members, grants=grants)
