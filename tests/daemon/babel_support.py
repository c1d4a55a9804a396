"""A daemon's Babel service on a fake mesh, as the Babel-on-the-mesh tests build it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from meshd.babel.options import babel_config
from meshd.daemon.babel import BabelService
from meshd.membership import Member
from meshd.trust.keys import WgKey


def mesh_babel(
    me: Member,
    members: Callable[[], Sequence[Member]],
    mesh: Any,
    direct: Callable[[], Collection[WgKey]] = frozenset,
) -> BabelService:
    """``me``'s Babel service, 1 s Hellos, on ``mesh`` (a stand-in for the WireGuard side)."""
    return BabelService(
        babel_config(hello_interval=1.0),
        node_key=me.node_key,
        overlay=me.overlay,
        own_wg_key=me.wg_key,
        members=members,
        mesh=mesh,
        direct=direct,
    )
