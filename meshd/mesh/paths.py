"""The punching service's per-peer endpoint and keepalive, laid over the desired peers (pure).

:func:`meshd.mesh.desired.desired_peers` chooses an endpoint from each member's announcement;
where the daemon runs a direct path for the peer (:mod:`meshd.daemon.punching`), the
endpoint that path chose and the keepalive it needs win. A peer with no path entry, or a path
with no endpoint, keeps what the announcement gave.

A peer with a fresh session (a handshake within ``FRESH`` seconds) keeps the endpoint its
device shows: WireGuard moved it to where the peer's authenticated packets come from
(roaming), which may be a NAT mapping no announcement names; writing an announced or
candidate endpoint over it would cut the session. The one exception is a path trying a
candidate since after that handshake: the session went silent and the path looks for a new
one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from meshd.mesh.desired import DesiredMesh, PeersByKey
from meshd.trust.keys import WgKey
from meshd.wg.model import DeviceState, PeerConfig

#: (endpoint, persistent keepalive or None for off, Unix time the path began trying this
#: endpoint or None when it is not trying)
Path = tuple[str | None, int | None, float | None]

#: A handshake this recent (seconds) is a session: WireGuard's REJECT_AFTER_TIME.
FRESH = 180.0


def with_paths(
    desired: DesiredMesh,
    paths: Mapping[bytes, Path],
    actual: DeviceState | None = None,
    now: float = 0.0,
    previous: Mapping[WgKey, PeerConfig] | None = None,
) -> DesiredMesh:
    """``desired`` with each peer named in ``paths`` given that endpoint and keepalive, and
    every peer with a fresh session on ``actual`` (at Unix time ``now``) left where it is.

    ``previous``: the last round's peers (as this returned them). A peer whose path gives it
    what it had then is that object again, not a copy made each round (a peer a member whose
    path moved it off its announced endpoint, every round)."""
    if not paths:
        return desired
    device = actual.peers_by_key() if actual is not None else {}
    before = previous if previous is not None else {}
    peers: list[PeerConfig] = []  # in key order, as desired.peers
    for key, peer in desired.peers.items():
        endpoint, keepalive, trying_since = paths.get(key, (None, peer.persistent_keepalive, None))
        status = device.get(key)
        handshake = status.last_handshake if status is not None else None
        if (
            status is not None
            and status.config.endpoint is not None
            and handshake is not None
            and 0 <= now - handshake <= FRESH
            and (trying_since is None or handshake >= trying_since)
        ):
            endpoint = status.config.endpoint  # a session: leave the roamed endpoint
        endpoint = endpoint if endpoint is not None else peer.endpoint
        if endpoint == peer.endpoint and keepalive == peer.persistent_keepalive:
            peers.append(peer)  # the peer as it is: not made (and checked) again each round
            continue
        old = before.get(key)
        if (
            old is not None
            and old.endpoint == endpoint
            and old.persistent_keepalive == keepalive
            and old.allowed_ips == peer.allowed_ips
        ):
            peers.append(old)  # as the last round laid it
            continue
        peers.append(replace(peer, endpoint=endpoint, persistent_keepalive=keepalive))
    return replace(desired, peers=PeersByKey(peers))
