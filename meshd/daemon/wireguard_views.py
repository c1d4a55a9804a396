"""What ``meshd status`` and the WireGuard columns of ``meshd peers`` show of the interface."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import trio

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


async def peer_stats(mesh: WireGuardMesh) -> Mapping[bytes, PeerStatus]:
    """Each peer's handshake, transfer and endpoint as the device reports them."""
    state = await device(mesh)
    return state.peers_by_key() if state is not None else {}


#: Seconds a read of the device answers ``meshd status`` for, while nothing was written to
#: the device since (the rounds and the punching step read it every few seconds at most).
COUNTED_WITHIN = 60.0


async def status_view(mesh: WireGuardMesh) -> dict[str, Any]:
    """The ``wireguard`` part of ``meshd status``: its counts from the last read of the
    device when that is recent and nothing was written since (SharedReads.counted), else
    from a read of its own (at 10,000 peers ~0.1 s, for two numbers)."""
    reads = mesh.backend
    if isinstance(reads, SharedReads) and (counted := reads.counted(COUNTED_WITHIN)):
        return status_counted(mesh, *counted)
    return status_of(mesh, await device(mesh))


async def link_mtu(mesh: WireGuardMesh) -> int | None:
    """The interface's MTU as the kernel has it now (``meshd status``): what ``--mtu`` set,
    or what was set by hand since (``ip link set mtu``); None without WireGuard, or when
    the interface cannot be read."""
    if mesh.kind == "none":
        return None

    def read() -> int | None:
        from meshd.wg.rtnl_socket import RtnlSocket

        try:
            with RtnlSocket() as rtnl:
                link = rtnl.link(mesh.ifname)
        except (OSError, BackendError):  # no answer: no figure
            return None
        return link.mtu if link is not None else None

    return await trio.to_thread.run_sync(read)


def status_of(mesh: WireGuardMesh, state: DeviceState | None) -> dict[str, Any]:
    """:func:`status_view` from the device as read (``state``; None: it could not be)."""
    if state is None:
        return status_counted(mesh, None, None)
    return status_counted(mesh, len(state.peers), state.listen_port)


def status_counted(
    mesh: WireGuardMesh, peers: int | None, listen_port: int | None
) -> dict[str, Any]:
    """:func:`status_view` from what a read of the device counted (None: no read)."""
    desired = mesh._desired
    return {
        "interface": mesh.ifname,
        "backend": mesh.kind,
        "public_key": key_to_base64(mesh.own_wg_key),
        "listen_port": listen_port,
        "overlay_ip": str(mesh.overlay),
        "overlay_prefix": str(mesh.overlay_prefix),
        "peers": peers,
        "desired_peers": len(desired.peers),
        "shadowed": len(desired.shadowed),
        "held": len(mesh._held),
        "rounds": mesh.rounds,
        "errors": mesh.errors,
        "last_error": mesh.last_error,
    }


def read_counts(mesh: WireGuardMesh) -> dict[str, int | None]:
    """How many reads of the whole device the daemon made and handed on to a second caller
    (meshd.daemon.device_reads; None: its backend does not share reads). A scrape's figures,
    not the status view's: a status may read the device itself, so its own answer would
    move them when it is asked."""
    reads = mesh.backend
    if not isinstance(reads, SharedReads):
        return {"device_reads": None, "device_reads_shared": None}
    return {"device_reads": reads.reads, "device_reads_shared": reads.shared}
