"""The WireGuard side of the punching service, as far as its tests need it."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from meshd.daemon.endpoints import Endpoints
from meshd.daemon.punching import Punching
from meshd.membership.views import Member, MemberState
from meshd.mesh.desired import Underlay

OVERLAY = ipaddress.IPv6Network("fd00:1::/64")


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


def wg_key(i: int) -> bytes:
    """The WireGuard key of the ``i``-th member of :func:`service_over`."""
    return i.to_bytes(4, "big") * 8


def endpoint(i: int) -> str:
    """The endpoint the ``i``-th member announces (one that never answers)."""
    return f"198.18.{i >> 8 & 255}.{i & 255}:51820"


def member(i: int) -> Member:
    """The ``i``-th member: admitted, announcing :func:`endpoint`."""
    announcement: Any = SimpleNamespace(endpoints=(endpoint(i),))
    return Member(
        node_key=(i + 1_000_000).to_bytes(4, "big") * 8,  # type: ignore[arg-type]
        node_id=f"id{i}",
        name=f"m{i}",
        wg_key=wg_key(i),  # type: ignore[arg-type]
        overlay=OVERLAY[i + 1],
        state=MemberState.ADMITTED,
        reason="",
        admitted_at=0,
        not_after=2**40,
        announcement=announcement,
        last_seen=None,
    )


def service_over(backend: Any, members: Sequence[Member]) -> Punching:
    """The punching service over ``backend`` (a fake device) with ``members``, nothing
    connected, nothing to announce anew."""
    mesh: Any = fake_mesh(backend, overlay=OVERLAY, ifname="wgtest")
    state: Any = SimpleNamespace(
        feed=SimpleNamespace(current=SimpleNamespace(members=tuple(members))),
        is_member=lambda key: True,
    )
    host: Any = SimpleNamespace(connected_peers=list)
    endpoints = Endpoints(
        overlay=OVERLAY, listen_port=51820, configured=(), is_member=lambda key: True
    )
    announcer: Any = SimpleNamespace(announce_if_due=None)
    punching = Punching(host, state, mesh, endpoints, announcer, 25)
    punching._announced = endpoints.announced(0.0)  # nothing to announce anew
    return punching
