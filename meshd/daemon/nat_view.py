"""What the daemon knows of NAT traversal, as one frozen snapshot (read, never changed).

:meth:`meshd.daemon.punching.Punching.snapshot` builds it from the endpoint service
(:mod:`meshd.daemon.endpoints`: what members observe of us, our candidates) and the punching
service (:mod:`meshd.daemon.punching`: each peer's direct path). ``meshd peers`` and
``meshd netcheck`` read it through the control handler. See docs/nat.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PathState = Literal["direct", "trying", "relay", "none"]
"""``direct``: a fresh WireGuard session at ``endpoint``; ``trying``: candidates are being
tried (traffic may go through a relay meanwhile); ``relay``: every candidate failed, Babel's
relay carries the traffic until the next round; ``none``: no path known (no candidate)."""

NatKind = Literal["none", "cone", "symmetric", "unknown"]
"""Our NAT as observers see it: ``none`` (they see an address we hold), ``cone`` (two or more
observers see one mapping not ours), ``symmetric`` (they see different ports or addresses),
``unknown`` (fewer than two observers)."""


@dataclass(frozen=True, slots=True)
class PeerPathView:
    """One peer's WireGuard path."""

    node_key: bytes
    name: str
    path: PathState
    endpoint: str | None  # where WireGuard sends to the peer now (None: nowhere)
    last_handshake: float | None  # Unix seconds of the latest handshake, None if never
    keepalive: int  # the persistent keepalive we keep on the peer (0: off)


@dataclass(frozen=True, slots=True)
class ObservedView:
    """An endpoint members report seeing us at, and who (node keys, sorted)."""

    endpoint: str
    source: Literal["wireguard", "identify"]
    observers: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class NatSnapshot:
    """Our own endpoints and every peer's path, at one moment."""

    candidates: tuple[tuple[str, str], ...] = ()  # announced (kind, endpoint), ranked
    observed: tuple[ObservedView, ...] = ()  # every current observation, most observers first
    behind_nat: bool = False
    nat_kind: NatKind = "unknown"
    peers: tuple[PeerPathView, ...] = ()  # by name
    refused: dict[str, int] = field(default_factory=dict)  # "what:reason" -> count
