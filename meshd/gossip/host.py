"""The libp2p transport shell: :class:`GossipHost`, one gossipsub topic plus framed streams.

A host is built for one job: TCP, Noise and Yamux only, with the node's Ed25519 key as its
libp2p identity (so a peer id names a member key); gossipsub on one topic, messages signed by
their author and checked by one synchronous validator owned by the caller (a rejected
message is neither delivered nor forwarded; the size limit is checked first); framed
streams for protocols such as anti-entropy sync. This module builds, starts and stops the
host (:meth:`GossipHost._run`) and is its public API; its parts, all importable from here:

* :mod:`meshd.gossip.config`: :class:`HostConfig`, the :data:`Validator` type;
* :mod:`meshd.gossip.stack`: the libp2p stack, i.e. what can be negotiated on the wire;
* :mod:`meshd.gossip.delivery`: publishing and delivery on the topic, :class:`GossipMessage`;
* :mod:`meshd.gossip.dialling`: dialling, disconnecting, opening streams,
  :class:`ProtocolNotSupported`;
* :mod:`meshd.gossip.strangers`: the bound on non-members' established inbound connections;
* :mod:`meshd.gossip.peers`: peer ids and member keys, dial results, peer events;
* :mod:`meshd.gossip.streams`: :class:`FramedStream` and the transport's errors;
* :mod:`meshd.gossip.libp2p_workarounds`: what works around py-libp2p 0.8.1, and what to
  re-check when upgrading it (the router, the inbound gate, connections, shutdown, logs).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Self

import trio

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.abc import IHost, INetConn
from libp2p.crypto.ed25519 import create_new_key_pair as ed25519_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from meshd.errors import AddressUnavailable
from meshd.gossip import dialling
from meshd.gossip.admission import StrangerBudget
from meshd.gossip.config import HostConfig, Validator, parse_multiaddr
from meshd.gossip.delivery import GossipMessage, TopicDelivery
from meshd.gossip.dial_order import IPNetwork
from meshd.gossip.dialling import ProtocolNotSupported
from meshd.gossip.libp2p_workarounds.connections import (
    stop_auto_connector,
    unbound_listen_addrs,
    widen_listen_backlog,
)
from meshd.gossip.libp2p_workarounds.inbound import HandshakeBudget
from meshd.gossip.libp2p_workarounds.logs import FORWARDED_LOGGER, LIBP2P_LOGGER, Libp2pLogBridge
from meshd.gossip.libp2p_workarounds.peerstore import FORGET_INTERVAL, forget_gone_peers
from meshd.gossip.libp2p_workarounds.shutdown import close_host, drop_nursery_closed, leaves
from meshd.gossip.libp2p_workarounds.stream_cap import StreamCap
from meshd.gossip.names import NamedAddr, named_addr
from meshd.gossip.peers import (
    ConnectResult,
    DialBackoff,
    PeerConnected,
    PeerDisconnected,
    PeerEvent,
    PeerEvents,
    peer_id_of,
    public_key_of,
)
from meshd.gossip.stack import build_stack
from meshd.gossip.strangers import StrangerGate
from meshd.gossip.streams import (
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
        self._key_pair: KeyPair = ed25519_key_pair(config.identity_seed)
        self._peer_id = ID.from_pubkey(self._key_pair.public_key)
        self._delivery = TopicDelivery(config, validator, self._peer_id)
        self._peer_events = PeerEvents(config.event_buffer)
        self._running: AbstractAsyncContextManager[None] | None = None
        self._host: IHost | None = None
        self._pubsub: Pubsub | None = None
        self.shutdown_timed_out = False
        self.handshakes = HandshakeBudget(config.handshakes_per_source, config.handshakes_total)
        """Inbound connections in their handshake; ``handshakes.shed`` counts refusals."""
        self.streams = StreamCap()
        """Streams a remote holds open on one connection; ``streams.refused`` counts resets."""
        self._strangers = StrangerGate(config.dial_timeout)
        # How the names of /dns multiaddrs are looked up (the host's resolver, bounded).
        self.lookups = dialling.Lookups()

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
        return self._delivery.receive

    @property
    def events(self) -> trio.MemoryReceiveChannel[PeerEvent]:
        """Peer connected / disconnected events."""
        return self._peer_events.receive

    @property
    def dropped_events(self) -> int:
        """Peer events dropped because :attr:`events` was full."""
        return self._peer_events.dropped

    @property
    def dropped_messages(self) -> int:
        """Validated messages dropped because :attr:`messages` was full."""
        return self._delivery.dropped

    @property
    def rejected_messages(self) -> int:
        """Messages refused for their size or by the validator (ours included)."""
        return self._delivery.rejected

    @property
    def strangers(self) -> StrangerBudget[INetConn] | None:
        """Established inbound connections of non-members, per source (:meth:`bound_strangers`)."""
        return self._strangers.budget

    @property
    def unclosed_sheds(self) -> int:
        """Connections the budget refused that were left open: the queue of closes was full."""
        return self._strangers.unclosed

    public_key_of = staticmethod(public_key_of)

    def set_validator(self, validator: Validator) -> None:
        """Replace the validator; it applies to every message validated from now on."""
        self._delivery.validator = validator

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
        self._strangers.bound(budget, is_member)

    async def _forget_gone_peers(self, host: IHost, router: object) -> None:
        """Every :data:`FORGET_INTERVAL` s, once strangers are bounded: what libp2p keeps of
        the peers that are gone and no members, forgotten (``forget_gone_peers``)."""
        while True:
            await trio.sleep(FORGET_INTERVAL)
            if self._strangers.budget is not None:
                forget_gone_peers(host, self._strangers.is_member, router)

    def source_of_peer(self, peer_id: str) -> str | None:
        """The source (IPv4 address or IPv6 /64) of ``peer_id``'s inbound connection;
        None if we hold none (we dialled it, or it is gone)."""
        return dialling.source_of_peer(self._require_host(), peer_id)

    def remote_address_of(self, peer_id: str) -> str | None:
        """``ip:port`` our connection to ``peer_id`` comes from or goes to, as we see it
        (what libp2p identify reports to the peer as its observed address); None if none."""
        return dialling.remote_address_of(self._require_host(), peer_id)

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
            self._delivery.libp2p_validator,
            self._peer_events,
            self.handshakes,
            self.streams,
        )
        host.get_network().register_notifee(self._strangers)
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
                            nursery.start_soon(self._delivery.drain, subscription)
                            nursery.start_soon(self._strangers.close_shed)
                            nursery.start_soon(self._forget_gone_peers, host, gossipsub)
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
            self._delivery.close()
            self._peer_events.close()
            self._strangers.close()
            bridge.detach()

    # -- gossip -----------------------------------------------------------------------------

    async def publish(self, data: bytes) -> None:
        """Publish ``data`` on the topic.

        Raises :class:`MessageTooLarge` if it exceeds ``max_message_size`` and
        :class:`TransportError` if our own validator rejects it (it would not be sent).
        Publishes are serialised and wait, up to ``publish_backlog_wait``, for room in every
        peer's outbound queue; past that the message is published anyway and a slow peer may
        miss it (gossip is best effort; anti-entropy repairs it).
        """
        await self._delivery.publish(data, self._require_pubsub)

    # -- connections ------------------------------------------------------------------------

    async def connect(self, addr: str, within: float | None = None) -> str:
        """Dial a full multiaddr (ending in ``/p2p/<peer id>``); return the peer id.

        Raises :class:`UndialableAddress` for an address that cannot be dialled as written and
        :class:`TransportError` if the dial fails or takes longer than ``within`` seconds
        (None: ``dial_timeout``; a name's addresses each within ``dial_timeout``).
        Every dial takes at least 250 ms in py-libp2p 0.8.1: use :meth:`connect_any` for
        several. A dial is never refused because an earlier one failed: when to try again
        is the caller's policy, not libp2p's 60 s negative cache.
        """
        try:
            named = named_addr(addr)
        except ValueError as exc:
            raise UndialableAddress(f"not a dialable multiaddr: {addr[:200]!r} ({exc})") from None
        if named is not None:
            return await self._connect_named(named)
        info = dialling.dial_target(addr, self._peer_id)
        timeout = self._config.dial_timeout if within is None else within
        return await dialling.dial(self._require_host(), info, addr, timeout)

    async def _connect_named(self, named: NamedAddr) -> str:
        """Dial what ``named``'s name resolves to now (looked up within ``dial_timeout``):
        its addresses in the resolver's order, one after another, each within
        ``dial_timeout``; the peer id of the first that answers. One at a time because
        py-libp2p dials one address of a peer at a time: dials begun together wait for the
        first, and an address that never answers held up the others for its whole timeout
        (docs/nat.md)."""
        timeout = self._config.dial_timeout
        addrs = await dialling.resolve(named, timeout, self.lookups)
        errors: list[str] = []
        for addr in addrs:
            try:
                return await self.connect(addr)
            except TransportError as exc:
                errors.append(str(exc))
        raise TransportError(
            f"{named.name} resolved to {len(addrs)} address(es): " + "; ".join(errors)
        )

    async def connect_any(
        self, addrs: Sequence[str], on_link: Sequence[IPNetwork] = ()
    ) -> list[ConnectResult]:
        """Dial ``addrs``: different peers at once, one peer's addresses one after another
        until one answers, those on a network of ours (``on_link``: the networks our
        interface addresses are on) first, and of a peer's others, those that accept a TCP
        connection before those silent (:func:`dialling.dial_all`); one result per address,
        in the same order."""
        return await dialling.dial_all(self.connect, addrs, on_link, dialling.tcp_probe)

    async def disconnect(self, peer_id: str) -> None:
        """Close every connection to ``peer_id``. Nothing re-dials it on our side."""
        await dialling.disconnect(self._require_host(), peer_id, self._config.dial_timeout)

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
        """Open a framed stream to ``peer_id`` (dialling it if its address is known).

        Raises :class:`ProtocolNotSupported` if the peer does not serve ``protocol_id``,
        :class:`TransportError` if opening fails otherwise and :class:`FrameTimeout` if it
        takes longer than ``stream_timeout``.
        """
        config = self._config
        return await dialling.open_framed(
            self._require_host(),
            peer_id,
            protocol_id,
            max_frame_size=config.max_frame_size,
            stream_timeout=config.stream_timeout,
        )
