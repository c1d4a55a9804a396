"""The expiry service: every ``interval`` seconds the membership owner looks at the clock
(:meth:`~meshd.daemon.state.NodeState.tick`), and members silent for longer than their
announcement's TTL expire (:meth:`meshd.membership.Membership.tick`, pure, does the rule)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from meshd.daemon.state import NodeState

if TYPE_CHECKING:
    from trio_typing import TaskStatus


class Expiry:
    def __init__(self, state: NodeState, interval: float) -> None:
        self.state = state
        self.interval = interval

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self.state.tick()
            await trio.sleep(self.interval)
