"""The expiry service: every ``interval`` seconds the membership owner looks at the clock
(:meth:`~meshd.daemon.state.NodeState.tick`), and members silent for longer than their
announcement's TTL, or past their credential's end, expire
(:meth:`meshd.membership.Membership.tick`, pure, does the rule). A tick judges every member
only once the first moment one may expire has come, else only the members heard from while
expired: at rest, next to nothing. A tick that judged everyone is followed by the next one
further apart than ``interval`` when that pass cost more (:mod:`meshd.daemon.cost_pace`)."""

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
