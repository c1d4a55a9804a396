"""Peers of the gossip host: peer ids and member keys, dial results, connection events.

A peer id embeds the member's Ed25519 public key (identity multihash), so
:func:`public_key_of` and :func:`peer_id_of` map between the two without a lookup.
:class:`PeerEvents` turns libp2p's per-connection callbacks into one :class:`PeerConnected`
and one :class:`PeerDisconnected` per peer, on a bounded trio channel. :class:`DialBackoff`
(re-exported from the pure :mod:`meshd.gossip.backoff`) is when to try a peer again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final

import multiaddr
import trio

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.peer.id import ID

from meshd.errors import DecodeError
from meshd.gossip.backoff import DialBackoff
from meshd.gossip.bug_log import QuietLog

__all__ = [
    "ConnectResult",
    "DialBackoff",
    "PeerConnected",
    "PeerDisconnected",
    "PeerEvent",
    "PeerEvents",
    "parse_peer_id",
    "peer_id_of",
    "public_key_of",
]

logger = logging.getLogger(__name__)

_ED25519_KEY_SIZE: Final = 32


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


def parse_peer_id(peer_id: str) -> ID:
    """Parse a base58 peer id; :class:`DecodeError` if it is not one."""
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
    key = parse_peer_id(peer_id).extract_public_key()
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


class ConnectionNotifee(INotifee):
    """A libp2p notifee that cares for connections only: every callback does nothing
    until a subclass overrides it (libp2p calls all six)."""

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        await trio.lowlevel.checkpoint()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        await trio.lowlevel.checkpoint()

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        await trio.lowlevel.checkpoint()


class PeerEvents(ConnectionNotifee):
    """Turns libp2p's per-connection callbacks into per-peer up/down events.

    Register it on the host's network; read the events from :attr:`receive`. An event that
    finds the channel full is dropped, counted in :attr:`dropped` and logged.
    """

    def __init__(self, buffer: int) -> None:
        self._send, self.receive = trio.open_memory_channel[PeerEvent](buffer)
        self._connected: set[str] = set()
        self.dropped = 0
        self._quiet = QuietLog(logger, clock=time.monotonic)

    def close(self) -> None:
        """No more events; readers of :attr:`receive` see the end of the channel."""
        self._send.close()

    def _emit(self, event: PeerEvent) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
            self._quiet.log(logging.WARNING, "peer event buffer full; dropped %s", event)
        except trio.ClosedResourceError:
            pass  # shutting down

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer = str(conn.muxed_conn.peer_id)
        if peer not in self._connected:
            self._connected.add(peer)
            self._emit(PeerConnected(peer))
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        live = [c for c in network.get_connections(peer) if not c.is_closed]
        if not live and str(peer) in self._connected:
            self._connected.discard(str(peer))
            self._emit(PeerDisconnected(str(peer)))
        await trio.lowlevel.checkpoint()
