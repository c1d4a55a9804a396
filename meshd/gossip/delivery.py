"""Publishing and delivery on the host's one gossipsub topic: :class:`TopicDelivery`.

What :class:`meshd.gossip.host.GossipHost` publishes goes through here, and so does every
message gossipsub hands us: the caller's validator (behind the size limit, checked first),
the channel messages are delivered on, and the counts of what was rejected or dropped. The
host owns one and starts :meth:`TopicDelivery.drain` on its subscription; this module
neither builds nor starts anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass

import trio

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

from meshd.gossip.bug_log import BugLog
from meshd.gossip.config import HostConfig, Validator
from meshd.gossip.libp2p_workarounds.router import wait_for_queue_room
from meshd.gossip.streams import LIBP2P_ERRORS, MessageTooLarge, TransportError

__all__ = ["GossipMessage", "TopicDelivery"]

# The host's log lines keep the one logger name they always had, whichever module logs them.
logger = logging.getLogger("meshd.gossip.host")


@dataclass(frozen=True, slots=True)
class GossipMessage:
    """A gossip message that passed validation. ``author`` signed it; it may reach us
    through other peers."""

    data: bytes
    author: str


class TopicDelivery:
    """The host's topic, message side: validate, publish, deliver; not thread-safe.

    ``own`` is our peer id: our own messages are checked by the same validator before they
    are published, and are not delivered back to us.
    """

    def __init__(self, config: HostConfig, validator: Validator, own: ID) -> None:
        self._config = config
        self.validator = validator
        """Applies to every message validated from the moment it is set."""
        self._own = own
        self._send, self.receive = trio.open_memory_channel[GossipMessage](config.delivery_buffer)
        self._publish_lock = trio.Lock()
        self.dropped = 0
        """Validated messages dropped because :attr:`receive` was full."""
        self.rejected = 0
        """Messages refused for their size or by the validator (ours included)."""
        self._bugs = BugLog(logger, "the gossip validator", clock=time.monotonic)

    def accepts(self, data: bytes, author: str, forwarder: str) -> bool:
        if len(data) > self._config.max_message_size:
            return False
        try:
            return bool(self.validator(data, author, forwarder))
        except Exception as exc:  # noqa: BLE001 (a validator bug rejects the message; the host runs on)
            self._bugs.report(exc, "(message rejected)")
            return False

    def libp2p_validator(self, forwarder: ID, message: rpc_pb2.Message) -> bool:
        # libp2p has verified the author's signature (StrictSign) before calling this.
        accepted = self.accepts(
            message.data, ID(message.from_id).to_base58(), forwarder.to_base58()
        )
        if not accepted:
            self.rejected += 1
            logger.debug("rejected gossip message of %d bytes via %s", len(message.data), forwarder)
        return accepted

    async def publish(self, data: bytes, require_pubsub: Callable[[], Pubsub]) -> None:
        """Publish ``data`` on the topic (:meth:`meshd.gossip.host.GossipHost.publish`).

        ``require_pubsub`` is asked for the router only once ``data`` has passed our checks.
        """
        if len(data) > self._config.max_message_size:
            raise MessageTooLarge(
                f"message of {len(data)} bytes exceeds max_message_size "
                f"{self._config.max_message_size}"
            )
        own = self._own.to_base58()
        if not self.accepts(data, own, own):
            self.rejected += 1
            raise TransportError("our own validator rejects this message; not published")
        pubsub = require_pubsub()
        async with self._publish_lock:
            await wait_for_queue_room(pubsub, self._config.publish_backlog_wait)
            try:
                await pubsub.publish(self._config.topic, data)
            except LIBP2P_ERRORS as exc:
                raise TransportError(f"publish failed: {exc}") from exc

    async def drain(self, subscription: AsyncIterable[rpc_pb2.Message]) -> None:
        # libp2p's subscription queue holds 32 messages and drops silently when full, so it
        # is emptied at once into our larger channel, which counts and logs its drops.
        own = self._own.to_bytes()
        async for message in subscription:
            if message.from_id == own:
                continue
            delivered = GossipMessage(bytes(message.data), ID(message.from_id).to_base58())
            try:
                self._send.send_nowait(delivered)
            except trio.WouldBlock:
                self.dropped += 1
                logger.warning(
                    "gossip delivery buffer full (%d); dropped a message from %s",
                    self._config.delivery_buffer,
                    delivered.author,
                )

    def close(self) -> None:
        """End :attr:`receive` for its readers (the host has stopped)."""
        self._send.close()
