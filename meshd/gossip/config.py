"""What a gossip host is built from: :class:`HostConfig` and the :data:`Validator` type.

No libp2p and no trio here: a config can be built and checked anywhere. The host itself is
:mod:`meshd.gossip.host`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import multiaddr

from meshd.gossip.framing import DEFAULT_MAX_FRAME_SIZE

__all__ = ["HostConfig", "Validator", "parse_multiaddr"]

_ED25519_KEY_SIZE: Final = 32

Validator = Callable[[bytes, str, str], bool]
"""``validator(payload, author_peer_id, forwarder_peer_id) -> accept``; synchronous, must not
block. The author signed the message; the forwarder is the neighbour it came from (Noise
authenticated), ourselves for our own publishes."""


@dataclass(frozen=True, slots=True)
class HostConfig:
    """Everything a :class:`GossipHost` is built from.

    ``identity_seed`` is the 32-byte Ed25519 seed of the node key; the same key is the libp2p
    identity. The gossipsub degrees are those of the gossipsub spec (D, D_lo, D_hi).
    Inbound connections that have not finished the Noise and Yamux handshakes are bounded
    per source (an IPv4 address or an IPv6 /64) and in total, and are closed after
    ``handshake_timeout``; an inbound stream that has not named its protocol by then is
    reset, and a connection holds at most 64 streams its remote opened.
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
    handshake_timeout: float = 5.0
    handshakes_per_source: int = 16
    handshakes_total: int = 128

    def __post_init__(self) -> None:
        if len(self.identity_seed) != _ED25519_KEY_SIZE:
            raise ValueError(f"identity_seed must be 32 bytes, got {len(self.identity_seed)}")
        if not self.topic:
            raise ValueError("topic must not be empty")
        if not 1 <= self.degree_low <= self.degree <= self.degree_high:
            raise ValueError("gossipsub degrees need 1 <= degree_low <= degree <= degree_high")
        if self.heartbeat_interval < 1:
            raise ValueError("heartbeat_interval must be at least 1 second")
        for name in (
            "max_message_size",
            "max_frame_size",
            "delivery_buffer",
            "event_buffer",
            "handshakes_per_source",
            "handshakes_total",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        for name in (
            "stream_timeout",
            "dial_timeout",
            "publish_backlog_wait",
            "shutdown_timeout",
            "handshake_timeout",
        ):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds")
        for addr in self.listen_addrs:
            protocols = [p.name for p in parse_multiaddr(addr).protocols()]
            if protocols[:1] not in (["ip4"], ["ip6"]) or protocols[1:] != ["tcp"]:
                raise ValueError(f"listen address must be /ip4|ip6/<addr>/tcp/<port>: {addr}")


def parse_multiaddr(addr: str) -> multiaddr.Multiaddr:
    """Parse ``addr``; ``ValueError`` (and nothing else) if it is not a multiaddr."""
    try:
        return multiaddr.Multiaddr(addr)
    except Exception as exc:  # the multiaddr package raises several unrelated types
        raise ValueError(f"not a multiaddr: {addr!r}") from exc
