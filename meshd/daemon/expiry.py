"""The expiry service: every ``interval`` seconds the membership owner looks at the clock
(:meth:`~meshd.daemon.state.NodeState.tick`), and members silent for longer than their
announcement's TTL expire (:meth:`meshd.membership.Membership.tick`, pure, does the rule).
A tick judges every member: further apart than ``interval`` when that costs more
(:mod:`meshd.daemon.cost_pace`: every ~2.5 s at 10,000 members)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from meshd.daemon.cost_pace import spaced
from meshd.daemon.state import NodeState

if TYPE_CHECKING:
    from trio_typing import TaskStatus


class Expiry:
    def __init__(self, state: NodeState, interval: float) -> None:
        self.state = state
        self.interval = interval
        self.cost = 0.0  # seconds the last tick took

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            started = trio.current_time()
            self.state.tick()
            self.cost = trio.current_time() - started
            await trio.sleep(spaced(self.interval, self.cost))
