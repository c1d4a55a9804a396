"""The liveness service: every ``interval`` seconds, the members this node sees itself (a
libp2p connection, a fresh WireGuard handshake: :mod:`meshd.daemon.liveness_policy`, pure)
count as heard in its membership (``Membership.heard``), so a member that is up does not
expire between its refreshes (every two hours). Nothing is flooded."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

import trio

from meshd.daemon.liveness_policy import heard
from meshd.daemon.state import NodeState
from meshd.daemon.transport import Transport, key_of

if TYPE_CHECKING:
    from trio_typing import TaskStatus

LIVENESS_INTERVAL: Final = 10.0  # seconds between looks (the device is read every 5 s)


class Liveness:
    def __init__(
        self,
        host: Transport,
        state: NodeState,
        handshakes: Callable[[], Mapping[bytes, float]],
        interval: float,
    ) -> None:
        self.host = host
        self.state = state
        self.handshakes = handshakes  # the device's latest handshakes by WireGuard key
        self.interval = interval

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self.look()
            await trio.sleep(self.interval)

    def look(self) -> dict[bytes, int]:
        """Tell the membership who this node hears itself; returns it (by node key)."""
        now = self.state.clock()
        connected = [k for p in self.host.connected_peers() if (k := key_of(p)) is not None]
        members = self.state.feed.current.members  # the last snapshot: no view built here
        seen = heard(now, members, self.state.key, connected, self.handshakes())
        membership = self.state.membership
        for key, at in seen.items():
            membership.heard(key, at, now)
        return seen
