"""An in-memory gossip transport for the daemon's services: no libp2p, no sockets.

It holds what a test needs of :class:`meshd.daemon.transport.Transport`: ``deliver`` hands a
message to the daemon's validator as gossipsub would (and queues it for ``messages`` when
accepted); ``publish`` records what the daemon floods; peers connect and disconnect on
command, with their events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import trio

from meshd.daemon.transport import StreamHandler
from meshd.gossip.dial_order import IPNetwork
from meshd.gossip.peers import ConnectResult, PeerConnected, PeerDisconnected, PeerEvent
from meshd.gossip.streams import FramedStream, TransportError

Validator = Callable[[bytes, str, str], bool]


class FakeTransport:
    def __init__(self, validator: Validator, peer_id: str = "12D3KooWFake") -> None:
        self.validator = validator
        self._peer_id = peer_id
        self.published: list[bytes] = []
        self._published = trio.Event()
        self.handlers: dict[str, StreamHandler] = {}
        self.connected: set[str] = set()
        self.disconnects: list[str] = []
        self._events_send, self._events_receive = trio.open_memory_channel[PeerEvent](64)
        self._messages_send, self._messages_receive = trio.open_memory_channel[bytes](64)

    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def events(self) -> Any:
        return self._events_receive

    @property
    def messages(self) -> Any:
        return self._messages_receive

    def listen_addrs(self) -> list[str]:
        return [f"/ip4/127.0.0.1/tcp/7100/p2p/{self._peer_id}"]

    def connected_peers(self) -> list[str]:
        return sorted(self.connected)

    def source_of_peer(self, peer_id: str) -> str | None:
        return "127.0.0.1" if peer_id in self.connected else None

    def set_stream_handler(self, protocol: str, handler: StreamHandler) -> None:
        self.handlers[protocol] = handler

    async def open_stream(self, peer_id: str, protocol: str) -> FramedStream:
        raise TransportError(f"the fake transport opens no streams ({protocol})")

    async def publish(self, data: bytes) -> None:
        # gossipsub runs the validator on our own messages too
        assert self.validator(data, self._peer_id, self._peer_id)
        self.published.append(data)
        self._published.set()

    async def first_published(self) -> bytes:
        """Wait for the first message published. A daemon's first announcement may wait on
        real I/O (its interface addresses from netlink), which a fake clock does not see:
        waiting for the fake time to pass, or for every task to block, is not enough under
        load. pytest's timeout bounds the wait."""
        await self._published.wait()
        return self.published[0]

    async def disconnect(self, peer_id: str) -> None:
        self.disconnects.append(peer_id)
        if peer_id in self.connected:
            self.connected.discard(peer_id)
            self._events_send.send_nowait(PeerDisconnected(peer_id))

    async def connect_any(
        self, addrs: Sequence[str], on_link: Sequence[IPNetwork] = ()
    ) -> list[ConnectResult]:
        return [ConnectResult(a, None, "unreachable") for a in addrs]

    def connect(self, peer_id: str) -> None:
        self.connected.add(peer_id)
        self._events_send.send_nowait(PeerConnected(peer_id))

    def deliver(self, data: bytes, author: str, forwarder: str) -> bool:
        """A gossip message from ``forwarder``: validated, then delivered if accepted."""
        accepted = self.validator(data, author, forwarder)
        if accepted:
            self._messages_send.send_nowait(data)
        return accepted
