"""What the commands that only ask the daemon do: ask it, then print the answer.

``peers``, ``status`` and ``routes`` run from here both through the typer app and through the
quick path (meshd.cli.quick), so they must stay instant: this module imports the standard
library's light parts, the control client and meshd.layout, and nothing else.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from meshd.cli.output import emit_fields, emit_json, emit_table
from meshd.cli.stopping import raise_if_revoked
from meshd.control.client import request
from meshd.errors import DaemonNotRunning
from meshd.layout import Paths, resolve


def ask(state_dir: Path | None, cmd: str, args: dict[str, Any] | None = None) -> Any:
    """One control command to the daemon of ``state_dir`` (or MESHD_STATE_DIR, or the default)."""
    return request(Paths(resolve(state_dir)).socket, cmd, args or {})


def peers(state_dir: Path | None = None, json: bool = False) -> None:
    rows = ask(state_dir, "peers")
    if json:
        emit_json(rows)
        return
    emit_table(
        ["name", "node_id", "state", "overlay_ip", "endpoint", "handshake", "rx/tx", "conn"],
        [
            [
                r["name"] or "-",
                r["node_id"][:12],
                r["state"] + _why(r) + (f", {r['expires']}" if r.get("expires") else ""),
                r["overlay_ip"],
                r.get("wg_endpoint") or ",".join(r["endpoints"]) or "-",
                _handshake(r),
                _traffic(r),
                "yes" if r.get("connected") else "-",
            ]
            for r in rows
        ],
    )


def _why(row: dict[str, Any]) -> str:
    """Why a member is not admitted: the state's reason, and a revocation's own words."""
    code, text = row.get("reason") or "", row.get("revocation_reason") or ""
    if code and text:
        return f" ({code}: {text})"
    return f" ({code or text})" if code or text else ""


def _handshake(row: dict[str, Any]) -> str:
    """How long ago the last WireGuard handshake was; ``-`` when not a WireGuard peer."""
    if not row.get("wg_peer"):
        return "-"
    at = row.get("last_handshake")
    if not at:
        return "never"
    return f"{max(0, int(time.time() - at))}s ago"


def _traffic(row: dict[str, Any]) -> str:
    if not row.get("wg_peer"):
        return "-"
    return f"{_bytes(row.get('rx_bytes') or 0)}/{_bytes(row.get('tx_bytes') or 0)}"


def _bytes(count: int) -> str:
    if count < 1024:
        return f"{count}B"
    size = count / 1024
    for unit in ("K", "M"):
        if size < 1024:
            return f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}G"


_STATUS_FIELDS = (
    "name",
    "node_id",
    "network",
    "network_id",
    "listen_addrs",
    "endpoints",
    "members",
    "expired",
    "revoked",
    "records",
    "connected",
    "digest",
)


def status(state_dir: Path | None = None, json: bool = False) -> None:
    try:
        info = ask(state_dir, "status")
    except DaemonNotRunning:
        raise_if_revoked(Paths(resolve(state_dir)).root)
        raise
    if json:
        emit_json(info)
        return
    shown = {k: info.get(k) for k in _STATUS_FIELDS}
    wireguard = info.get("wireguard") or {}
    for key in ("interface", "backend", "public_key", "listen_port", "overlay_ip", "peers"):
        shown[f"wg_{key}" if key not in ("interface",) else key] = wireguard.get(key)
    if wireguard.get("last_error"):
        shown["wg_last_error"] = wireguard["last_error"]
    shown["expiring"] = [
        f"{e['kind']} {e['name']} {e['expires']}" for e in info.get("expiring", [])
    ]
    emit_fields(shown)


def routes(state_dir: Path | None = None, json: bool = False) -> None:
    view = ask(state_dir, "routes")
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
