"""WireGuard operations that make a peer shake hands now (pure: a peer's status in, operations
out), for the punching service (:mod:`meshd.daemon.punching`).

* :func:`kick`: a new endpoint to try, and an initiation to it at once;
* :func:`recreate`: the peer removed and created again as it was: its session (a dead one,
  with a member that restarted) goes, and WireGuard initiates at once. It is also how a
  quiet direct path without Babel's Hellos is asked whether it still works
  (:mod:`meshd.mesh.liveness_probe`): a live peer answers an initiation, while the keepalive
  that :func:`kick`'s toggle sends on a live session is answered by nothing.
"""

from __future__ import annotations

from meshd.wg.model import PeerStatus, RemovePeer, UpdatePeer


def recreate(status: PeerStatus, endpoint: str, keepalive: int) -> list[RemovePeer | UpdatePeer]:
    """The peer removed and created again as it was, with ``endpoint`` and ``keepalive``:
    no session left, and WireGuard initiates at once (the keepalive turned on)."""
    key = status.config.public_key
    return [
        RemovePeer(key),
        UpdatePeer(
            key,
            endpoint=endpoint,
            persistent_keepalive=keepalive,
            replace_allowed_ips=True,
            allowed_ips=status.config.allowed_ips,
        ),
    ]


def kick(status: PeerStatus, endpoint: str, keepalive: int) -> list[RemovePeer | UpdatePeer]:
    """Operations that give a peer a new endpoint and make WireGuard initiate to it now.

    WireGuard sends at once when a persistent keepalive is turned on, so it is turned off
    and on again with the endpoint; but it starts at most one handshake per 5 s, so a peer
    that never completed one (it has no session to lose) is created anew instead, which
    also clears that limit.
    """
    key = status.config.public_key
    set_it = UpdatePeer(key, update_only=True, endpoint=endpoint, persistent_keepalive=keepalive)
    if status.last_handshake:
        return [UpdatePeer(key, update_only=True, persistent_keepalive=0), set_it]
    return recreate(status, endpoint, keepalive)
