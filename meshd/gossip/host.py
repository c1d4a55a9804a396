"""The libp2p transport shell: :class:`GossipHost`, one gossipsub topic plus framed streams.

A host is built for one job: TCP, Noise and Yamux only, with the node's Ed25519 key as its
libp2p identity (so a peer id names a member key); gossipsub on one topic, messages signed by
their author and checked by one synchronous validator owned by the caller (a rejected
message is neither delivered nor forwarded; the size limit is checked first); framed
streams for protocols such as anti-entropy sync. Its parts, all importable from here:

* :mod:`meshd.gossip.config`: :class:`HostConfig`, the :data:`Validator` type;
* :mod:`meshd.gossip.stack`: the libp2p stack, i.e. what can be negotiated on the wire;
* :mod:`meshd.gossip.peers`: peer ids and member keys, dial results, peer events;
* :mod:`meshd.gossip.streams`: :class:`FramedStream` and the transport's errors;
* :mod:`meshd.gossip.libp2p_workarounds`: what works around py-libp2p 0.8.1, and what to
  re-check when upgrading it (the router, the inbound gate, connections, shutdown, logs).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import trio

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.abc import IHost, INetConn, INetwork
from libp2p.crypto.ed25519 import create_new_key_pair as ed25519_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.protocol_muxer.exceptions import MultiselectClientError
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.rcmgr import Direction
from libp2p.tools.anyio_service import background_trio_service

from meshd.errors import AddressUnavailable
from meshd.gossip.admission import StrangerBudget
from meshd.gossip.config import HostConfig, Validator, parse_multiaddr
from meshd.gossip.libp2p_workarounds.connections import (
    forget_failed_dial,
    stop_auto_connector,
    unbound_listen_addrs,
    widen_listen_backlog,
)
from meshd.gossip.libp2p_workarounds.inbound import HandshakeBudget, source_of
from meshd.gossip.libp2p_workarounds.logs import FORWARDED_LOGGER, LIBP2P_LOGGER, Libp2pLogBridge
from meshd.gossip.libp2p_workarounds.router import wait_for_queue_room
from meshd.gossip.libp2p_workarounds.shutdown import close_host, drop_nursery_closed, leaves
from meshd.gossip.peers import (
    ConnectionNotifee,
    ConnectResult,
    DialBackoff,
    PeerConnected,
    PeerDisconnected,
    PeerEvent,
    PeerEvents,
    parse_peer_id,
    peer_id_of,
    public_key_of,
)
from meshd.gossip.stack import build_stack
from meshd.gossip.streams import (
    LIBP2P_ERRORS,
    FramedStream,
    FrameTimeout,
    MessageTooLarge,
    StreamEnded,
    StreamHandler,
    TransportError,
    UndialableAddress,
    serve_framed,
)

__all__ = [
    "FORWARDED_LOGGER",
    "LIBP2P_LOGGER",
    "ConnectResult",
    "DialBackoff",
    "FrameTimeout",
    "FramedStream",
    "GossipHost",
    "GossipMessage",
    "HostConfig",
    "MessageTooLarge",
    "PeerConnected",
    "PeerDisconnected",
    "PeerEvent",
    "ProtocolNotSupported",
    "StreamEnded",
    "StreamHandler",
    "TransportError",
    "UndialableAddress",
    "Validator",
    "peer_id_of",
    "public_key_of",
]

logger = logging.getLogger(__name__)

_SHED_LOG_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class GossipMessage:
    """A gossip message that passed validation. ``author`` signed it; it may reach us
    through other peers."""

    data: bytes
    author: str


class GossipHost:
    """A libp2p host for one gossip topic and framed streams; an async context manager.

    ::

        async with GossipHost(config, validator) as host:
            await host.connect(addr)
            await host.publish(b"...")
            async for message in host.messages:
                ...

    Everything here runs in the trio task that entered the context; the host is not
    thread-safe. Messages we publish are not delivered back to us.
    """

    def __init__(self, config: HostConfig, validator: Validator) -> None:
        self._config = config
        self._validator = validator
        self._key_pair: KeyPair = ed25519_key_pair(config.identity_seed)
        self._peer_id = ID.from_pubkey(self._key_pair.public_key)
        self._messages_send, self._messages_receive = trio.open_memory_channel[GossipMessage](
            config.delivery_buffer
        )
        self._peer_events = PeerEvents(config.event_buffer)
        self._publish_lock = trio.Lock()
        self._running: AbstractAsyncContextManager[None] | None = None
        self._host: IHost | None = None
        self._pubsub: Pubsub | None = None
        self.dropped_messages = 0
        """Validated messages dropped because :attr:`messages` was full."""
        self.rejected_messages = 0
        """Messages refused for their size or by the validator (ours included)."""
        self.shutdown_timed_out = False
        self.handshakes = HandshakeBudget(config.handshakes_per_source, config.handshakes_total)
        """Inbound connections in their handshake; ``handshakes.shed`` counts refusals."""
        self.strangers: StrangerBudget[INetConn] | None = None
        """Established inbound connections of non-members, per source (:meth:`bound_strangers`)."""
        self._is_member: Callable[[str], bool] = lambda peer: False
        self._shed_send, self._shed_receive = trio.open_memory_channel[INetConn](4096)
        self._last_shed_log = -_SHED_LOG_INTERVAL
        self.unclosed_sheds = 0
        """Connections the budget refused that were left open: the queue of closes was full."""

    # -- identity and state -----------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        """Our libp2p peer id (base58), derived from the node key."""
        return self._peer_id.to_base58()

    @property
    def config(self) -> HostConfig:
        return self._config

    @property
    def messages(self) -> trio.MemoryReceiveChannel[GossipMessage]:
        """Validated messages from other peers, in arrival order."""
        return self._messages_receive

    @property
    def events(self) -> trio.MemoryReceiveChannel[PeerEvent]:
        """Peer connected / disconnected events."""
        return self._peer_events.receive

    @property
    def dropped_events(self) -> int:
        """Peer events dropped because :attr:`events` was full."""
        return self._peer_events.dropped

    public_key_of = staticmethod(public_key_of)

    def set_validator(self, validator: Validator) -> None:
        """Replace the validator; it applies to every message validated from now on."""
        self._validator = validator

    def listen_addrs(self) -> list[str]:
        """The addresses we listen on, each ending in ``/p2p/<our peer id>``."""
        return [str(addr) for addr in self._require_host().get_addrs()]

    def connected_peers(self) -> list[str]:
        """Peers we hold at least one connection to."""
        return sorted(str(peer) for peer in self._require_host().get_connected_peers())

    def gossip_peers(self) -> list[str]:
        """Connected peers that told us they subscribe to our topic."""
        peers = self._require_pubsub().peer_topics.get(self._config.topic, set())
        return sorted(str(peer) for peer in peers)

    def bound_strangers(
        self, budget: StrangerBudget[INetConn], is_member: Callable[[str], bool]
    ) -> None:
        """Bound the established inbound connections of peers that are not members.

        ``is_member`` says whether a peer id (base58) is a standing member: its connections
        are never counted nor closed. Every other upgraded inbound connection is put to
        ``budget``; what it refuses, or hands over to make room, is closed at once.
        """
        self.strangers = budget
        self._is_member = is_member

    def source_of_peer(self, peer_id: str) -> str | None:
        """The source (IPv4 address or IPv6 /64) of ``peer_id``'s inbound connection;
        None if we hold none (we dialled it, or it is gone)."""
        host = self._require_host()
        for conn in host.get_network().get_connections(parse_peer_id(peer_id)):
            source = inbound_source(conn)
            if source is not None:
                return source
        return None

    def remote_address_of(self, peer_id: str) -> str | None:
        """``ip:port`` our connection to ``peer_id`` comes from or goes to, as we see it
        (what libp2p identify reports to the peer as its observed address); None if none."""
        for conn in self._require_host().get_network().get_connections(parse_peer_id(peer_id)):
            secured = getattr(conn.muxed_conn, "secured_conn", None)
            remote = getattr(secured, "get_remote_address", lambda: None)()
            if isinstance(remote, tuple) and len(remote) >= 2:
                host = str(remote[0])
                return f"[{host}]:{remote[1]}" if ":" in host else f"{host}:{remote[1]}"
        return None

    def _stranger_connected(self, conn: INetConn) -> None:
        budget = self.strangers
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
            self.unclosed_sheds += 1
        except trio.ClosedResourceError:
            pass  # shutting down

    async def _close_shed(self) -> None:
        # Each close on its own: py-libp2p's takes 0.1 s at least (and a write to the peer),
        # and a connection holds its slots of py-libp2p's limits until its close is done.
        async with trio.open_nursery() as nursery:
            async for conn in self._shed_receive:
                nursery.start_soon(self._close_one, conn)

    async def _close_one(self, conn: INetConn) -> None:
        with trio.move_on_after(self._config.dial_timeout), contextlib.suppress(Exception):
            await conn.close()

    def _require_host(self) -> IHost:
        if self._host is None:
            raise RuntimeError("GossipHost is not running; use it as an async context manager")
        return self._host

    def _require_pubsub(self) -> Pubsub:
        if self._pubsub is None:
            raise RuntimeError("GossipHost is not running; use it as an async context manager")
        return self._pubsub

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._running is not None:
            raise RuntimeError("a GossipHost can be entered once; build a new one to restart")
        self._running = self._run()
        await self._running.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._running is not None
        return await self._running.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _run(self) -> AsyncIterator[None]:
        config = self._config
        bridge = Libp2pLogBridge.attach()
        host, gossipsub, pubsub = build_stack(
            config,
            self._key_pair,
            self._libp2p_validator,
            self._peer_events,
            self.handshakes,
        )
        host.get_network().register_notifee(_StrangerGate(self))
        self._host, self._pubsub = host, pubsub
        listen = [parse_multiaddr(a) for a in config.listen_addrs]
        body_error: BaseException | None = None
        try:
            with trio.CancelScope() as shutdown_scope:
                async with (
                    host.run(listen_addrs=listen),
                    background_trio_service(pubsub),
                    background_trio_service(gossipsub),
                ):
                    await pubsub.wait_until_ready()
                    unbound = unbound_listen_addrs(host, listen)
                    if unbound:
                        raise AddressUnavailable(
                            f"cannot listen on {', '.join(unbound)}: the address is in use or "
                            "not an address of this host",
                            hint="choose another --listen address or port",
                        )
                    await stop_auto_connector(host)
                    widen_listen_backlog(host)
                    subscription = await pubsub.subscribe(config.topic)
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._drain, subscription)
                            nursery.start_soon(self._close_shed)
                            try:
                                yield
                            except BaseException as exc:
                                body_error = exc
                                raise
                            finally:
                                nursery.cancel_scope.cancel()
                    finally:
                        # The host first (connections, listeners), then the services: the
                        # reverse order left tasks trying to start in closed nurseries.
                        # Shielded, so that closing still happens when we are cancelled.
                        deadline = trio.current_time() + config.shutdown_timeout
                        shutdown_scope.deadline = deadline
                        with trio.CancelScope(deadline=deadline, shield=True) as close_scope:
                            await close_host(host)
                        if close_scope.cancelled_caught:
                            shutdown_scope.cancel()
            if shutdown_scope.cancelled_caught:
                self.shutdown_timed_out = True
                logger.warning("gossip host shutdown exceeded %.1f s", config.shutdown_timeout)
        except BaseExceptionGroup as group:
            rest = drop_nursery_closed(group)
            if rest is None:
                return
            if body_error is not None and leaves(rest) == [body_error]:
                # Only the body failed: let its exception out as it was raised, not wrapped
                # in one group per nursery that it crossed.
                raise body_error from None
            raise rest from None
        finally:
            self._host = self._pubsub = None
            self._messages_send.close()
            self._peer_events.close()
            self._shed_send.close()
            bridge.detach()

    # -- gossip -----------------------------------------------------------------------------

    def _accepts(self, data: bytes, author: str, forwarder: str) -> bool:
        if len(data) > self._config.max_message_size:
            return False
        try:
            return bool(self._validator(data, author, forwarder))
        except Exception:  # a validator bug rejects the message instead of killing the host
            logger.exception("gossip validator raised; message rejected")
            return False

    def _libp2p_validator(self, forwarder: ID, message: rpc_pb2.Message) -> bool:
        # libp2p has verified the author's signature (StrictSign) before calling this.
        accepted = self._accepts(
            message.data, ID(message.from_id).to_base58(), forwarder.to_base58()
        )
        if not accepted:
            self.rejected_messages += 1
            logger.debug("rejected gossip message of %d bytes via %s", len(message.data), forwarder)
        return accepted

    async def publish(self, data: bytes) -> None:
        """Publish ``data`` on the topic.

        Raises :class:`MessageTooLarge` if it exceeds ``max_message_size`` and
        :class:`TransportError` if our own validator rejects it (it would not be sent).
        Publishes are serialised and wait, up to ``publish_backlog_wait``, for room in every
        peer's outbound queue; past that the message is published anyway and a slow peer may
        miss it (gossip is best effort; anti-entropy repairs it).
        """
        if len(data) > self._config.max_message_size:
            raise MessageTooLarge(
                f"message of {len(data)} bytes exceeds max_message_size "
                f"{self._config.max_message_size}"
            )
        if not self._accepts(data, self.peer_id, self.peer_id):
            self.rejected_messages += 1
            raise TransportError("our own validator rejects this message; not published")
        pubsub = self._require_pubsub()
        async with self._publish_lock:
            await wait_for_queue_room(pubsub, self._config.publish_backlog_wait)
            try:
                await pubsub.publish(self._config.topic, data)
            except LIBP2P_ERRORS as exc:
                raise TransportError(f"publish failed: {exc}") from exc

    async def _drain(self, subscription: AsyncIterable[rpc_pb2.Message]) -> None:
        # libp2p's subscription queue holds 32 messages and drops silently when full, so it
        # is emptied at once into our larger channel, which counts and logs its drops.
        own = self._peer_id.to_bytes()
        async for message in subscription:
            if message.from_id == own:
                continue
            delivered = GossipMessage(bytes(message.data), ID(message.from_id).to_base58())
            try:
                self._messages_send.send_nowait(delivered)
            except trio.WouldBlock:
                self.dropped_messages += 1
                logger.warning(
                    "gossip delivery buffer full (%d); dropped a message from %s",
                    self._config.delivery_buffer,
                    delivered.author,
                )

    # -- connections ------------------------------------------------------------------------

    async def connect(self, addr: str) -> str:
        """Dial a full multiaddr (ending in ``/p2p/<peer id>``); return the peer id.

        Raises :class:`UndialableAddress` for an address that cannot be dialled as written and
        :class:`TransportError` if the dial fails or takes longer than ``dial_timeout``.
        Every dial takes at least 250 ms in py-libp2p 0.8.1: use :meth:`connect_any` for
        several. A dial is never refused because an earlier one failed: when to try again
        is the caller's policy, not libp2p's 60 s negative cache.
        """
        try:
            info = info_from_p2p_addr(parse_multiaddr(addr))
        except Exception as exc:  # the multiaddr package raises several unrelated types
            raise UndialableAddress(f"not a dialable /p2p multiaddr: {addr!r}") from exc
        if info.peer_id == self._peer_id:
            raise UndialableAddress(f"refusing to dial ourselves: {addr}")
        host = self._require_host()
        forget_failed_dial(host, info.peer_id)
        with trio.move_on_after(self._config.dial_timeout) as scope:
            try:
                await host.connect(info)
            except LIBP2P_ERRORS as exc:
                raise TransportError(f"dialling {addr} failed: {exc}") from exc
        if scope.cancelled_caught:
            raise TransportError(f"dialling {addr} took longer than {self._config.dial_timeout} s")
        return info.peer_id.to_base58()

    async def connect_any(self, addrs: Sequence[str]) -> list[ConnectResult]:
        """Dial all ``addrs`` concurrently; one result per address, in the same order."""
        results: list[ConnectResult | None] = [None] * len(addrs)

        async def dial(index: int, addr: str) -> None:
            try:
                peer = await self.connect(addr)
            except TransportError as exc:
                results[index] = ConnectResult(addr, None, str(exc))
            else:
                results[index] = ConnectResult(addr, peer, None)

        async with trio.open_nursery() as nursery:
            for index, addr in enumerate(addrs):
                nursery.start_soon(dial, index, addr)
        return [r for r in results if r is not None]

    async def disconnect(self, peer_id: str) -> None:
        """Close every connection to ``peer_id``. Nothing re-dials it on our side."""
        host = self._require_host()
        with trio.move_on_after(self._config.dial_timeout):
            try:
                await host.disconnect(parse_peer_id(peer_id))
            except LIBP2P_ERRORS as exc:
                raise TransportError(f"disconnecting {peer_id} failed: {exc}") from exc
            return
        raise TransportError(f"disconnecting {peer_id} timed out")

    # -- streams ----------------------------------------------------------------------------

    def set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        """Serve ``protocol_id``: ``handler`` gets each inbound stream, framed.

        The stream is closed when the handler returns and reset if it raises; an exception
        from the handler is logged, never propagated into libp2p.
        """
        serve = serve_framed(
            protocol_id,
            handler,
            max_frame_size=self._config.max_frame_size,
            timeout=self._config.stream_timeout,
        )
        self._require_host().set_stream_handler(TProtocol(protocol_id), serve)

    async def open_stream(self, peer_id: str, protocol_id: str) -> FramedStream:
        """Open a framed stream to ``peer_id`` (dialling it if its address is known)."""
        host = self._require_host()
        peer = parse_peer_id(peer_id)
        timeout = self._config.stream_timeout
        with trio.move_on_after(timeout):
            try:
                stream = await host.new_stream(peer, [TProtocol(protocol_id)])
            except LIBP2P_ERRORS as exc:
                if refused_protocol(exc):
                    raise ProtocolNotSupported(
                        f"{peer_id} does not serve {protocol_id} (yet)"
                    ) from exc
                raise TransportError(f"opening {protocol_id} to {peer_id} failed: {exc}") from exc
            return FramedStream(stream, max_frame_size=self._config.max_frame_size, timeout=timeout)
        raise FrameTimeout(f"opening {protocol_id} to {peer_id} took longer than {timeout} s")


class ProtocolNotSupported(TransportError):
    """The peer answered that it does not serve the protocol asked for: not a fault of the
    connection (a member that has just enrolled serves sync only once its daemon runs)."""


def refused_protocol(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is multistream-select's "protocols not
    supported": the peer said ``na`` to every protocol offered."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, MultiselectClientError) and "not supported" in str(seen):
            return True
        seen = seen.__cause__
    return False


def inbound_source(conn: INetConn) -> str | None:
    """The source (:func:`source_of`) of an inbound connection; None for an outbound one."""
    if getattr(conn, "direction", None) != Direction.INBOUND:
        return None
    secured = getattr(conn.muxed_conn, "secured_conn", None)
    remote = getattr(secured, "get_remote_address", lambda: None)()
    if not isinstance(remote, tuple) or not remote:
        return "unknown"
    return source_of(str(remote[0]))


class _StrangerGate(ConnectionNotifee):
    """Puts each established connection to the host's :class:`StrangerBudget`."""

    def __init__(self, host: GossipHost) -> None:
        self._host = host

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._host._stranger_connected(conn)
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        if self._host.strangers is not None:
            self._host.strangers.release(conn)
        await trio.lowlevel.checkpoint()
