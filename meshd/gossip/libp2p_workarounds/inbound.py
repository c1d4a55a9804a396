"""The inbound handshake gate: how many inbound connections may be in their handshake.

py-libp2p 0.8.1 holds every inbound connection in one global slot pool from the moment it
is accepted, and keeps the handler of each inbound connection waiting until the swarm ends:
one address re-opening plain TCP connections that never start Noise took every slot, and
after 300 connections since the start every new one was refused. What is here, and why:

* :class:`HandshakeBudget` (pure accounting) bounds the handshakes per source and in
  total; a source is what a remote cannot choose about itself (:func:`source_of`: its IPv4
  address or its IPv6 /64).
* :func:`gate_inbound_handshakes` puts a budget in front of the swarm's inbound upgrade,
  and ends the handler of an inbound connection once it has closed
  (``_EndHandlersOfClosedConnections``).

To re-check on an upgrade of py-libp2p (the tests are in tests/gossip/test_host.py):

- The inbound handshake gate (:func:`gate_inbound_handshakes`, :class:`HandshakeBudget`).
  ``Swarm.upgrade_inbound_raw_conn`` (looked up on the instance by
  ``Swarm._do_handle_inbound_connection``), ``Swarm._inbound_limiter`` (one global cap of
  ``max_connections`` held by un-upgraded connections too), ``ConnectionConfig.
  inbound_upgrade_timeout`` and ``RawConnection.get_remote_address``. Tests:
  test_one_source_cannot_take_every_handshake_slot,
  test_a_silent_connection_is_closed_at_the_deadline.
- Handlers of closed inbound connections end (``handle_until_closed`` and
  ``_EndHandlersOfClosedConnections`` in :func:`gate_inbound_handshakes`).
  ``Swarm._handle_inbound_connection`` (looked up on the instance by the listener's
  ``conn_handler``), ``await self.manager.wait_finished()`` at the end of
  ``Swarm._do_handle_inbound_connection``, and ``SwarmConn`` notifying ``disconnected``.
  Test: test_the_handler_of_a_closed_inbound_connection_ends.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import multiaddr
import trio

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.abc import IHost, IMuxedConn, INetConn, INetwork, IRawConnection
from libp2p.network.exceptions import SwarmException

from meshd.gossip.peers import ConnectionNotifee

__all__ = ["Admitted", "HandshakeBudget", "gate_inbound_handshakes", "source_of"]

# The workarounds log on their package's logger, whichever module they live in.
logger = logging.getLogger("meshd.gossip.libp2p_workarounds")


def source_of(host: str) -> str:
    """What a remote cannot choose about itself: its IPv4 address, or its IPv6 /64."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A handshake slot: :meth:`HandshakeBudget.admit`'s answer when it is not a refusal."""

    ticket: int
    evict: int | None
    """A ticket to abort now: its slot was handed over to make room."""


class HandshakeBudget:
    """Inbound connections still in their security handshake, per source and in total.

    Pure accounting (no clock, no I/O). :meth:`admit` hands out a ticket or refuses;
    :meth:`release` gives the ticket back. A source is what :func:`source_of` returns.

    A source holds at most ``per_source`` handshakes. When all ``total`` are taken, a source
    that holds fewer than the heaviest one (by two or more, counting the new handshake)
    still gets in: the heaviest source's oldest handshake is handed over (``evict``), and
    the caller aborts it. So filling the total takes ``total`` sources with one handshake
    each, not ``total / per_source`` sources at their limit.
    """

    def __init__(self, per_source: int, total: int) -> None:
        if per_source < 1 or total < per_source:
            raise ValueError("need 1 <= per_source <= total")
        self.per_source = per_source
        self.total = total
        self._sources: dict[str, dict[int, None]] = {}  # tickets per source, oldest first
        self._source_of: dict[int, str] = {}
        self._next = 0
        self.shed = 0
        """Connections refused because their source, or everyone, was at the limit."""
        self.evicted = 0
        """Handshakes aborted to make room for a source that held fewer."""

    @property
    def pending(self) -> int:
        return len(self._source_of)

    def pending_from(self, source: str) -> int:
        return len(self._sources.get(source, ()))

    def admit(self, source: str) -> Admitted | None:
        held = self.pending_from(source)
        if held >= self.per_source:
            self.shed += 1
            return None
        evict = None
        if self.pending >= self.total:
            heaviest = max(self._sources, key=self.pending_from)
            if self.pending_from(heaviest) <= held + 1:
                self.shed += 1
                return None
            evict = next(iter(self._sources[heaviest]))
            self._drop(evict)
            self.evicted += 1
        ticket = self._next
        self._next += 1
        self._sources.setdefault(source, {})[ticket] = None
        self._source_of[ticket] = source
        return Admitted(ticket, evict)

    def release(self, ticket: int) -> None:
        """Give back a ticket's slot; a ticket handed over by ``evict`` is gone already."""
        if ticket in self._source_of:
            self._drop(ticket)

    def _drop(self, ticket: int) -> None:
        source = self._source_of.pop(ticket)
        tickets = self._sources[source]
        del tickets[ticket]
        if not tickets:
            del self._sources[source]


_SHED_LOG_INTERVAL: Final = 60.0

Upgrade = Callable[[IRawConnection, Any], Awaitable[IMuxedConn]]


def gate_inbound_handshakes(host: IHost, budget: HandshakeBudget) -> None:
    """Put ``budget`` in front of the host's inbound security handshakes.

    py-libp2p 0.8.1 holds every inbound connection in one global slot pool
    (``Swarm._inbound_limiter``, ``max_connections`` wide) and in its resource manager's
    global count from the moment it is accepted, so plain TCP connections that never start
    Noise, re-opened as they close, took every slot and every honest dialler was turned
    away. With the gate, a connection that the budget refuses is closed at once, before
    any slot of libp2p's is held for it beyond that instant; one that it admits by handing
    over another source's slot aborts that handshake; a handshake gives its slot back as
    soon as it ends, upgraded or not. The deadline of a handshake is
    ``ConnectionConfig.inbound_upgrade_timeout`` (:func:`meshd.gossip.stack.build_stack`).
    """
    swarm = host.get_network()
    upgrade: Upgrade = swarm.upgrade_inbound_raw_conn
    handle: Handle = swarm._handle_inbound_connection  # type: ignore[attr-defined]
    closing = _EndHandlersOfClosedConnections()
    swarm.register_notifee(closing)
    running: dict[int, IRawConnection] = {}
    last_log = -_SHED_LOG_INTERVAL

    def log_shed(source: str, what: str) -> None:
        nonlocal last_log
        now = time.monotonic()
        if now - last_log >= _SHED_LOG_INTERVAL:
            last_log = now
            logger.warning(
                "inbound handshakes: %s %s (%d in handshake from it, %d in all; "
                "%d refused and %d aborted so far)",
                what,
                source,
                budget.pending_from(source),
                budget.pending,
                budget.shed,
                budget.evicted,
            )

    async def gated(raw_conn: IRawConnection, maddr: Any) -> IMuxedConn:
        remote = raw_conn.get_remote_address()
        source = source_of(remote[0]) if remote is not None else "unknown"
        admitted = budget.admit(source)
        if admitted is None:
            log_shed(source, "refusing")
            await raw_conn.close()
            raise SwarmException(f"too many inbound handshakes from {source}")
        running[admitted.ticket] = raw_conn
        try:
            if admitted.evict is not None:
                log_shed(source, "making room for")
                victim = running.pop(admitted.evict, None)
                if victim is not None:
                    # Closing the socket fails the victim's handshake through libp2p's own
                    # error path, which releases what libp2p holds for it; cancelling its
                    # task would interrupt that clean-up.
                    with contextlib.suppress(Exception):
                        await victim.close()
            muxed = await upgrade(raw_conn, maddr)
        finally:
            running.pop(admitted.ticket, None)
            budget.release(admitted.ticket)
        handler_scope = _INBOUND_HANDLER.get()
        if handler_scope is not None:
            closing.watch(muxed, handler_scope)
        return muxed

    async def handle_until_closed(read_write_closer: Any, maddr: multiaddr.Multiaddr) -> None:
        # py-libp2p keeps the handler of an inbound connection waiting for the swarm to end
        # (so that trio's listener does not close the socket under it), with a slot of
        # Swarm._inbound_limiter held: after 300 connections since the start, every new one
        # was refused. The handler ends once its connection has closed.
        with trio.CancelScope() as scope:
            token = _INBOUND_HANDLER.set(scope)
            try:
                await handle(read_write_closer, maddr)
            finally:
                _INBOUND_HANDLER.reset(token)

    setattr(swarm, "upgrade_inbound_raw_conn", gated)  # noqa: B010 (a method, on purpose)
    setattr(swarm, "_handle_inbound_connection", handle_until_closed)  # noqa: B010


_INBOUND_HANDLER: contextvars.ContextVar[trio.CancelScope | None] = contextvars.ContextVar(
    "meshd_inbound_handler", default=None
)
"""The cancel scope around the inbound-connection handler running in this task."""

Handle = Callable[[Any, multiaddr.Multiaddr], Awaitable[None]]


class _EndHandlersOfClosedConnections(ConnectionNotifee):
    """Cancels the handler of an inbound connection once libp2p reports it closed."""

    def __init__(self) -> None:
        self._handlers: dict[IMuxedConn, trio.CancelScope] = {}

    def __len__(self) -> int:
        return len(self._handlers)

    def watch(self, muxed: IMuxedConn, handler: trio.CancelScope) -> None:
        if muxed.is_closed:
            handler.cancel()  # closed before we could watch it
        else:
            self._handlers[muxed] = handler

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        handler = self._handlers.pop(conn.muxed_conn, None)
        if handler is not None:
            handler.cancel()
        await trio.lowlevel.checkpoint()
