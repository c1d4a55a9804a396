"""The libp2p transport shell: one gossipsub topic plus framed request/response streams.

This is the only module of meshd that imports libp2p. It owns a py-libp2p host built for
one job and nothing else:

* TCP only, Noise only (plaintext, secio and TLS are never offered, so they can never be
  negotiated), Yamux only. The node's Ed25519 membership key is its libp2p identity, so a
  peer id names a member key and :func:`public_key_of` recovers the key from it.
* gossipsub on one topic, messages signed by their author (libp2p StrictSign), with one
  synchronous validator owned by the caller. A message the validator rejects is neither
  delivered here nor forwarded. The size limit is checked before the validator runs.
* framed streams (:mod:`meshd.gossip.framing`) for protocols such as anti-entropy sync.

It also works around the measured pitfalls of py-libp2p 0.8.1 (see docs/gossip.md,
"Transport"): the publish sequence number is seeded from ``time.time_ns()`` so a restarted
host is not taken for a replay; publishes wait for room in the 32-slot per-peer queues and
the subscription is drained into a larger buffer that counts what it drops; shutdown closes
the host before its services, under a deadline, and contains the "Nursery is closed to new
arrivals" error that libp2p raises when torn down under load; libp2p's warnings, which it
keeps off the root logger, are forwarded to ``meshd.gossip.libp2p``.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.crypto.ed25519 import create_new_key_pair as ed25519_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.config import ConnectionConfig
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub import gossipsub as libp2p_gossipsub
from libp2p.pubsub import pubsub as libp2p_pubsub
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.utils import maybe_consume_signed_record
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream
from libp2p.tools.anyio_service import background_trio_service
from libp2p.transport.tcp.tcp import TCP

from meshd.errors import DecodeError, MeshdError
from meshd.gossip.framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frame

__all__ = [
    "ConnectResult",
    "FrameTimeout",
    "FramedStream",
    "GossipHost",
    "GossipMessage",
    "HostConfig",
    "PeerConnected",
    "PeerDisconnected",
    "PeerEvent",
    "StreamEnded",
    "StreamHandler",
    "TransportError",
    "Validator",
    "peer_id_of",
    "public_key_of",
]

logger = logging.getLogger(__name__)

LIBP2P_LOGGER: Final = "libp2p"
"""py-libp2p's root logger; it does not propagate to ours."""

FORWARDED_LOGGER: Final = "meshd.gossip.libp2p"
"""Where libp2p's records of level WARNING and above are re-logged."""

_NURSERY_CLOSED: Final = "Nursery is closed to new arrivals"
_READ_CHUNK: Final = 64 * 1024
_ED25519_KEY_SIZE: Final = 32
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

Validator = Callable[[bytes, str], bool]
"""``validator(payload, author_peer_id) -> accept``; synchronous, must not block."""


class TransportError(MeshdError):
    """A dial, stream or publish failed in the libp2p transport."""


class FrameTimeout(TransportError):
    """A frame was not sent or received within the stream's timeout."""


class StreamEnded(TransportError):
    """The remote closed the stream cleanly, between two frames."""


@dataclass(frozen=True, slots=True)
class HostConfig:
    """Everything a :class:`GossipHost` is built from.

    ``identity_seed`` is the 32-byte Ed25519 seed of the node key; the same key is the libp2p
    identity. The gossipsub degrees are those of the gossipsub spec (D, D_lo, D_hi).
    """

    identity_seed: bytes
    listen_addrs: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    topic: str = "/meshd/membership/1"
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    heartbeat_interval: int = 1
    max_message_size: int = 64 * 1024
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    stream_timeout: float = 10.0
    dial_timeout: float = 10.0
    publish_backlog_wait: float = 2.0
    delivery_buffer: int = 1024
    event_buffer: int = 256
    shutdown_timeout: float = 5.0

    def __post_init__(self) -> None:
        if len(self.identity_seed) != _ED25519_KEY_SIZE:
            raise ValueError(f"identity_seed must be 32 bytes, got {len(self.identity_seed)}")
        if not self.topic:
            raise ValueError("topic must not be empty")
        if not 1 <= self.degree_low <= self.degree <= self.degree_high:
            raise ValueError("gossipsub degrees need 1 <= degree_low <= degree <= degree_high")
        if self.heartbeat_interval < 1:
            raise ValueError("heartbeat_interval must be at least 1 second")
        for name in ("max_message_size", "max_frame_size", "delivery_buffer", "event_buffer"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        for name in ("stream_timeout", "dial_timeout", "publish_backlog_wait", "shutdown_timeout"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds")
        for addr in self.listen_addrs:
            protocols = [p.name for p in _parse_multiaddr(addr).protocols()]
            if protocols[:1] not in (["ip4"], ["ip6"]) or protocols[1:] != ["tcp"]:
                raise ValueError(f"listen address must be /ip4|ip6/<addr>/tcp/<port>: {addr}")


@dataclass(frozen=True, slots=True)
class GossipMessage:
    """A gossip message that passed validation. ``author`` signed it; it may reach us
    through other peers."""

    data: bytes
    author: str


@dataclass(frozen=True, slots=True)
class PeerConnected:
    """The first connection to ``peer_id`` is up."""

    peer_id: str


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    """The last connection to ``peer_id`` is gone."""

    peer_id: str


PeerEvent = PeerConnected | PeerDisconnected


@dataclass(frozen=True, slots=True)
class ConnectResult:
    """The outcome of one dial of :meth:`GossipHost.connect_any`."""

    addr: str
    peer_id: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def _parse_multiaddr(addr: str) -> multiaddr.Multiaddr:
    try:
        return multiaddr.Multiaddr(addr)
    except Exception as exc:  # the multiaddr package raises several unrelated types
        raise ValueError(f"not a multiaddr: {addr!r}") from exc


def _parse_peer_id(peer_id: str) -> ID:
    try:
        parsed = ID.from_base58(peer_id)
    except ValueError as exc:
        raise DecodeError(f"not a base58 peer id: {peer_id!r}") from exc
    if not parsed.to_bytes():
        raise DecodeError("empty peer id")
    return parsed


def public_key_of(peer_id: str) -> bytes:
    """Return the raw 32-byte Ed25519 public key that ``peer_id`` embeds.

    Use it to check that a remote peer is the member it claims to be: the Noise handshake
    proved the remote holds the private key of its peer id. Raises :class:`DecodeError`
    for anything that is not an identity-multihash Ed25519 peer id.
    """
    key = _parse_peer_id(peer_id).extract_public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise DecodeError(f"peer id does not embed an Ed25519 key: {peer_id!r}")
    raw = key.to_bytes()
    if len(raw) != _ED25519_KEY_SIZE:
        raise DecodeError(f"peer id embeds a {len(raw)}-byte key: {peer_id!r}")
    return raw


def peer_id_of(public_key: bytes) -> str:
    """Return the libp2p peer id of a raw 32-byte Ed25519 public key."""
    if len(public_key) != _ED25519_KEY_SIZE:
        raise ValueError(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key)).to_base58()


class _Libp2pLogBridge(logging.Handler):
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
    def attach(cls) -> _Libp2pLogBridge:
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


# Both modules imported the function by name: replace it where it is looked up.
libp2p_pubsub.maybe_consume_signed_record = _consume_signed_record_once  # type: ignore[attr-defined]
libp2p_gossipsub.maybe_consume_signed_record = _consume_signed_record_once  # type: ignore[attr-defined]


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


YamuxStream._auto_tune_and_send_window_update = _release_window_at_half  # type: ignore[method-assign]


class _PeerNotifee(INotifee):
    """Turns libp2p's per-connection callbacks into per-peer up/down events."""

    def __init__(self, owner: GossipHost) -> None:
        self._owner = owner

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._owner._on_connected(str(conn.muxed_conn.peer_id))
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        live = [c for c in network.get_connections(peer) if not c.is_closed]
        if not live:
            self._owner._on_disconnected(str(peer))
        await trio.lowlevel.checkpoint()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        await trio.lowlevel.checkpoint()

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        await trio.lowlevel.checkpoint()


_LIBP2P_ERRORS: Final = (
    BaseLibp2pError,
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


class FramedStream:
    """One libp2p stream carrying length-prefixed frames, with a size limit and a timeout."""

    def __init__(self, stream: INetStream, *, max_frame_size: int, timeout: float) -> None:
        self._stream = stream
        self._max_frame_size = max_frame_size
        self._timeout = timeout
        self._decoder = FrameDecoder(max_frame_size)
        self._ready: deque[bytes] = deque()
        self._eof = False

    @property
    def remote_peer_id(self) -> str:
        """The peer at the other end, authenticated by the Noise handshake."""
        return str(self._stream.muxed_conn.peer_id)

    @property
    def protocol_id(self) -> str:
        return str(self._stream.get_protocol())

    async def send_frame(self, payload: bytes) -> None:
        """Send one frame. ``ValueError`` if it is larger than the frame limit."""
        frame = encode_frame(payload, max_frame_size=self._max_frame_size)
        with trio.move_on_after(self._timeout) as scope:
            try:
                await self._stream.write(frame)
            except _LIBP2P_ERRORS as exc:
                raise TransportError(f"stream write failed: {exc}") from exc
        if scope.cancelled_caught:
            raise FrameTimeout(f"sending a frame took longer than {self._timeout} s")

    async def receive_frame(self) -> bytes:
        """Receive one frame.

        Raises :class:`DecodeError` for an oversized or truncated frame (the stream is then
        reset), :class:`StreamEnded` if the remote closed between frames,
        :class:`FrameTimeout` if no whole frame arrives within the timeout and
        :class:`TransportError` if the stream fails.
        """
        with trio.move_on_after(self._timeout):
            return await self._receive_frame()
        raise FrameTimeout(f"no frame within {self._timeout} s")

    async def _receive_frame(self) -> bytes:
        while not self._ready:
            if self._eof:
                raise StreamEnded("stream closed by the remote")
            try:
                data = await self._stream.read(_READ_CHUNK)
            except StreamEOF:
                data = b""
            except _LIBP2P_ERRORS as exc:
                raise TransportError(f"stream read failed: {exc}") from exc
            try:
                if data:
                    self._ready.extend(self._decoder.feed_untrusted(data))
                else:
                    self._eof = True
                    self._decoder.end_untrusted()
            except DecodeError:
                await self.reset()
                raise
        return self._ready.popleft()

    async def close(self) -> None:
        """Close our side; the remote reads end of stream after our last frame."""
        with trio.move_on_after(self._timeout):
            try:
                await self._stream.close()
            except _LIBP2P_ERRORS as exc:
                logger.debug("closing stream to %s: %s", self.remote_peer_id, exc)

    async def reset(self) -> None:
        """Abort the stream in both directions."""
        with trio.move_on_after(self._timeout):
            try:
                await self._stream.reset()
            except _LIBP2P_ERRORS as exc:
                logger.debug("resetting stream to %s: %s", self.remote_peer_id, exc)


StreamHandler = Callable[[FramedStream], Awaitable[None]]


def _drop_nursery_closed(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """Remove libp2p's shutdown-race RuntimeErrors from ``group``; return what is left."""
    matched, rest = group.split(lambda e: isinstance(e, RuntimeError) and _NURSERY_CLOSED in str(e))
    if matched is not None:
        logger.debug("contained libp2p shutdown race: %s", _NURSERY_CLOSED)
    return rest


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


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
        self._events_send, self._events_receive = trio.open_memory_channel[PeerEvent](
            config.event_buffer
        )
        self._connected: set[str] = set()
        self._publish_lock = trio.Lock()
        self._running: AbstractAsyncContextManager[None] | None = None
        self._host: IHost | None = None
        self._pubsub: Pubsub | None = None
        self.dropped_messages = 0
        """Validated messages dropped because :attr:`messages` was full."""
        self.dropped_events = 0
        """Peer events dropped because :attr:`events` was full."""
        self.rejected_messages = 0
        """Messages refused for their size or by the validator (ours included)."""
        self.shutdown_timed_out = False

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
        return self._events_receive

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

    def _build(self) -> tuple[IHost, GossipSub, Pubsub]:
        config = self._config
        noise = NoiseTransport(self._key_pair, noise_privkey=x25519_key_pair().private_key)
        host = new_host(
            key_pair=self._key_pair,
            sec_opt={NOISE_PROTOCOL_ID: noise},
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            listen_addrs=[_parse_multiaddr(a) for a in config.listen_addrs],
            transports=[TCP()],
            connection_config=ConnectionConfig(
                min_connections=0, low_watermark=0, dial_timeout=config.dial_timeout
            ),
        )
        gossipsub = GossipSub(
            # meshsub 1.1 only: 1.2 adds IDONTWANT, which py-libp2p sends to every mesh peer
            # for every message it forwards, whatever its size. Our records are a few hundred
            # bytes: that doubled the RPCs per message and saved no bandwidth.
            protocols=[PROTOCOL_ID_V11],
            degree=config.degree,
            degree_low=config.degree_low,
            degree_high=config.degree_high,
            heartbeat_interval=config.heartbeat_interval,
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
        pubsub = Pubsub(
            host,
            gossipsub,
            strict_signing=True,
            max_inbound_rpc_size=max(1024 * 1024, 2 * config.max_message_size + 64 * 1024),
        )
        # libp2p seeds the sequence number with int(time.time()) and counts up by one per
        # message: a host restarted within seconds reuses numbers its peers have already
        # seen and its messages are dropped as duplicates (or as equivocation). Nanoseconds
        # move on faster than any host can publish.
        pubsub.counter = time.time_ns()
        pubsub.set_topic_validator(config.topic, self._libp2p_validator, is_async_validator=False)
        host.get_network().register_notifee(_PeerNotifee(self))
        return host, gossipsub, pubsub

    @asynccontextmanager
    async def _run(self) -> AsyncIterator[None]:
        config = self._config
        bridge = _Libp2pLogBridge.attach()
        host, gossipsub, pubsub = self._build()
        self._host, self._pubsub = host, pubsub
        listen = [_parse_multiaddr(a) for a in config.listen_addrs]
        body_error: BaseException | None = None
        try:
            with trio.CancelScope() as shutdown_scope:
                async with (
                    host.run(listen_addrs=listen),
                    background_trio_service(pubsub),
                    background_trio_service(gossipsub),
                ):
                    await pubsub.wait_until_ready()
                    await self._stop_auto_connector(host)
                    subscription = await pubsub.subscribe(config.topic)
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._drain, subscription)
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
                            await self._close_host(host)
                        if close_scope.cancelled_caught:
                            shutdown_scope.cancel()
            if shutdown_scope.cancelled_caught:
                self.shutdown_timed_out = True
                logger.warning("gossip host shutdown exceeded %.1f s", config.shutdown_timeout)
        except BaseExceptionGroup as group:
            rest = _drop_nursery_closed(group)
            if rest is None:
                return
            if body_error is not None and _leaves(rest) == [body_error]:
                # Only the body failed: let its exception out as it was raised, not wrapped
                # in one group per nursery that it crossed.
                raise body_error from None
            raise rest from None
        finally:
            self._host = self._pubsub = None
            self._messages_send.close()
            self._events_send.close()
            bridge.detach()

    async def _stop_auto_connector(self, host: IHost) -> None:
        # py-libp2p's auto-connector dials peers from the peerstore (which fills from the
        # signed records riding on every gossip RPC) until it holds ~100 connections, and
        # watermarks cannot turn it off. Which peers we connect to is the membership
        # layer's decision: a member we disconnect, revoked say, must stay disconnected.
        connector = getattr(host.get_network(), "auto_connector", None)
        if isinstance(connector, AutoConnector):
            await connector.stop()

    async def _close_host(self, host: IHost) -> None:
        try:
            await host.close()
        except RuntimeError as exc:
            if _NURSERY_CLOSED not in str(exc):
                raise
            logger.debug("contained libp2p shutdown race in host.close(): %s", exc)

    # -- gossip -----------------------------------------------------------------------------

    def _accepts(self, data: bytes, author: str) -> bool:
        if len(data) > self._config.max_message_size:
            return False
        try:
            return bool(self._validator(data, author))
        except Exception:  # a validator bug rejects the message instead of killing the host
            logger.exception("gossip validator raised; message rejected")
            return False

    def _libp2p_validator(self, forwarder: ID, message: rpc_pb2.Message) -> bool:
        # libp2p has verified the author's signature (StrictSign) before calling this.
        accepted = self._accepts(message.data, ID(message.from_id).to_base58())
        if not accepted:
            self.rejected_messages += 1
            logger.debug("rejected gossip message of %d bytes via %s", len(message.data), forwarder)
        return accepted

    async def publish(self, data: bytes) -> None:
        """Publish ``data`` on the topic.

        Raises ``ValueError`` if it exceeds ``max_message_size`` and :class:`TransportError`
        if our own validator rejects it (it would not be sent). Publishes are serialised and
        wait, up to ``publish_backlog_wait``, for room in every peer's outbound queue; past
        that the message is published anyway and a slow peer may miss it (gossip is best
        effort; anti-entropy repairs it).
        """
        if len(data) > self._config.max_message_size:
            raise ValueError(
                f"message of {len(data)} bytes exceeds max_message_size "
                f"{self._config.max_message_size}"
            )
        if not self._accepts(data, self.peer_id):
            self.rejected_messages += 1
            raise TransportError("our own validator rejects this message; not published")
        pubsub = self._require_pubsub()
        async with self._publish_lock:
            await self._wait_for_queue_room(pubsub)
            try:
                await pubsub.publish(self._config.topic, data)
            except _LIBP2P_ERRORS as exc:
                raise TransportError(f"publish failed: {exc}") from exc

    async def _wait_for_queue_room(self, pubsub: Pubsub) -> None:
        with trio.move_on_after(self._config.publish_backlog_wait):
            # Polling: libp2p's RpcQueue signals pushes but not pops.
            while any(len(q) > _QUEUE_HEADROOM for q in pubsub.peer_queues.values()):  # noqa: ASYNC110
                await trio.sleep(_QUEUE_POLL)
            return
        slow = [str(p) for p, q in pubsub.peer_queues.items() if len(q) > _QUEUE_HEADROOM]
        logger.warning("publishing despite a gossip backlog towards %s", ", ".join(slow))

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

    def _emit(self, event: PeerEvent) -> None:
        try:
            self._events_send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped_events += 1
            logger.warning("peer event buffer full; dropped %s", event)
        except trio.ClosedResourceError:
            pass  # shutting down

    def _on_connected(self, peer_id: str) -> None:
        if peer_id not in self._connected:
            self._connected.add(peer_id)
            self._emit(PeerConnected(peer_id))

    def _on_disconnected(self, peer_id: str) -> None:
        if peer_id in self._connected:
            self._connected.discard(peer_id)
            self._emit(PeerDisconnected(peer_id))

    async def connect(self, addr: str) -> str:
        """Dial a full multiaddr (ending in ``/p2p/<peer id>``); return the peer id.

        Raises ``ValueError`` for an address that cannot be dialled as written and
        :class:`TransportError` if the dial fails or takes longer than ``dial_timeout``.
        Every dial takes at least 250 ms in py-libp2p 0.8.1: use :meth:`connect_any` for
        several.
        """
        try:
            info = info_from_p2p_addr(_parse_multiaddr(addr))
        except ValueError:
            raise
        except Exception as exc:  # the multiaddr package raises several unrelated types
            raise ValueError(f"not a dialable /p2p multiaddr: {addr!r}") from exc
        if info.peer_id == self._peer_id:
            raise ValueError(f"refusing to dial ourselves: {addr}")
        host = self._require_host()
        with trio.move_on_after(self._config.dial_timeout) as scope:
            try:
                await host.connect(info)
            except _LIBP2P_ERRORS as exc:
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
            except (ValueError, TransportError) as exc:
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
                await host.disconnect(_parse_peer_id(peer_id))
            except _LIBP2P_ERRORS as exc:
                raise TransportError(f"disconnecting {peer_id} failed: {exc}") from exc
            return
        raise TransportError(f"disconnecting {peer_id} timed out")

    # -- streams ----------------------------------------------------------------------------

    def set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        """Serve ``protocol_id``: ``handler`` gets each inbound stream, framed.

        The stream is closed when the handler returns and reset if it raises; an exception
        from the handler is logged, never propagated into libp2p.
        """
        config = self._config

        async def serve(stream: INetStream) -> None:
            framed = FramedStream(
                stream, max_frame_size=config.max_frame_size, timeout=config.stream_timeout
            )
            try:
                await handler(framed)
            except MeshdError as exc:
                logger.info("%s stream from %s failed: %s", protocol_id, framed.remote_peer_id, exc)
                await framed.reset()
            except Exception:
                logger.exception("%s handler raised", protocol_id)
                await framed.reset()
            else:
                await framed.close()

        self._require_host().set_stream_handler(TProtocol(protocol_id), serve)

    async def open_stream(self, peer_id: str, protocol_id: str) -> FramedStream:
        """Open a framed stream to ``peer_id`` (dialling it if its address is known)."""
        host = self._require_host()
        peer = _parse_peer_id(peer_id)
        timeout = self._config.stream_timeout
        with trio.move_on_after(timeout):
            try:
                stream = await host.new_stream(peer, [TProtocol(protocol_id)])
            except _LIBP2P_ERRORS as exc:
                raise TransportError(f"opening {protocol_id} to {peer_id} failed: {exc}") from exc
            return FramedStream(stream, max_frame_size=self._config.max_frame_size, timeout=timeout)
        raise FrameTimeout(f"opening {protocol_id} to {peer_id} took longer than {timeout} s")
