"""What ``meshd status`` and the WireGuard columns of ``meshd peers`` show of the interface."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from meshd.daemon.device_reads import SharedReads
from meshd.errors import BackendError
from meshd.wg.model import DeviceState, PeerStatus, key_to_base64

if TYPE_CHECKING:
    from meshd.daemon.wireguard import WireGuardMesh

log = logging.getLogger("meshd.daemon.wireguard")


async def device(mesh: WireGuardMesh) -> DeviceState | None:
    """What the device holds now, or None if it cannot be read."""
    try:
        return await mesh.backend.get()
    except BackendError as exc:
        log.debug("WireGuard %s: %s", mesh.ifname, exc)
        return None


async def peer_stats(mesh: WireGuardMesh) -> dict[bytes, PeerStatus]:
    """Each peer's handshake, transfer and endpoint as the device reports them."""
    state = await device(mesh)
    return state.peers_by_key() if state is not None else {}


async def status_view(mesh: WireGuardMesh) -> dict[str, Any]:
    """The ``wireguard`` part of ``meshd status``."""
    return status_of(mesh, await device(mesh))


def status_of(mesh: WireGuardMesh, state: DeviceState | None) -> dict[str, Any]:
    """:func:`status_view` from the device as read (``state``; None: it could not be)."""
    desired = mesh._desired
    reads = mesh.backend
    # Reads of the whole device made and handed on (meshd.daemon.device_reads): what the
    # daemon asks of the device, in the status view and as metrics.
    made, shared = (reads.reads, reads.shared) if isinstance(reads, SharedReads) else (None, None)
    return {
        "interface": mesh.ifname,
        "backend": mesh.kind,
        "public_key": key_to_base64(mesh.own_wg_key),
        "listen_port": state.listen_port if state is not None else None,
        "overlay_ip": str(mesh.overlay),
        "overlay_prefix": str(mesh.overlay_prefix),
        "peers": len(state.peers) if state is not None else None,
        "desired_peers": len(desired.peers),
        "shadowed": len(desired.shadowed),
        "held": len(mesh._held),
        "rounds": mesh.rounds,
        "errors": mesh.errors,
        "last_error": mesh.last_error,
        "device_reads": made,
        "device_reads_shared": shared,
    }
