"""``meshd routes``: the running daemon's Babel routes and neighbours.

Asks the daemon over the control socket; imports only light modules so that it answers at
once.
"""

from __future__ import annotations

from typing import Any

from meshd.cli import Json, StateDir, app
from meshd.cli.output import emit_json, emit_table
from meshd.control.client import request
from meshd.layout import Paths, resolve


@app.command()
def routes(state_dir: StateDir = None, json: Json = False) -> None:
    """Show the Babel routes (selected first) and neighbours of the running daemon."""
    view = request(Paths(resolve(state_dir)).socket, "routes", {})
    if json:
        emit_json(view)
        return
    rows = sorted(view.get("routes", []), key=lambda r: (not r["selected"], r["prefix"]))
    emit_table(
        ["prefix", "from", "next hop", "interface", "metric", "origin", "installed", "rtt"],
        [_route_row(r) for r in rows],
    )
    neighbours = view.get("neighbours", [])
    if neighbours:
        print()
        emit_table(
            ["neighbour", "interface", "reach", "rxcost", "txcost", "cost", "rtt"],
            [
                [
                    n["address"],
                    n["interface"],
                    n["reach"],
                    str(n["rxcost"]),
                    str(n["txcost"]),
                    str(n["cost"]),
                    _ms(n.get("rtt_ms")),
                ]
                for n in neighbours
            ],
        )


def _route_row(row: dict[str, Any]) -> list[str]:
    mark = "" if row["selected"] else " (unselected)" if row["feasible"] else " (unfeasible)"
    return [
        row["prefix"] + mark,
        row.get("source") or "-",
        row.get("next_hop") or "local",
        row.get("interface") or "-",
        str(row["metric"]),
        row.get("origin") or row["router_id"],
        "yes" if row.get("installed") else "no",
        _ms(row.get("rtt_ms")),
    ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}ms"
