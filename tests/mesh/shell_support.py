"""The WireGuard shell (meshd.daemon.wireguard) on an in-memory backend, on a fake clock: what
its tests share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
import trio.testing

from meshd.daemon.device_reads import SharedReads
from meshd.daemon.wireguard import WireGuardMesh
from meshd.membership import Member
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.backend import InterfaceConfig
from meshd.wg.backend_none import NullBackend
from meshd.wg.model import clamp_private_key
from tests.mesh.support import OVERLAY, key

B = TypeVar("B", bound=NullBackend)


def make_mesh(
    backend_class: type[B],
    members: list[Member],
    ifname: str,
    *,
    shared: bool = False,
    **options: Any,
) -> tuple[WireGuardMesh, B]:
    """A mesh of ``members`` on a ``backend_class`` device named ``ifname``, its reads
    shared if ``shared`` (as the daemon's: :class:`SharedReads`); ``options`` go to
    WireGuardMesh (interval, keepalive, ...)."""
    config = InterfaceConfig(ifname, clamp_private_key(key("me", "wg-private")))
    backend = backend_class(config)
    mesh = WireGuardMesh(
        SharedReads(backend) if shared else backend,
        kind="none",
        own_node_key=NodeKey(key("me")),
        own_wg_key=WgKey(config.public_key),
        overlay=OVERLAY.network_address + 1,
        overlay_prefix=OVERLAY,
        listen_port=51820,
        poke=False,
        **options,
    )
    mesh.set_members(members)
    return mesh, backend


def run(test: Callable[[], Awaitable[None]]) -> None:
    """Run ``test`` on a clock that jumps ahead whenever every task waits."""
    trio.run(test, clock=trio.testing.MockClock(autojump_threshold=0))
