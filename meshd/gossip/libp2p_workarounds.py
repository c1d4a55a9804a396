"""Workarounds for py-libp2p 0.8.1: the settings, patches and containment meshd relies on.

Written and measured against **py-libp2p 0.8.1** (:data:`LIBP2P_VERSION`, pinned in
pyproject.toml). Most of it reaches into libp2p internals (private attributes, module
globals, a method replaced on a class), so it is tied to that version's source.
docs/gossip.md, "py-libp2p 0.8.1 pitfalls", gives the measured reason for each item.

**Importing this module patches py-libp2p for the whole process** (the last section below):
signed peer records are verified once per change, Yamux returns receive-window credit at
half the window, and trio's accept-loop errors are logged once a minute
(:class:`OncePerMinute`). Every other workaround is a function that the host
(:mod:`meshd.gossip.host`, :mod:`meshd.gossip.stack`) calls.

Re-checking on an upgrade of py-libp2p. For each item, read the named places in the new
libp2p source: a patch of a function that was renamed or moved patches nothing, silently.
Then run ``.venv/bin/pytest -q tests/gossip tests/daemon`` and measure the CPU per published
message (docs/gossip.md, "Figures") with and without each CPU item: a newer libp2p may make
one unnecessary. Last, change :data:`LIBP2P_VERSION`, the pin and docs/gossip.md. The tests
named below are in tests/gossip/test_host.py.

- Signed peer records verified once per change (patch; CPU).
  ``pubsub/utils.py: maybe_consume_signed_record`` and its imports by name in
  ``pubsub/pubsub.py`` and ``pubsub/gossipsub.py``.
- Yamux credit at half the window (patch; CPU).
  ``YamuxStream._auto_tune_and_send_window_update`` and what it uses (``window_lock``,
  ``_pending_recv_release``, ``target_recv_window``, ``send_window_update``).
- The router's settings (:func:`gossipsub_router`; CPU, spam protection).
  ``GossipSub.__init__``'s options and defaults, the meshsub protocol ids, and that
  ``GossipSub.scorer`` may be ``None``. Tests: the burst test below (spam protection).
- The publish sequence number (:func:`seed_sequence_number`).
  ``Pubsub.counter``, ``int(time.time())`` in 0.8.1. Test: test_restarted_host_is_heard_again.
- Publish pacing (:func:`wait_for_queue_room`). ``Pubsub.peer_queues`` and
  ``rpc_queue.OutBoundQueueSize`` (32). Test: test_a_burst_of_publishes_is_paced_not_dropped.
- The auto-connector (:func:`stop_auto_connector`). ``Swarm.auto_connector`` and
  ``AutoConnector.stop``. No test: a member we disconnect must stay disconnected.
- Shutdown (:func:`close_host`, :func:`drop_nursery_closed`). ``BasicHost.close`` and
  ``host.run()``; the "Nursery is closed to new arrivals" race. Tests:
  test_shutdown_is_prompt_and_leaves_nothing_behind, test_an_error_in_the_body_propagates_unwrapped.
- The log bridge (:class:`Libp2pLogBridge`). ``utils/logging.py`` sets ``propagate=False``.
  Test: test_libp2p_warnings_reach_our_logger.
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
- libp2p's log lines held to what says something (:class:`OncePerPeer` on
  :data:`GOSSIPSUB_LOGGER`: "IHAVE/IWANT rate limit exceeded" once per peer a minute, with
  a count; :class:`Demoted` on :data:`HOST_LOGGER`, :data:`TCP_LOGGER`,
  :data:`MULTISELECT_LOGGER` and :data:`SWARM_LOGGER`: a stream refused for its protocol or
  cut during its handshake, a dial that failed, a connection added while the host stopped
  are DEBUG, not ERROR or WARNING). ``handle_ihave``/``handle_iwant`` in
  ``pubsub/gossipsub.py``, ``BasicHost.new_stream``, ``TCP.dial``,
  ``MultiselectClient.handshake`` and ``Swarm.add_conn``: their messages' first words.
  Tests: tests/gossip/test_log_filters.py.
- Accept errors logged once a minute (:class:`OncePerMinute` on :data:`ACCEPT_LOGGER`).
  ``trio/_highlevel_serve_listeners.py``: ``LOGGER`` and ``ACCEPT_CAPACITY_ERRNOS`` (trio,
  which py-libp2p's TCP listener uses). Test: test_accept_errors_are_logged_once_a_minute.
- The listen queue (:func:`widen_listen_backlog`). ``sock.listen(128)`` in
  ``transport/tcp/tcp.py: _open_reuseport_listeners`` and ``TCPListener.listeners``.
  Test: test_the_listen_queue_is_wide.
- Exclusive TCP listen ports (patch; :func:`unbound_listen_addrs`). ``transport/tcp/tcp.py:
  _open_reuseport_listeners`` sets SO_REUSEPORT, so a second daemon shared a port already in
  use and dials landed on either; ours sets SO_REUSEADDR only (a restart still binds past
  TIME_WAIT). ``Swarm.listen`` only logs an address that does not bind: the host checks
  ``Swarm.listeners`` (keyed by the multiaddr's text) after listening. Tests:
  tests/daemon/test_startup.py.
- Dials to a new address (:func:`forget_failed_dial`). ``Swarm._negative_peer_cache``,
  ``Swarm.unblock_peer``, ``PeerStore.clear_addrs`` and the one-address-per-class choice in
  ``Swarm.dial_peer``. Test: test_a_dial_to_a_new_address_ignores_an_earlier_failure.

Two more live in :mod:`meshd.gossip.host`, being the host's own behaviour: libp2p's 32-slot
subscription queue (``pubsub.SUBSCRIPTION_CHANNEL_SIZE``) is drained at once into a larger
channel (``GossipHost._drain``), and ``connect_any`` dials addresses concurrently, since each
dial waits out the 250 ms happy-eyeballs delay (``network/swarm.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import multiaddr
import trio

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.abc import IHost, IMuxedConn, INetConn, INetwork, IRawConnection
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.pubsub import gossipsub as libp2p_gossipsub
from libp2p.pubsub import pubsub as libp2p_pubsub
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.utils import maybe_consume_signed_record
from libp2p.stream_muxer.yamux.yamux import YamuxStream
from libp2p.transport.exceptions import OpenConnectionError
from libp2p.transport.tcp import tcp as libp2p_tcp

from meshd.gossip.config import HostConfig
from meshd.gossip.peers import ConnectionNotifee

__all__ = [
    "ACCEPT_LOGGER",
    "FORWARDED_LOGGER",
    "GOSSIPSUB_LOGGER",
    "HOST_LOGGER",
    "LIBP2P_LOGGER",
    "LIBP2P_VERSION",
    "MULTISELECT_LOGGER",
    "SWARM_LOGGER",
    "TCP_LOGGER",
    "Admitted",
    "Demoted",
    "HandshakeBudget",
    "Libp2pLogBridge",
    "OncePerMinute",
    "OncePerPeer",
    "close_host",
    "drop_nursery_closed",
    "forget_failed_dial",
    "gate_inbound_handshakes",
    "gossipsub_router",
    "leaves",
    "seed_sequence_number",
    "source_of",
    "stop_auto_connector",
    "unbound_listen_addrs",
    "wait_for_queue_room",
    "widen_listen_backlog",
]

logger = logging.getLogger(__name__)

LIBP2P_VERSION: Final = "0.8.1"
"""The py-libp2p version these workarounds were written and measured against."""

LIBP2P_LOGGER: Final = "libp2p"
"""py-libp2p's root logger; it does not propagate to ours."""

FORWARDED_LOGGER: Final = "meshd.gossip.libp2p"
"""Where libp2p's records of level WARNING and above are re-logged."""

_NURSERY_CLOSED: Final = "Nursery is closed to new arrivals"
# Per-peer outbound queues in py-libp2p hold 32 RPCs and drop silently when full. A publish
# waits until every queue is at most this full, which leaves room for the control traffic
# and forwarded messages that share the queue.
_QUEUE_HEADROOM: Final = 16
_QUEUE_POLL: Final = 0.005
# A signed peer record rides on every gossip RPC and libp2p verifies it twice per RPC (pubsub,
# then gossipsub). A record byte-identical to the last one a peer sent was verified already;
# it is verified again (and its peerstore TTL refreshed) after this many seconds.
_SIGNED_RECORD_RECHECK: Final = 600.0
_MAX_VERIFIED_PEERS: Final = 4096


# -- building the router ---------------------------------------------------------------------


class FloodPublishGossipSub(GossipSub):
    """GossipSub that sends our own messages to every peer of the topic, not only the mesh.

    go-libp2p's ``FloodPublish`` (on there by default; py-libp2p 0.8.1 has no such option):
    a revocation made here reaches every connected member at the first hop instead of the
    ``degree`` mesh peers, one hop less across the network. What we forward for others still
    goes to the mesh only. Our own records are rare (a revocation, an admission, an
    announcement on change), and the peers are the connections we hold, which are bounded.
    """

    def _get_peers_to_send(
        self,
        topic_ids: Any,
        msg_forwarder: ID,
        origin: ID,
        msg_id: bytes | None = None,
    ) -> Any:
        peers = super()._get_peers_to_send(topic_ids, msg_forwarder, origin, msg_id)
        pubsub = self.pubsub
        if pubsub is None or origin != pubsub.my_id:
            return peers
        everyone = set(peers)
        for topic in topic_ids:
            everyone.update(p for p in pubsub.peer_topics.get(topic, ()) if p in self.peer_protocol)
        everyone.difference_update((msg_forwarder, origin))
        return everyone


def gossipsub_router(config: HostConfig) -> GossipSub:
    """The gossipsub router: meshsub 1.1 only, no spam protection, no scoring, no extras;
    our own messages flooded to every peer of the topic (:class:`FloodPublishGossipSub`)."""
    gossipsub = FloodPublishGossipSub(
        # meshsub 1.1 only: 1.2 adds IDONTWANT, which py-libp2p sends to every mesh peer
        # for every message it forwards, whatever its size. Our records are a few hundred
        # bytes: that doubled the RPCs per message and saved no bandwidth.
        protocols=[PROTOCOL_ID_V11],
        degree=config.degree,
        degree_low=config.degree_low,
        degree_high=config.degree_high,
        heartbeat_interval=config.heartbeat_interval,
        # On by default: 10 msg/s per peer per topic, our own publishes included, the excess
        # dropped with only a log line. Volume is limited by the membership protocol.
        spam_protection_enabled=False,
        # The gossipsub 2.0 extras of py-libp2p cost CPU on every heartbeat and churn
        # the mesh: adaptive degrees; IP diversity, meaningless when every member may sit
        # behind one address (loopback, NAT); and peer scoring, which swaps the worst
        # mesh peer for a better one each heartbeat and marks a forwarder down whenever
        # our validator refuses a record it already had from sync. Each swap is a PRUNE
        # and a GRAFT, refused as a "GRAFT flood" when it comes back within 10 s. The
        # membership layer validates, rate-limits and drops peers itself.
        adaptive_gossip_enabled=False,
        eclipse_protection_enabled=False,
    )
    gossipsub.scorer = None
    return gossipsub


def seed_sequence_number(pubsub: Pubsub) -> None:
    """Start the publish sequence number at ``time.time_ns()``.

    libp2p seeds the sequence number with int(time.time()) and counts up by one per
    message: a host restarted within seconds reuses numbers its peers have already seen and
    its messages are dropped as duplicates (or as equivocation). Nanoseconds move on faster
    than any host can publish.
    """
    pubsub.counter = time.time_ns()


# -- running ---------------------------------------------------------------------------------


async def wait_for_queue_room(pubsub: Pubsub, wait: float) -> None:
    """Wait, up to ``wait`` seconds, until every peer's outbound queue has room to spare.

    Past the deadline, log which peers are slow and return anyway: one stuck peer must not
    stop gossip for everyone, and anti-entropy repairs what it misses.
    """
    with trio.move_on_after(wait):
        # Polling: libp2p's RpcQueue signals pushes but not pops.
        while any(len(q) > _QUEUE_HEADROOM for q in pubsub.peer_queues.values()):  # noqa: ASYNC110
            await trio.sleep(_QUEUE_POLL)
        return
    slow = [str(p) for p, q in pubsub.peer_queues.items() if len(q) > _QUEUE_HEADROOM]
    logger.warning("publishing despite a gossip backlog towards %s", ", ".join(slow))


async def stop_auto_connector(host: IHost) -> None:
    """Stop the swarm's auto-connector; call it once the host runs."""
    # py-libp2p's auto-connector dials peers from the peerstore (which fills from the
    # signed records riding on every gossip RPC) until it holds ~100 connections, and
    # watermarks cannot turn it off. Which peers we connect to is the membership
    # layer's decision: a member we disconnect, revoked say, must stay disconnected.
    connector = getattr(host.get_network(), "auto_connector", None)
    if isinstance(connector, AutoConnector):
        await connector.stop()


# -- inbound connections and dials ----------------------------------------------------------


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


LISTEN_BACKLOG: Final = 4096
"""The listen queue we ask the kernel for (it caps it at ``net.core.somaxconn``)."""


def widen_listen_backlog(host: IHost, backlog: int = LISTEN_BACKLOG) -> None:
    """Give the host's TCP listeners a listen queue of ``backlog`` (py-libp2p asks for 128).

    Under a connect flood the kernel's accept queue is where an honest dialler waits for
    its turn. With 128 places, a flooder keeping more connects than that in flight filled
    it, and the kernel dropped the honest SYN, which TCP only retries after 1, 3, 7 s:
    joining took seconds longer than the daemon needed to accept and shed the flood.
    ``listen()`` on a listening socket only changes its backlog.
    """
    for listener in host.get_network().listeners.values():
        for trio_listener in getattr(listener, "listeners", ()):
            sock = getattr(trio_listener, "socket", None)
            if sock is not None:
                sock.listen(backlog)


def unbound_listen_addrs(host: IHost, wanted: Sequence[multiaddr.Multiaddr]) -> list[str]:
    """The addresses of ``wanted`` that the host does not listen on (they did not bind)."""
    listening = host.get_network().listeners
    return [str(addr) for addr in wanted if str(addr) not in listening]


def forget_failed_dial(host: IHost, peer_id: ID) -> None:
    """Make the next dial of ``peer_id`` go to the address it is given, whatever came before.

    Two things py-libp2p remembers defeated a dial to a member's *new* address: its 60 s
    negative cache of peers whose every address failed (renewed by each failed re-dial),
    which refused the dial outright ("recently failed all addresses"); and the peerstore,
    which kept the old address, while ``Swarm.dial_peer`` dials at most one address per
    transport class (``MAX_ADDRS_PER_PEER``), the old one first. Both are cleared for
    ``peer_id``; the caller's dial policy owns backoff (the daemon's is per member, capped,
    and reset when a member's addresses change).
    """
    swarm = host.get_network()
    unblock = getattr(swarm, "unblock_peer", None)
    if callable(unblock):
        unblock(peer_id)
    host.get_peerstore().clear_addrs(peer_id)


# -- shutting down ---------------------------------------------------------------------------


async def close_host(host: IHost) -> None:
    """``host.close()`` (connections, then listeners), with libp2p's shutdown race contained.

    Leaving ``host.run()`` closes neither; call this before stopping pubsub and gossipsub.
    """
    try:
        await host.close()
    except RuntimeError as exc:
        if _NURSERY_CLOSED not in str(exc):
            raise
        logger.debug("contained libp2p shutdown race in host.close(): %s", exc)


def drop_nursery_closed(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """Remove libp2p's shutdown-race RuntimeErrors from ``group``; return what is left."""
    matched, rest = group.split(lambda e: isinstance(e, RuntimeError) and _NURSERY_CLOSED in str(e))
    if matched is not None:
        logger.debug("contained libp2p shutdown race: %s", _NURSERY_CLOSED)
    return rest


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions in ``error``, with every (nested) exception group flattened."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


# -- logging ---------------------------------------------------------------------------------


class Libp2pLogBridge(logging.Handler):
    """Re-logs libp2p's WARNING+ records on our logger; shared by every host of a process.

    libp2p sets ``propagate=False`` on its root logger, so without this its warnings would
    go nowhere. The handler counts its users and removes itself when the last one leaves.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.users = 0
        self.target = logging.getLogger(FORWARDED_LOGGER)

    def emit(self, record: logging.LogRecord) -> None:
        # The record keeps its libp2p logger name; our logger's handlers and level decide.
        if self.target.isEnabledFor(record.levelno):
            self.target.handle(record)

    @classmethod
    def attach(cls) -> Libp2pLogBridge:
        source = logging.getLogger(LIBP2P_LOGGER)
        bridge = next((h for h in source.handlers if isinstance(h, cls)), None)
        if bridge is None:
            bridge = cls()
            source.addHandler(bridge)
        bridge.users += 1
        return bridge

    def detach(self) -> None:
        self.users -= 1
        if self.users <= 0:
            logging.getLogger(LIBP2P_LOGGER).removeHandler(self)


class OncePerMinute(logging.Filter):
    """Let one record through per minute, without its traceback; count the others.

    Put on ``trio.serve_listeners``, which logs an error with a full traceback every
    0.1 s while accept() fails for lack of descriptors (EMFILE and kin; it pauses and
    goes on, which is right): a process at its limit would log ten tracebacks a second.
    """

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self.suppressed = 0
        self._last = -interval

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._last < self.interval:
            self.suppressed += 1
            return False
        self._last = now
        record.exc_info = None
        record.exc_text = None
        if self.suppressed:
            record.msg = f"{record.msg} ({self.suppressed} more since the last report)"
            self.suppressed = 0
        return True


ACCEPT_LOGGER: Final = "trio.serve_listeners"
"""Where trio reports accept() failing for lack of resources (EMFILE, ENFILE, ...)."""
ACCEPT_LOG_FILTER: Final = OncePerMinute()


class OncePerPeer(logging.Filter):
    """Let one record of each of ``messages`` through per peer per ``interval``; the next one
    after it says how many were held back in between. Other records pass untouched.

    Put on py-libp2p's gossipsub logger, which warns "IHAVE rate limit exceeded" for every
    IHAVE past ten a second from one peer (checked even with spam protection off): a founder
    that members join logged dozens a second. The peer is the record's first argument.
    """

    def __init__(
        self,
        messages: tuple[str, ...],
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        limit: int = 1024,
    ) -> None:
        super().__init__()
        self.messages = messages
        self.interval = interval
        self.clock = clock
        self.limit = limit
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # (text, peer) -> (last, held)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.msg
        if not isinstance(text, str) or not text.startswith(self.messages):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        key = (text, str(args[0]) if args else "")
        now = self.clock()
        last, held = self._seen.get(key, (None, 0))
        if last is not None and now - last < self.interval:
            self._seen[key] = (last, held + 1)
            return False
        if key not in self._seen and len(self._seen) >= self.limit:
            self._forget(now)
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{text} ({held} more since the last report)"
        return True

    def _forget(self, now: float) -> None:
        """Drop the peers not reported within the interval (all of them if none is)."""
        stale = [k for k, (last, _) in self._seen.items() if now - last >= self.interval]
        for key in stale or list(self._seen):
            del self._seen[key]


GOSSIPSUB_LOGGER: Final = "libp2p.pubsub.gossipsub"
GOSSIPSUB_LOG_FILTER: Final = OncePerPeer(
    ("IHAVE rate limit exceeded", "IWANT rate limit exceeded")
)


class Demoted(logging.Filter):
    """Lower to DEBUG the records whose message starts with a rule's prefix and holds its
    words (in the message or its arguments), for any of ``rules``: ``(prefix, words)``.

    py-libp2p logs at ERROR or WARNING, one record per attempt, failures that a mesh meets
    all the time and whose callers handle them and say what matters themselves: a dial to
    an address that does not answer (a NATed member's private address, a member that is
    down; the connection policy dials again and ``meshd peers``/``status`` show who is
    reached), a stream whose connection closed during its protocol handshake (a member
    stopping), a peer that does not speak the protocol asked for (a member that has just
    enrolled does not serve sync yet: meshd.daemon.antientropy retries it and says so), a
    connection that arrived while the host was stopping. They stay in the log at DEBUG.
    """

    def __init__(self, *rules: tuple[str, str]) -> None:
        super().__init__()
        self.rules = rules

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.msg
        if not isinstance(text, str):
            return True
        for prefix, words in self.rules:
            if text.startswith(prefix) and (words in text or _in_args(record, words)):
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                break
        return True


def _in_args(record: logging.LogRecord, words: str) -> bool:
    args = record.args if isinstance(record.args, tuple) else (record.args,)
    return any(words in (a if isinstance(a, str) else repr(a)) for a in args)


HOST_LOGGER: Final = "libp2p.host.basic_host"
HOST_LOG_FILTER: Final = Demoted(
    ("Failed to open stream to peer", "protocols not supported"),
    ("Failed to open stream to peer", "handshake read failed"),
    ("Failed to open stream to peer", "handshake write failed"),
)
TCP_LOGGER: Final = "libp2p.transport.tcp.tcp"
TCP_LOG_FILTER: Final = Demoted(("Failed to open TCP stream", ""))
MULTISELECT_LOGGER: Final = "libp2p.protocol_muxer.multiselect_client"
MULTISELECT_LOG_FILTER: Final = Demoted(
    ("MultiselectClient handshake: read failed", ""),
    ("MultiselectClient handshake: write failed", ""),
)
SWARM_LOGGER: Final = "libp2p.network.swarm"
SWARM_LOG_FILTER: Final = Demoted(
    ("[ADDCONN_FAIL]", "Cannot schedule task after service has stopped")
)


# -- patches (applied when this module is imported) ------------------------------------------

_verified_records: weakref.WeakKeyDictionary[IHost, dict[bytes, tuple[bytes, float]]] = (
    weakref.WeakKeyDictionary()
)


def _consume_signed_record_once(msg: rpc_pb2.RPC, host: IHost, peer_id: ID) -> bool:
    """libp2p's ``maybe_consume_signed_record``, skipped for a record this host has just
    verified from the same peer, byte for byte."""
    if not msg.HasField("senderRecord"):
        return True
    record = msg.senderRecord
    seen = _verified_records.setdefault(host, {})
    peer = peer_id.to_bytes()
    now = time.monotonic()
    last = seen.get(peer)
    if last is not None and last[0] == record and last[1] > now:
        return True
    if not maybe_consume_signed_record(msg, host, peer_id):
        return False
    if len(seen) >= _MAX_VERIFIED_PEERS:
        seen.clear()
    seen[peer] = (bytes(record), now + _SIGNED_RECORD_RECHECK)
    return True


async def _release_window_at_half(self: YamuxStream, *, bytes_read: int = 0) -> None:
    """Give the sender its credit back once half the receive window has been read.

    py-libp2p 0.8.1 sends a WINDOW_UPDATE after every read of a stream with room left, that
    is one more encrypted frame and socket write for every gossip RPC received (about a
    quarter of the CPU per message). go-yamux waits for half the window; so does this.
    The window keeps its initial size (256 KiB), ample on the links we run over.
    """
    async with self.window_lock:
        self._pending_recv_release += bytes_read
        if self._pending_recv_release < self.target_recv_window // 2:
            return
        delta = self._pending_recv_release
        self._pending_recv_release = 0
        self.recv_window += delta
    await self.send_window_update(delta, skip_lock=True)


async def _open_exclusive_listeners(host: str | None, port: int) -> list[trio.SocketListener]:
    """libp2p's ``_open_reuseport_listeners`` without SO_REUSEPORT: a port in use does not
    bind (two daemons never share one). ``host`` None listens on 0.0.0.0 only, as there."""
    family = trio.socket.AF_INET6 if host is not None and ":" in host else trio.socket.AF_INET
    ip = host or "0.0.0.0"  # noqa: S104 (the wildcard, as asked)
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        await sock.bind((ip, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise OpenConnectionError(f"Failed to listen on {ip}:{port}: {exc}") from exc
    return [trio.SocketListener(sock)]


# Both modules imported the function by name: replace it where it is looked up.
libp2p_pubsub.maybe_consume_signed_record = _consume_signed_record_once  # type: ignore[attr-defined]
libp2p_gossipsub.maybe_consume_signed_record = _consume_signed_record_once  # type: ignore[attr-defined]
YamuxStream._auto_tune_and_send_window_update = _release_window_at_half  # type: ignore[method-assign]
libp2p_tcp._open_reuseport_listeners = _open_exclusive_listeners
logging.getLogger(ACCEPT_LOGGER).addFilter(ACCEPT_LOG_FILTER)
logging.getLogger(GOSSIPSUB_LOGGER).addFilter(GOSSIPSUB_LOG_FILTER)
logging.getLogger(HOST_LOGGER).addFilter(HOST_LOG_FILTER)
logging.getLogger(TCP_LOGGER).addFilter(TCP_LOG_FILTER)
logging.getLogger(MULTISELECT_LOGGER).addFilter(MULTISELECT_LOG_FILTER)
logging.getLogger(SWARM_LOGGER).addFilter(SWARM_LOG_FILTER)
