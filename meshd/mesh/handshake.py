"""Getting a first handshake at once when a peer's endpoint becomes known (pure).

WireGuard starts at most one handshake per peer every 5 seconds (REKEY_TIMEOUT). A peer
created before its endpoint was known (the member was admitted, its announcement had not
arrived) already spent that attempt: the first packet found no endpoint. When the endpoint
then arrives, the next attempt is up to 5 s away. Likewise when our first initiation reached
a member that did not know us yet.

So when a plan gives a new endpoint to a peer that has never completed a handshake (it has no
session to lose), :func:`recreate_unanswered` replaces that update with a removal and a
creation of the whole peer. A new peer's handshake state is fresh, and its persistent
keepalive makes WireGuard send a first packet, hence an initiation, at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from meshd.wg.model import DeviceState, PeerConfig, RemovePeer, UpdatePeer


def recreate_unanswered(
    ops: Sequence[RemovePeer | UpdatePeer],
    desired: Mapping[bytes, PeerConfig],
    actual: DeviceState,
) -> list[RemovePeer | UpdatePeer]:
    """``ops`` with each endpoint change of a never-answered peer made a re-creation."""
    device = actual.peers_by_key()
    out: list[RemovePeer | UpdatePeer] = []
    for op in ops:
        status = device.get(op.public_key)
        want = desired.get(op.public_key)
        if (
            isinstance(op, UpdatePeer)
            and op.endpoint is not None
            and status is not None
            and status.last_handshake is None
            and want is not None
        ):
            out.append(RemovePeer(op.public_key))
            out.append(
                UpdatePeer(
                    op.public_key,
                    endpoint=want.endpoint,
                    persistent_keepalive=want.persistent_keepalive,
                    replace_allowed_ips=True,
                    allowed_ips=want.allowed_ips,
                )
            )
        else:
            out.append(op)
    return out
