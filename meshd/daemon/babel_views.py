"""What ``meshd routes`` and the route columns of ``meshd peers`` show of Babel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshd.babel.options import router_id_of
from meshd.membership import Member

if TYPE_CHECKING:
    from meshd.babel.shell import BabelShell
    from meshd.babel.views import RouteView
    from meshd.daemon.babel import BabelService


def routes_view(self: BabelService) -> dict[str, Any]:
    """What ``meshd routes`` shows: routes, neighbours and counters."""
    shell = self._shell
    if shell is None:
        return {"router_id": router_id_of(self.node_key).hex(), "routes": [], "neighbours": []}
    core = shell.core
    rtts = {n.neighbour: n.rtt for n in core.neighbours()}
    rows = []
    origins: dict[bytes, str] | None = None
    for view in core.routes():
        if origins is None:
            origins = _origin_names(self)
        rtt = rtts.get(view.neighbour) if view.neighbour is not None else None
        rows.append(
            {
                "prefix": str(view.prefix),
                "source": str(view.source) if view.source is not None else None,
                "next_hop": str(view.next_hop) if view.next_hop is not None else None,
                "interface": view.neighbour.interface if view.neighbour else None,
                "metric": view.metric,
                "refmetric": view.refmetric,
                "seqno": view.seqno,
                "router_id": view.router_id.hex(),
                "origin": origins.get(view.router_id),
                "selected": view.selected,
                "feasible": view.feasible,
                "installed": _installed(shell, view),
                "rtt_ms": round(rtt * 1000, 1) if rtt is not None else None,
            }
        )
    neighbours = [
        {
            "interface": n.neighbour.interface,
            "address": str(n.neighbour.address),
            "reach": f"{n.reach:04x}",
            "rxcost": n.rxcost,
            "txcost": n.txcost,
            "cost": n.cost,
            "rtt_ms": round(n.rtt * 1000, 1) if n.rtt is not None else None,
        }
        for n in core.neighbours()
    ]
    return {
        "router_id": core.router_id.hex(),
        "seqno": core.seqno,
        "interfaces": [i.name for i in core.interfaces()],
        "routes": rows,
        "neighbours": neighbours,
        "counters": shell.counters.as_dict() | core.counters(),
    }


def route_figures(self: BabelService) -> dict[str, Any]:
    """What the metrics read of :func:`routes_view`: whether each route is selected and
    installed, and the neighbours (counted), without the rest of each row."""
    shell = self._shell
    if shell is None:
        return {"routes": [], "neighbours": []}
    core = shell.core
    return {
        "routes": [
            {"selected": view.selected, "installed": _installed(shell, view)}
            for view in core.routes()
        ],
        "neighbours": [{} for _ in core.neighbours()],
    }


def _installed(shell: BabelShell, view: RouteView) -> bool:
    """A route of ours (no neighbour), or selected and in the kernel's table."""
    return view.neighbour is None or (view.selected and shell.installed(view.prefix, view.source))


def peer_route(self: BabelService, member: Member) -> dict[str, Any]:
    """``route`` (``direct`` or ``via NAME``) and ``metric`` of a member, for ``peers``: a
    member we do not speak Babel with is ``direct`` while its direct path works (no metric:
    Babel does not measure it)."""
    shell = self._shell
    if shell is None or self.mesh is None or member.node_key == self.node_key:
        return {}
    prefix = member.overlay_prefix
    if self._on_mesh is not None and self._on_mesh.covers(prefix):
        return {"route": "direct", "metric": None}  # no Babel between us: a direct path
    view = shell.core.route(prefix)
    if view is None or view.neighbour is None:
        return {"route": None, "metric": None}
    hop = self.members_view.peers.get(view.neighbour.address)  # type: ignore[arg-type]
    if hop is not None and hop.node_key == member.node_key:
        route = "direct"
    else:
        route = f"via {hop.name if hop is not None else view.neighbour.address}"
    return {"route": route, "metric": view.metric}


def _origin_names(self: BabelService) -> dict[bytes, str]:
    """Each member's name by its router-id (the first member's that has it), made once for
    a view of every route: a pass over the members for each route made ``meshd routes``
    quadratic."""
    names: dict[bytes, str] = {}
    for member in self._members():
        names.setdefault(router_id_of(member.node_key), member.name)
    return names
