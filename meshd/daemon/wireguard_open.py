"""Opening WireGuard: the backend, the interface and its overlay route; the interface addresses.

:func:`open_mesh` opens the backend (for ``userspace``, a ``wireguard-go`` child), which
configures the interface, routes the network's overlay /48 through it and hands it to a
:class:`~meshd.daemon.wireguard.WireGuardMesh`, which owns it from then on.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from meshd.addressing import overlay_address
from meshd.daemon.config import DEFAULT_MTU
from meshd.daemon.device_reads import SharedReads
from meshd.daemon.startup import claim
from meshd.daemon.underlay_mtu import read_derived, say
from meshd.daemon.wireguard import WireGuardMesh
from meshd.errors import BackendError
from meshd.mesh.desired import Underlay
from meshd.mesh.underlay import LocalAddress, underlay_of
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg import rtnetlink as rt
from meshd.wg.backend import InterfaceConfig
from meshd.wg.backend_select import select_backend
from meshd.wg.model import key_to_base64
from meshd.wg.netlink import Netlink

if TYPE_CHECKING:
    from meshd.daemon.config import DaemonConfig
    from meshd.node.statedir import NodeDir

log = logging.getLogger(__name__)


def backend_kind(name: str) -> str:
    """The backend ``name`` resolves to on this machine (``auto`` becomes a real one)."""
    if name != "auto":
        return name
    from meshd.wg.backend_kernel import kernel_module_available

    return "kernel" if kernel_module_available() else "userspace"


@asynccontextmanager
async def open_mesh(config: DaemonConfig, node: NodeDir) -> AsyncIterator[WireGuardMesh]:
    """Open the backend and configure the interface; close both on the way out."""
    opener = select_backend(config.wg_backend)
    kind = backend_kind(config.wg_backend)
    overlay = overlay_address(node.anchor.root_key, node.first_key)
    prefix = node.anchor.overlay
    assert isinstance(prefix, ipaddress.IPv6Network)
    mtu = config.mtu
    if mtu is None and kind != "none":
        mtu = await derived_mtu(config.interface)
    interface = InterfaceConfig(
        ifname=config.interface,
        private_key=node.wg_key.secret,
        listen_port=config.listen_port,
        overlay_address=overlay,
        mtu=mtu if mtu is not None else DEFAULT_MTU,
    )
    link_mtu = interface.mtu if interface.mtu is not None else DEFAULT_MTU
    async with claim(config, node), opener(interface) as backend:
        if kind != "none":
            await backend.replace_routes([prefix])
        log.info(
            "WireGuard %s (%s): key %s, port %d, MTU %d, overlay %s",
            interface.ifname,
            kind,
            key_to_base64(interface.public_key),
            config.listen_port,
            interface.mtu,
            overlay,
        )
        yield WireGuardMesh(
            SharedReads(backend),  # one read for the round and the step of one moment
            kind=kind,
            own_node_key=NodeKey(node.node_key.public),
            own_wg_key=WgKey(node.wg_key.public),
            overlay=overlay,
            overlay_prefix=prefix,
            listen_port=config.listen_port,
            interval=config.reconcile_interval,
            keepalive=config.keepalive or None,
            poke=kind != "none",
            mtu=link_mtu,
        )
        log.info("WireGuard %s: closing", interface.ifname)


async def derived_mtu(ifname: str, netns: str | None = None) -> int:
    """The MTU for our interface ``ifname`` when ``--mtu`` is not given, from this
    namespace's (or ``netns``'s) default routes and interfaces
    (:func:`meshd.mesh.mtu.derive_mtu`), logged with where it came from; 1420 if netlink
    cannot be read."""
    try:
        derived, _ = await read_derived(ifname, netns)
    except (OSError, BackendError) as exc:
        log.warning("cannot read the underlay's MTU (%s): MTU %d", exc, DEFAULT_MTU)
        return DEFAULT_MTU
    say(
        derived,
        "MTU %d derived from the underlay: %s (set --mtu to choose)",
        derived.mtu,
        derived.why,
    )
    return derived.mtu


async def set_link_mtu(ifname: str, mtu: int | None) -> int:
    """Give the running interface ``ifname`` the MTU ``mtu``, or the one derived from the
    underlay now (:func:`derived_mtu`) for None (a SIGHUP's ``mtu``); the MTU set. The
    sessions are kept: only the size of the packets the interface takes changes. A
    BackendError if the kernel refuses."""
    chosen = mtu if mtu is not None else await derived_mtu(ifname)
    await Netlink().set_mtu(ifname, chosen)
    return chosen


async def local_addresses() -> list[LocalAddress]:
    """This namespace's interface addresses another machine could reach us at: of scope
    global or site, not link-local nor the host's own (empty if netlink cannot be read)."""
    try:
        found = await Netlink().addresses(scopes=(rt.RT_SCOPE_UNIVERSE, rt.RT_SCOPE_SITE))
    except BackendError as exc:
        log.warning("cannot read the interface addresses: %s", exc)
        return []
    return [LocalAddress(ifname, interface) for ifname, interface in found]


async def current_underlay(exclude: Sequence[str]) -> Underlay:
    return underlay_of(await local_addresses(), exclude=exclude)
