"""What the commands that only ask the daemon do: ask it, then print the answer.

Requests and answers are the typed commands of :mod:`meshd.control.commands`, which the
daemon's handlers return too; ``--json`` prints the answer's JSON as the daemon sent it.

``peers``, ``status`` and ``routes`` run from here both through the typer app and through the
quick path (meshd.cli.quick), so they must stay instant: this module imports the standard
library's light parts, the control client and meshd.node.layout, and nothing else.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from meshd.cli.output import emit_fields, emit_json, emit_table
from meshd.cli.stopping import raise_if_revoked
from meshd.control.client import ask as ask_typed
from meshd.control.commands import (
    PeerRow,
    PeersAnswer,
    PeersRequest,
    RoutesAnswer,
    RoutesRequest,
    StatusAnswer,
    StatusRequest,
)
from meshd.control.paused import collector_paused
from meshd.control.typed_json import to_json
from meshd.errors import DaemonNotRunning
from meshd.node.layout import Paths, resolve


def peers(member: str | None = None, state_dir: Path | None = None, json: bool = False) -> None:
    # The answer read, typed and printed whole (10,000 rows at 10,000 members): not a
    # cyclic collection among its values (meshd.control.paused).
    with collector_paused():
        _peers(member, state_dir, json)


def _peers(member: str | None, state_dir: Path | None, json: bool) -> None:
    answer = ask_typed(_socket(state_dir), PeersRequest(member=member or ""), PeersAnswer)
    if json:
        emit_json(to_json(answer))
        return
    if member:  # one member asked for (or the few of one name): everything about each
        for n, row in enumerate(answer.rows):
            if n:
                print()
            emit_fields(_member_fields(row))
        return
    emit_table(
        ["name", "node_id", "state", "overlay_ip", "path", "handshake", "rx/tx", "conn", "seen"],
        [
            [
                r.name or "-",
                r.node_id[:12],
                r.state + _why(r) + (f", {r.expires}" if r.expires else "") + _retiring(r),
                r.overlay_ip,
                _path(r),
                _handshake(r),
                _traffic(r),
                "yes" if r.connected else "-",
                _seen(r),
            ]
            for r in answer.rows
        ],
    )


def _member_fields(r: PeerRow) -> dict[str, Any]:
    """``meshd peers MEMBER``: a member's row, every column, one line each."""
    fields: dict[str, Any] = {
        "name": r.name or "-",
        "node_id": r.node_id,
        "state": r.state + _why(r) + (f", {r.expires}" if r.expires else "") + _retiring(r),
        "overlay_ip": r.overlay_ip,
        "link_local": r.link_local,
        "node_key": r.node_key,
        "wg_public_key": r.wg_public_key,
        "endpoints": list(r.endpoints),
        "addrs": list(r.addrs),
        "path": _path(r),
        "wg_endpoint": r.wg_endpoint or "-",
        "handshake": _handshake(r),
        "rx/tx": _traffic(r),
        "connected": "yes" if r.connected else "no",
        "seen": _seen(r),
        "admitted": _day(r.admitted_at),
        "ends": _day(r.credentials_end),
    }
    if r.routed:
        fields["route"] = f"{r.route or '-'} (metric {r.metric})"
    return fields


def _socket(state_dir: Path | None) -> Path:
    return Paths(resolve(state_dir)).socket


def _why(row: PeerRow) -> str:
    """Why a member is not admitted: the state's reason (unless it only repeats the state:
    ``revoked``), and a revocation's own words."""
    code, text = row.reason or "", row.revocation_reason or ""
    code = "" if code == row.state else code
    if code and text:
        return f" ({code}: {text})"
    return f" ({code or text})" if code or text else ""


def _retiring(row: PeerRow) -> str:
    """Said of a member anchored only to a root being retired: it ends with the overlap."""
    return " (retiring root only)" if row.retiring_root else ""


def _path(row: PeerRow) -> str:
    """``direct IP:PORT``, ``relay via NAME`` or ``none`` (``, trying`` while the daemon
    tries the member's candidates); ``-`` for this node."""
    trying = ", trying" if row.path_state == "trying" and row.path != "direct" else ""
    if row.path == "direct":
        return f"direct {row.path_endpoint or '?'}"
    if row.path == "relay":
        return f"relay via {row.path_via or '?'}{trying}"
    return (row.path or "-") + trying


def _handshake(row: PeerRow) -> str:
    """How long ago the last WireGuard handshake was; ``-`` when not a WireGuard peer."""
    if not row.wg_peer:
        return "-"
    at = row.last_handshake
    if not at:
        return "never"
    return f"{max(0, int(time.time() - at))}s ago"


ONLINE_HANDSHAKE = 180  # seconds: WireGuard drops a session's keys this long after its handshake


def _seen(row: PeerRow) -> str:
    """``online`` while this node hears the member itself (connected, or a WireGuard
    handshake within 180 s); else how long ago it last heard of it (its announcement, a
    connection, a handshake): members announce only on change and every two hours, so a member that
    went away stays admitted until its TTL, and this says so."""
    if row.state == "self":
        return "-"
    now = time.time()
    if row.connected or (row.last_handshake and now - row.last_handshake <= ONLINE_HANDSHAKE):
        return "online"
    if row.last_seen is None:
        return "never"
    return _ago(max(0, int(now - row.last_seen)))


def _ago(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _traffic(row: PeerRow) -> str:
    if not row.wg_peer:
        return "-"
    return f"{_bytes(row.rx_bytes or 0)}/{_bytes(row.tx_bytes or 0)}"


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
        info = ask_typed(_socket(state_dir), StatusRequest(), StatusAnswer)
    except DaemonNotRunning:
        raise_if_revoked(Paths(resolve(state_dir)).root)
        raise
    if json:
        emit_json(to_json(info))
        return
    shown: dict[str, Any] = {k: to_json(getattr(info, k)) for k in _STATUS_FIELDS}
    wireguard = info.wireguard
    for key in ("interface", "backend", "public_key", "listen_port", "mtu", "overlay_ip", "peers"):
        shown[f"wg_{key}" if key not in ("interface",) else key] = wireguard.get(key)
    if wireguard.get("relay"):
        shown["wg_relay"] = wireguard["relay"]
    if wireguard.get("last_error"):
        shown["wg_last_error"] = wireguard["last_error"]
    if info.isolated_since is not None:
        shown["isolated"] = (
            f"no member connected for {_span(time.time() - info.isolated_since)} (since "
            f"{_day(info.isolated_since)}): dialling the members' last addresses and "
            f"{len(info.bootstrap)} bootstrap address(es)"
        )
    shown["bootstrap"] = list(info.bootstrap)
    if info.store_unwritten:
        shown["store_unwritten"] = (
            f"{info.store_unwritten} rows kept in memory: the store cannot be written (see the log)"
        )
    shown["expiring"] = [f"{e['kind']} {e['name']} {e['expires']}" for e in info.expiring]
    shown.update(_config_fields(info.config))
    shown.update(_root_fields(info.root))
    emit_fields(shown)


def _span(seconds: float) -> str:
    """``seconds`` as a person reads a while: 42 s, 7 min, 3 h 12 min, 5 d 2 h."""
    whole = max(0, int(seconds))
    if whole < 120:
        return f"{whole} s"
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if whole < 3600:
        return f"{minutes} min"
    if whole < 86400:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def _config_fields(config: dict[str, Any] | None) -> dict[str, Any]:
    """What SIGHUPs did, once one came: how many read the options and how many could not,
    the last one's error, and the options that wait for a restart."""
    if not config or not (config.get("reloads") or config.get("failed")):
        return {}
    shown: dict[str, Any] = {
        "config_reloads": f"{config.get('reloads', 0)} ok, {config.get('failed', 0)} failed"
    }
    if config.get("last_ok") is False:
        shown["config_last_error"] = config.get("last_error", "")
    if config.get("waiting"):
        shown["config_restart_pending"] = list(config["waiting"])
    return shown


def _root_fields(root: dict[str, Any] | None) -> dict[str, Any]:
    """The current root, since when; during an overlap the retiring root, when its overlap
    ends, and the members still anchored only to it."""
    if not root:
        return {}
    shown: dict[str, Any] = {"root": f"{root['current']} (since {_day(root['since'])})"}
    for retiring in root.get("retiring", ()):
        shown["retiring_root"] = (
            f"{retiring['root']} (overlap until {_day(retiring['overlap_until'])})"
        )
    if root.get("retiring"):
        shown["anchored_to_retiring_root"] = list(root.get("anchored_to_retiring", ()))
    return shown


def _day(at: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


def routes(state_dir: Path | None = None, json: bool = False) -> None:
    view = ask_typed(_socket(state_dir), RoutesRequest(), RoutesAnswer)
    if json:
        emit_json(to_json(view))
        return
    rows = sorted(view.routes, key=lambda r: (not r["selected"], r["prefix"]))
    emit_table(
        ["prefix", "from", "next hop", "interface", "metric", "origin", "installed", "rtt"],
        [_route_row(r) for r in rows],
    )
    neighbours = view.neighbours
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
