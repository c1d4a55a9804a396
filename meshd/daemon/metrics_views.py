"""What a scrape of the metrics reads of the daemon: the figures of ``meshd status``, ``meshd
peers`` and ``meshd routes`` that the catalogue (:mod:`meshd.metrics.collector`) names, and
no others.

The control socket's views carry every column a person reads (each member's keys in base64,
its addresses as text, its path and what members see of it, each row checked against its
answer type), and ``status`` reads the device for itself: at 10,000 members a scrape that
asked for them cost ~0.9 s of the event loop (two reads of the device besides). A scrape
needs a few figures a member: here from one view of each member and one read of the device
(docs/metrics.md). They are the views' own figures, made by the same functions
(tests/daemon/test_metrics_views.py compares the two).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from meshd.daemon import babel_views, seeing_views, state_views, wireguard_views
from meshd.daemon.control import trio_task_count
from meshd.membership import Member
from meshd.wg.model import PeerStatus

if TYPE_CHECKING:
    from meshd.daemon.babel import BabelService
    from meshd.daemon.service import Daemon
    from meshd.daemon.state import NodeState

ROWS_AT_ONCE = 2000  # members' rows made between two turns of the event loop


async def figures(
    daemon: Daemon,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """``status``, ``peers`` and ``routes`` as the collector reads them (the keys of their
    JSON answers; ``routes`` None when Babel does not run)."""
    state = daemon.state
    device = await wireguard_views.device(daemon.mesh)
    members = state.members()
    await trio.lowlevel.checkpoint()
    status = state_views.node_view(state)
    status["wireguard"] = wireguard_views.status_of(daemon.mesh, device)
    status["wireguard"].update(wireguard_views.read_counts(daemon.mesh))
    status["connected"] = len(daemon.host.connected_peers())
    status["isolated_since"] = daemon.connections.alone_since or 0
    status["uptime"] = round(time.monotonic() - daemon.control.started, 1)
    status["tasks"] = trio_task_count()
    status["budgets"] = daemon.budgets_view()
    status["shed"] = daemon.shed_view()
    status["config"] = daemon.reloader.view() if daemon.reloader is not None else None
    peers = []
    by_key = device.peers_by_key() if device is not None else {}
    for n in range(0, len(members), ROWS_AT_ONCE):
        await trio.lowlevel.checkpoint()
        peers += peer_rows(state, members[n : n + ROWS_AT_ONCE], by_key, daemon.babel)
    # As meshd peers: a peer created anew keeps the handshake its path saw.
    seeing_views.add_kept_handshakes(peers, members, daemon.punching.last_handshake)
    routes = None if daemon.babel is None else babel_views.route_figures(daemon.babel)
    return status, peers, routes


def peer_rows(
    state: NodeState,
    members: Sequence[Member],
    device: Mapping[bytes, PeerStatus],
    babel: BabelService | None,
) -> list[dict[str, Any]]:
    """The columns of ``meshd peers`` that the metrics read, for ``members``."""
    own = state.key
    ends = state.membership.credentials_end
    rows = []
    for m in members:
        peer = device.get(m.wg_key) if m.node_key != own else None
        row: dict[str, Any] = {
            "name": m.name,
            "node_id": m.node_id,
            "state": state_views.state_label(m, own),
            "not_after": m.not_after,
            "credentials_end": ends(m.node_key),
            "wg_peer": peer is not None,
        }
        if peer is not None:
            row["last_handshake"] = peer.last_handshake
            row["rx_bytes"] = peer.rx_bytes
            row["tx_bytes"] = peer.tx_bytes
        if babel is not None:
            row["route"] = babel_views.peer_route(babel, m).get("route")
        rows.append(row)
    return rows
