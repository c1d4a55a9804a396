"""The libp2p stack a gossip host runs: what can be negotiated on the wire, and nothing else.

* TCP only, Noise only, Yamux only. py-libp2p offers TLS, secio and plaintext by default
  too; with ``sec_opt`` holding Noise alone, nothing weaker can be negotiated in either
  direction.
* The node's Ed25519 key is the libp2p identity; the Noise static key is a fresh X25519 key
  for each host.
* gossipsub (:func:`~meshd.gossip.libp2p_workarounds.router.gossipsub_router`) under
  pubsub with strict signing: libp2p checks each message's signature against its ``from``
  peer id before the validator sees it.
* Inbound connections in their security handshake are bounded per source and in total,
  and closed after ``handshake_timeout``
  (:func:`~meshd.gossip.libp2p_workarounds.inbound.gate_inbound_handshakes`).
* Each connection holds at most 64 streams its remote opened, and an inbound stream names
  its protocol within ``handshake_timeout``
  (:mod:`~meshd.gossip.libp2p_workarounds.stream_cap`).
* The peerstore never evicts the host's own entry; the peers that are gone are forgotten
  (:mod:`~meshd.gossip.libp2p_workarounds.peerstore`).
* No connection minimum: the auto-connector is stopped once the host runs (see
  :mod:`meshd.gossip.libp2p_workarounds.connections`), and the membership layer chooses
  the peers.
"""

from __future__ import annotations

from collections.abc import Callable

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p import new_host
from libp2p.abc import IHost, INotifee
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.transport.tcp.tcp import TCP

from meshd.gossip.config import HostConfig, parse_multiaddr
from meshd.gossip.libp2p_workarounds.inbound import HandshakeBudget, gate_inbound_handshakes
from meshd.gossip.libp2p_workarounds.peerstore import lift_peer_cap
from meshd.gossip.libp2p_workarounds.router import gossipsub_router, seed_sequence_number
from meshd.gossip.libp2p_workarounds.stream_cap import StreamCap, cap_inbound_streams

__all__ = ["TopicValidator", "build_stack"]

TopicValidator = Callable[[ID, rpc_pb2.Message], bool]
"""libp2p's synchronous topic validator: ``(forwarder, message) -> accept``."""


def build_stack(
    config: HostConfig,
    key_pair: KeyPair,
    validator: TopicValidator,
    notifee: INotifee,
    handshakes: HandshakeBudget,
    streams: StreamCap,
) -> tuple[IHost, GossipSub, Pubsub]:
    """Build (not start) the libp2p host, its gossipsub router and pubsub on ``config.topic``.

    ``validator`` becomes the topic's only validator, synchronous (py-libp2p's async
    validators crash its message cache, issue 1118); ``notifee`` hears of connections;
    ``handshakes`` bounds the inbound connections still in their handshake, ``streams``
    the streams a remote holds open on one connection.
    """
    noise = NoiseTransport(key_pair, noise_privkey=x25519_key_pair().private_key)
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=[parse_multiaddr(a) for a in config.listen_addrs],
        transports=[TCP()],
        connection_config=ConnectionConfig(
            min_connections=0,
            low_watermark=0,
            dial_timeout=config.dial_timeout,
            inbound_upgrade_timeout=config.handshake_timeout,
            inbound_stream_protocol_negotiation_timeout=config.handshake_timeout,
        ),
    )
    gate_inbound_handshakes(host, handshakes)
    cap_inbound_streams(host, streams)
    lift_peer_cap(host)
    gossipsub = gossipsub_router(config)
    pubsub = Pubsub(
        host,
        gossipsub,
        strict_signing=True,
        max_inbound_rpc_size=max(1024 * 1024, 2 * config.max_message_size + 64 * 1024),
    )
    seed_sequence_number(pubsub)
    pubsub.set_topic_validator(config.topic, validator, is_async_validator=False)
    host.get_network().register_notifee(notifee)
    return host, gossipsub, pubsub
