"""What a simulated mesh is made of: links, CPU costs and the gossip layer's settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Links:
    """Every link: a one-way latency drawn from a normal law (mean, sd, floored at ``floor``)
    and a loss rate per segment. Gossip and sync ride on TCP, so a lost segment is not a lost
    message: it comes ``rto`` later (doubling on each further loss, as TCP backs off), and it
    holds up what follows it on the same connection (each direction of a link is FIFO).
    Across a partition every segment is lost until the heal."""

    latency: float = 0.050
    jitter: float = 0.020
    floor: float = 0.001
    loss: float = 0.0
    rto: float = 0.2  # Linux's minimum retransmission timeout
    max_rto: float = 120.0


@dataclass(frozen=True, slots=True)
class Costs:
    """CPU seconds a node spends: per gossip RPC it receives or sends (libp2p's framing,
    Noise, protobuf, the seen-set check), per record its validator merges and stores (the
    first copy only), and per sync message. ``cores``: None gives every node its own core;
    a number makes all nodes share that many cores (daemons on one machine, as in the
    loopback benchmark the simulator is calibrated on)."""

    rpc_in: float = 0.0
    rpc_out: float = 0.0
    validate: float = 0.0
    sync_message: float = 0.0
    revocation: float = 0.0  # on top of ``validate``, per revocation (its Revoked event's work)
    cores: int | None = None


@dataclass(frozen=True, slots=True)
class Gossip:
    """The daemon's gossip settings (meshsub 1.1 as py-libp2p 0.8.1 runs it), with the
    defaults of meshd/daemon/config.py (degree, sync and announce intervals), the degrees
    meshd/daemon/service.py builds from ``--degree`` and the rate limits of
    meshd/daemon/state.py (tests/sim checks that they agree; this module imports no shell)."""

    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    heartbeat: float = 1.0  # HostConfig.heartbeat_interval
    gossip_window: int = 3  # py-libp2p GossipSub defaults
    gossip_history: int = 5
    gossip_lazy: int = 6  # IHAVE to max(6, 25 % of the non-mesh peers) (adaptive gossip off)
    gossip_factor: float = 0.25
    connect_degree: int = 6  # members kept connected
    dial_time: float = 0.25  # py-libp2p's happy-eyeballs wait, before the handshake RTTs
    sync_interval: float = 10.0
    announce_interval: float = 7200.0  # a refresh; changes are a scenario's (scenarios.Load)
    author_rate: float = 20.0
    author_burst: float = 100.0
    forwarder_rate: float = 100.0
    forwarder_burst: float = 500.0


@dataclass(frozen=True, slots=True)
class Sizes:
    """Bytes on the wire. A gossip RPC carries the sender's signed peer record (docs/gossip.md:
    a 300-byte payload made a 693-byte RPC); a message id is the author's peer id and a
    sequence number, hex-encoded in IHAVE and IWANT by py-libp2p."""

    rpc_overhead: int = 393
    message_id: int = 92
    control: int = 24  # a GRAFT or PRUNE entry
