"""The WireGuard side of the punching service, as far as its tests need it."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace
from typing import Any

from meshd.mesh.desired import Underlay


def fake_mesh(
    backend: Any, *, overlay: ipaddress.IPv6Network | None = None, ifname: str = "wg-test"
) -> Any:
    """A ``WireGuardMesh`` stand-in over ``backend`` (a fake device): IPv4 underlay, our
    keys all zero, no paths or relays set yet."""
    return SimpleNamespace(
        backend=backend,
        ifname=ifname,
        own_node_key=bytes(32),
        own_wg_key=bytes(32),
        overlay_prefix=overlay,
        underlay=Underlay(frozenset({4}), ()),
        paths={},
        relay_now=frozenset(),
        kick=lambda: None,
    )


def who(wg_key: bytes, name: str, announced: tuple[str, ...] = ()) -> Any:
    """A member as a peer of the punching service reads it: its WireGuard key, name and
    announced endpoints."""
    return SimpleNamespace(
        wg_key=wg_key, name=name, announcement=SimpleNamespace(endpoints=announced)
    )
