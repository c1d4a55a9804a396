"""The datagram that starts a WireGuard handshake at once.

Peers that were just created, or given a new endpoint, get one small UDP datagram to their
overlay address (the discard port): WireGuard starts a handshake for it now rather than at the
first real packet. The reconcile round (:mod:`meshd.daemon.wireguard`) works out the
addresses (:func:`poke_targets`) and returns them, so that its device read and operations
are let go before the datagrams go out (:func:`send_pokes`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterable, Sequence

import trio

from meshd.mesh.desired import DesiredMesh
from meshd.trust.keys import WgKey
from meshd.wg.model import UpdatePeer

DISCARD_PORT = 9  # RFC 863; the datagram only has to leave through WireGuard


async def poke_peers(
    desired: DesiredMesh, overlay_prefix: ipaddress.IPv6Network, updates: Iterable[UpdatePeer]
) -> None:
    """Send one datagram to each peer's overlay address, so that WireGuard shakes hands."""
    await send_pokes(poke_targets(desired, overlay_prefix, updates))


def poke_targets(
    desired: DesiredMesh, overlay_prefix: ipaddress.IPv6Network, updates: Iterable[UpdatePeer]
) -> list[ipaddress.IPv6Address]:
    """The overlay addresses of the peers ``updates`` set (those :func:`send_pokes` pokes)."""
    return [
        t
        for op in updates
        if (t := overlay_of(desired, overlay_prefix, WgKey(op.public_key))) is not None
    ]


async def send_pokes(targets: Sequence[ipaddress.IPv6Address]) -> None:
    """One empty datagram to the discard port of each address."""
    if not targets:
        return
    with trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        for target in targets:
            with contextlib.suppress(OSError):
                await sock.sendto(b"", (str(target), DISCARD_PORT))


def overlay_of(
    desired: DesiredMesh, overlay_prefix: ipaddress.IPv6Network, wg_key: WgKey
) -> ipaddress.IPv6Address | None:
    """The overlay /128 that ``desired`` gives the peer ``wg_key``, if any."""
    config = desired.peers.get(wg_key)
    if config is None:
        return None
    for net in config.allowed_ips:
        if (
            isinstance(net, ipaddress.IPv6Network)
            and net.prefixlen == 128
            and net.network_address in overlay_prefix
        ):
            return net.network_address
    return None
