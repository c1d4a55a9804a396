"""Bounding the established inbound connections of non-members: :class:`StrangerGate`.

Once its owner calls :meth:`meshd.gossip.host.GossipHost.bound_strangers` (the daemon
does), every upgraded inbound connection of a peer that is not a standing member is put to a
:class:`~meshd.gossip.admission.StrangerBudget` (pure, by source), and what the budget
refuses, or hands over to make room, is closed at once, each close in its own task. Until
then nothing is counted or closed. :func:`inbound_source` reads the source (an IPv4 address
or an IPv6 /64) of an inbound connection. The host registers the gate as a libp2p notifee
and runs :meth:`StrangerGate.close_shed` while it runs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import trio

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.abc import INetConn, INetwork
from libp2p.rcmgr import Direction

from meshd.gossip.admission import StrangerBudget
from meshd.gossip.libp2p_workarounds.inbound import source_of
from meshd.gossip.peers import ConnectionNotifee

__all__ = ["StrangerGate", "inbound_source"]

# The host's log lines keep the one logger name they always had, whichever module logs them.
logger = logging.getLogger("meshd.gossip.host")

_SHED_LOG_INTERVAL = 60.0


def inbound_source(conn: INetConn) -> str | None:
    """The source (:func:`source_of`) of an inbound connection; None for an outbound one."""
    if getattr(conn, "direction", None) != Direction.INBOUND:
        return None
    secured = getattr(conn.muxed_conn, "secured_conn", None)
    remote = getattr(secured, "get_remote_address", lambda: None)()
    if not isinstance(remote, tuple) or not remote:
        return "unknown"
    return source_of(str(remote[0]))


class StrangerGate(ConnectionNotifee):
    """Puts each established connection to the :class:`StrangerBudget` it is given (by
    :meth:`bound`), and closes what the budget will not hold.

    ``close_timeout`` bounds each close (the host's ``dial_timeout``).
    """

    def __init__(self, close_timeout: float) -> None:
        self._close_timeout = close_timeout
        self.budget: StrangerBudget[INetConn] | None = None
        """Established inbound connections of non-members, per source; None until bounded."""
        self._is_member: Callable[[str], bool] = lambda peer: False
        self._shed_send, self._shed_receive = trio.open_memory_channel[INetConn](4096)
        self._last_shed_log = -_SHED_LOG_INTERVAL
        self.unclosed = 0
        """Connections the budget refused that were left open: the queue of closes was full."""

    def bound(self, budget: StrangerBudget[INetConn], is_member: Callable[[str], bool]) -> None:
        """From now on, put connections to ``budget``; ``is_member``'s peers are never
        counted nor closed (:meth:`meshd.gossip.host.GossipHost.bound_strangers`)."""
        self.budget = budget
        self._is_member = is_member

    def is_member(self, peer: str) -> bool:
        """Whether ``peer`` (base58) is a standing member, as the owner said (False for
        every peer until bounded)."""
        return self._is_member(peer)

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._stranger_connected(conn)
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        if self.budget is not None:
            self.budget.release(conn)
        await trio.lowlevel.checkpoint()

    def _stranger_connected(self, conn: INetConn) -> None:
        budget = self.budget
        source = inbound_source(conn) if budget is not None else None
        if budget is None or source is None:
            return  # not bounded, or not inbound
        peer = str(conn.muxed_conn.peer_id)
        if self._is_member(peer):
            return
        verdict = budget.admit(conn, peer, source, self._is_member)
        if verdict.close is None:
            return
        now = time.monotonic()
        if now - self._last_shed_log >= _SHED_LOG_INTERVAL:
            self._last_shed_log = now
            logger.warning(
                "connections of non-members: closing one (%s) from %s; %d from it, %d in all "
                "(%d closed at the limit and %d to make room so far)",
                verdict.why,
                source,
                budget.held_by(source),
                len(budget),
                budget.shed,
                budget.evicted,
            )
        try:
            self._shed_send.send_nowait(verdict.close)
        except trio.WouldBlock:
            # 4096 closes waiting: this one is left to the grace (docs/gossip.md).
            self.unclosed += 1
        except trio.ClosedResourceError:
            pass  # shutting down

    async def close_shed(self) -> None:
        """Close the connections the budget refused, until cancelled or :meth:`close`."""
        # Each close on its own: py-libp2p's takes 0.1 s at least (and a write to the peer),
        # and a connection holds its slots of py-libp2p's limits until its close is done.
        async with trio.open_nursery() as nursery:
            async for conn in self._shed_receive:
                nursery.start_soon(self._close_one, conn)

    async def _close_one(self, conn: INetConn) -> None:
        with trio.move_on_after(self._close_timeout), contextlib.suppress(Exception):
            await conn.close()

    def close(self) -> None:
        """Take no more connections to close (the host has stopped)."""
        self._shed_send.close()
