"""WireGuard operations that make a peer shake hands now (pure: a peer's status in, operations
out), for the punching service (:mod:`meshd.daemon.punching`).

* :func:`kick`: a new endpoint to try, and an initiation to it at once;
* :func:`recreate`: the peer removed and created again as it was: its session (a dead one,
  with a member that restarted) goes, and WireGuard initiates at once. It is also how a
  quiet direct path without Babel's Hellos is asked whether it still works
  (:mod:`meshd.mesh.liveness_probe`): a live peer answers an initiation, while the keepalive
  that :func:`kick`'s toggle sends on a live session is answered by nothing;
* :func:`hush`: the opposite, once a round failed: a peer with no session (it never
  answered, or not for longer than a session lives) is created anew without a keepalive,
  so that WireGuard stops initiating to it until the next round;
* :func:`in_batches`: a step's operations cut into writes of a bounded size, a peer's
  operations never split between two.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

from meshd.mesh.reach import Path
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


#: Seconds after its handshake that a WireGuard session's keys are refused (RejectAfterTime):
#: a peer whose last handshake is older has no session left to lose.
SESSION_LIFE: Final = 180.0


def hush(
    before: Path | None, after: Path, status: PeerStatus | None, wall: float
) -> list[RemovePeer | UpdatePeer]:
    """Operations that stop WireGuard initiating to a peer whose round just failed.

    A packet queued for a peer without a session (the keepalive a round turns on is one)
    makes WireGuard send an initiation and retry it every 5 s for 90 s, whatever the
    keepalive is set to afterwards; a round needs two of them (:data:`meshd.mesh.punch.
    ATTEMPT`), and rounds come again after 30 s, doubling to 5 min, so a peer that never
    answers was sent an initiation every 5 s for as long as its path stayed on the relay
    (at 10,000 such peers, 2,000 a second: most of wireguard-go's CPU beside an idle
    daemon). When the path goes from ``trying`` to ``relay`` (``before``, ``after``) and
    the peer has no session to lose (it never completed a handshake, or its last one is
    :data:`SESSION_LIFE` s old or more at ``wall``, Unix seconds: a member that went
    away), it is removed and created again as it was, without a keepalive: nothing queued,
    no retries, until the next round turns the keepalive on again. The peer's own
    initiation is answered all the same (a member that comes up later reaches us, and its
    path goes direct at our next look). A peer with a live session keeps it, and what
    WireGuard does with it. No operations otherwise.
    """
    if before != "trying" or after != "relay" or status is None:
        return []
    endpoint = status.config.endpoint
    if endpoint is None:
        return []
    shaken = status.last_handshake
    if shaken and wall - shaken < SESSION_LIFE:
        return []
    return recreate(status, endpoint, 0)


#: Operations one write of a step's kicks carries at most (a peer's are never split).
OPS_AT_ONCE = 1000


def in_batches(
    ops: Sequence[RemovePeer | UpdatePeer], size: int = OPS_AT_ONCE
) -> Iterator[Sequence[RemovePeer | UpdatePeer]]:
    """``ops`` in order, in batches of about ``size`` (more only to finish a peer's): a
    step at 10,000 peers that re-creates them all wrote 20,000 operations at once, 3 MB of
    request and twice that at its peak, kept by the daemon's RSS. A peer's operations
    (consecutive, as :func:`kick`, :func:`recreate` and :func:`hush` make them) go in one
    write: a peer is never left removed by one write and not yet created by the next."""
    start = 0
    while start < len(ops):
        end = min(start + size, len(ops))
        while end < len(ops) and ops[end].public_key == ops[end - 1].public_key:
            end += 1
        yield ops[start:end]
        start = end
