"""What the daemon's services need of the gossip transport.

:class:`meshd.gossip.host.GossipHost` (libp2p) is the real one; tests plug in an in-memory one
(tests/daemon/fake_transport.py) to run the services' wiring without libp2p. Peers are named
by their peer id; a peer id names an Ed25519 key (:func:`key_of`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from meshd.errors import DecodeError
from meshd.gossip.dial_order import IPNetwork
from meshd.gossip.peers import ConnectResult, PeerEvent, public_key_of
from meshd.gossip.streams import FramedStream

StreamHandler = Callable[[FramedStream], Awaitable[None]]


class Transport(Protocol):
    @property
    def peer_id(self) -> str: ...

    @property
    def events(self) -> Any: ...  # an async iterable of PeerEvent

    @property
    def messages(self) -> Any: ...  # an async iterable of delivered messages

    def listen_addrs(self) -> list[str]: ...

    def connected_peers(self) -> list[str]: ...

    def source_of_peer(self, peer_id: str) -> str | None: ...

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None: ...

    async def open_stream(self, peer_id: str, protocol: str) -> FramedStream: ...

    async def publish(self, data: bytes) -> None: ...

    async def disconnect(self, peer_id: str) -> None: ...

    async def connect_any(
        self, addrs: Sequence[str], on_link: Sequence[IPNetwork] = ()
    ) -> list[ConnectResult]: ...


@functools.lru_cache(maxsize=1024)
def key_of(peer: str) -> bytes | None:
    """The Ed25519 key a peer id names; None if it names none. Cached (a pure function of
    the id): the connections pass asks it for every connected peer every second, and each
    answer decodes base58 and a protobuf key."""
    try:
        return public_key_of(peer)
    except DecodeError:
        return None


__all__ = ["PeerEvent", "StreamHandler", "Transport", "key_of"]
