"""This node's own standing: whether it has ended, and how, decided in one place.

Our own standing ends one of three ways, each for good: **revoked** (our key, or the invite or
admin key our credentials depend on), **left** (``meshd leave``: our own leave is in the set)
or **handed over** (``meshd rotate node``: the daemon starts again under the new key).
:func:`own_ending` says which from the membership; :class:`OwnStanding` (``NodeState.standing``)
looks each time the membership changes (the feed's snapshots) and every :data:`POLL` seconds,
and publishes the ending once. What acts on it waits for it: the daemon's stop
(:func:`meshd.daemon.lifecycle.stop_when_revoked`: NodeRevoked, or KeyHandedOver) and the
departure (:class:`meshd.daemon.renewer.Departure`: stopped as by SIGTERM).

Expiry is no ending: a credential past its end returns when it is renewed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

import trio

from meshd.membership import Membership, MemberState

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from meshd.daemon.feed import Subscription
    from meshd.daemon.state import NodeState

FORKED: Final = "a key of its membership was handed over twice"
"""The reason a node revoked that way stops with (no revocation names it)."""

LEFT_THE_SET: Final = (
    "its credential left the record set (a key before it was revoked or handed over twice)"
)
"""The reason a node stops with whose credential is in the set no more: the hand-over that
gave it its key left, as a key before it was revoked or handed over twice."""

POLL: Final = 1.0
"""Seconds between looks while the membership does not change (a belt to the feed's braces)."""


class Ended(StrEnum):
    REVOKED = "revoked"
    LEFT = "left"
    HANDED_OVER = "handed-over"


@dataclass(frozen=True, slots=True)
class Ending:
    how: Ended
    reason: str = ""
    """The revocation's reason ("" when it gave none; always "" unless revoked)."""


def own_ending(membership: Membership, key: bytes, now: int) -> Ending | None:
    """How the standing of the member ``key`` has ended at ``now``; None while it stands (or
    only expired)."""
    me = membership.member(key, now)
    if me is not None and me.state is MemberState.REVOKED:
        if me.reason == Ended.HANDED_OVER:
            return Ending(Ended.HANDED_OVER)
        if me.reason != Ended.LEFT:
            found = membership.revocation_of(key)
            if found is None and me.reason == "forked":
                return Ending(Ended.REVOKED, FORKED)
            return Ending(Ended.REVOKED, "" if found is None else found.reason)
    if membership.leave_of(key) is not None:
        return Ending(Ended.LEFT)
    return None


class OwnStanding:
    """The one watcher of this node's own standing; :meth:`wait` for its ending."""

    def __init__(self, state: NodeState, *, poll: float = POLL) -> None:
        self._state = state
        self.poll = poll
        self.ended: Ending | None = None
        self._ended = trio.Event()
        self._held = False  # whether this node held a credential in the set at a look

    def check(self) -> Ending | None:
        """Look now; an ending found is kept (it is for good) and published. A node that
        held a credential and holds none now has ended too: its hand-over left the set
        (reason :data:`LEFT_THE_SET`)."""
        if self.ended is None:
            state = self._state
            ending = own_ending(state.membership, state.key, state.clock())
            held = state.membership.member(state.key, state.clock()) is not None
            if ending is None and self._held and not held:
                ending = Ending(Ended.REVOKED, LEFT_THE_SET)
            self._held = self._held or held
            if ending is not None:
                self.ended = ending
                self._ended.set()
        return self.ended

    async def wait(self) -> Ending:
        """This node's ending: at once if it has ended, else once :meth:`run` sees it."""
        if self.check() is None:
            await self._ended.wait()
        assert self.ended is not None
        return self.ended

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Look on every change of the membership and every ``poll`` seconds; return once
        the standing has ended."""
        changes = self._state.feed.subscribe()
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow, changes)
            while self.check() is None:
                with trio.move_on_after(self.poll):
                    await self._ended.wait()
            nursery.cancel_scope.cancel()

    async def _follow(self, changes: Subscription) -> None:
        async for _ in changes:  # until run() cancels it, once ended
            self.check()
