"""Commands that run the daemon (up, join) or ask it (peers, status).

``peers`` and ``status`` must answer at once: this module imports only light modules at the
top; trio, libp2p and the daemon are imported inside ``up`` and ``join``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshd.cli import Json, StateDir, app
from meshd.cli.output import emit_fields, emit_json, emit_table, note
from meshd.cli.parse import duration, read_secret_argument
from meshd.control.client import request
from meshd.layout import Paths, resolve

if TYPE_CHECKING:
    from meshd.babel.options import BabelConfig
    from meshd.daemon.config import DaemonConfig

Listen = Annotated[
    list[str] | None,
    typer.Option(
        "--listen",
        help="A multiaddr to listen on (repeatable) [default: /ip4/0.0.0.0/tcp/7100].",
        show_default=False,
    ),
]
WgBackend = Annotated[
    str,
    typer.Option(
        "--wg-backend",
        help="WireGuard backend: auto (the kernel module, else wireguard-go), kernel, "
        "userspace (wireguard-go) or none (membership only).",
    ),
]
Interface = Annotated[
    str, typer.Option("--interface", help="The WireGuard interface to create and own.")
]
ListenPort = Annotated[
    int, typer.Option("--listen-port", min=1, max=65535, help="WireGuard's UDP port.")
]
Endpoint = Annotated[
    list[str] | None,
    typer.Option(
        "--endpoint",
        help="HOST:PORT where members reach our WireGuard (repeatable) "
        "[default: every underlay address, with --listen-port].",
        show_default=False,
    ),
]
AnnounceInterval = Annotated[
    str, typer.Option("--announce-interval", help="How often to announce this node.")
]
AnnounceTtl = Annotated[
    str, typer.Option("--announce-ttl", help="Silence after which a member counts as expired.")
]
Degree = Annotated[
    int, typer.Option("--degree", min=1, max=64, help="How many members to stay connected to.")
]
BabelInterface = Annotated[
    list[str] | None,
    typer.Option(
        "--babel-interface",
        help="Speak ordinary (multicast) Babel with the routers on this interface (repeatable).",
        show_default=False,
    ),
]
BabelHello = Annotated[
    float,
    typer.Option("--babel-hello-interval", min=0.05, max=655, help="Babel Hello interval, s."),
]
BabelOriginate = Annotated[
    list[str] | None,
    typer.Option(
        "--babel-originate",
        help="Announce PREFIX (or 'PREFIX from SOURCE') over Babel besides our overlay "
        "/128 (repeatable).",
        show_default=False,
    ),
]
BabelKey = Annotated[
    list[str] | None,
    typer.Option(
        "--babel-key",
        help="RFC 8967 key ID:ALGORITHM:HEX (hmac-sha256 or blake2s128) for the "
        "--babel-interface links (repeatable).",
        show_default=False,
    ),
]

BabelRedistribute = Annotated[
    list[str] | None,
    typer.Option(
        "--babel-redistribute",
        help="Filter routes between the mesh and the --babel-interface links, both ways: "
        "'PREFIX [ge N] [le N] allow|deny' (repeatable; first match wins, no match denies).",
        show_default=False,
    ),
]


def _configure_logging() -> None:
    import logging
    import os

    logging.basicConfig(
        level=os.environ.get("MESHD_LOG", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def _config(
    state_dir: Path | None,
    listen: list[str] | None,
    wg_backend: str,
    announce_interval: str,
    announce_ttl: str,
    degree: int,
    wireguard: tuple[str, int, list[str] | None],
    babel: BabelConfig | None = None,
) -> DaemonConfig:
    from meshd.babel.options import BabelConfig
    from meshd.daemon.config import DEFAULT_LISTEN, DaemonConfig

    interface, listen_port, endpoints = wireguard
    return DaemonConfig(
        state_dir=resolve(state_dir),
        listen=tuple(listen or DEFAULT_LISTEN),
        wg_backend=wg_backend,
        interface=interface,
        listen_port=listen_port,
        endpoints=tuple(endpoints or ()),
        announce_interval=duration(announce_interval, option="--announce-interval"),
        announce_ttl=duration(announce_ttl, option="--announce-ttl"),
        degree=degree,
        babel=babel or BabelConfig(),
    )


@app.command()
def up(
    listen: Listen = None,
    state_dir: StateDir = None,
    wg_backend: WgBackend = "auto",
    interface: Interface = "meshd0",
    listen_port: ListenPort = 51820,
    endpoint: Endpoint = None,
    announce_interval: AnnounceInterval = "30s",
    announce_ttl: AnnounceTtl = "2m",
    degree: Degree = 6,
    babel_interface: BabelInterface = None,
    babel_hello_interval: BabelHello = 4.0,
    babel_originate: BabelOriginate = None,
    babel_key: BabelKey = None,
    babel_redistribute: BabelRedistribute = None,
) -> None:
    """Run this node's daemon in the foreground (Ctrl-C or SIGTERM stops it)."""
    from meshd.babel.options import babel_config

    config = _config(
        state_dir,
        listen,
        wg_backend,
        announce_interval,
        announce_ttl,
        degree,
        (interface, listen_port, endpoint),
        babel_config(
            babel_interface or (),
            babel_hello_interval,
            babel_originate or (),
            babel_key or (),
            babel_redistribute or (),
        ),
    )
    _configure_logging()
    import trio

    from meshd.daemon.babel import refuse_ungranted_origins
    from meshd.daemon.launch import run_until_signalled
    from meshd.statedir import NodeDir

    node = NodeDir.open(config.state_dir)
    try:
        refuse_ungranted_origins(config, node)
        trio.run(run_until_signalled, config, node)
    finally:
        node.close()


@app.command()
def join(
    invite: Annotated[
        str,
        typer.Option(
            "--invite",
            help="The invite token (a secret); '-' reads it from stdin, '@FILE' from a file, "
            "so that it stays out of the process list.",
        ),
    ],
    name: Annotated[
        str, typer.Option("--name", help="This node's name [default: the invite's].")
    ] = "",
    listen: Listen = None,
    state_dir: StateDir = None,
    wg_backend: WgBackend = "auto",
    interface: Interface = "meshd0",
    listen_port: ListenPort = 51820,
    endpoint: Endpoint = None,
    no_up: Annotated[
        bool, typer.Option("--no-up", help="Exit once admitted instead of running the daemon.")
    ] = False,
    announce_interval: AnnounceInterval = "30s",
    announce_ttl: AnnounceTtl = "2m",
    degree: Degree = 6,
    babel_hello_interval: BabelHello = 4.0,
) -> None:
    """Join a network with an invite token, then run the daemon (unless --no-up)."""
    from meshd.babel.options import babel_config

    invite = read_secret_argument(invite, "--invite")
    config = _config(
        state_dir,
        listen,
        wg_backend,
        announce_interval,
        announce_ttl,
        degree,
        (interface, listen_port, endpoint),
        babel_config(hello_interval=babel_hello_interval),
    )
    _configure_quiet_logging()
    import trio

    from meshd.daemon.join import join as join_network
    from meshd.daemon.launch import run_until_signalled

    async def main() -> None:
        node = await join_network(invite, name=name, config=config, progress=note)
        try:
            if not no_up:
                _configure_logging()
                await run_until_signalled(config, node)
        finally:
            node.close()

    trio.run(main)


def _configure_quiet_logging() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="meshd: %(message)s")


def _ask(state_dir: Path | None, cmd: str, args: dict[str, Any] | None = None) -> Any:
    return request(Paths(resolve(state_dir)).socket, cmd, args or {})


@app.command()
def peers(state_dir: StateDir = None, json: Json = False) -> None:
    """List the members this node knows, with their state and addresses."""
    rows = _ask(state_dir, "peers")
    if json:
        emit_json(rows)
        return
    emit_table(
        ["name", "node_id", "state", "overlay_ip", "endpoint", "handshake", "rx/tx", "conn"],
        [
            [
                r["name"] or "-",
                r["node_id"][:12],
                r["state"] + (f" ({r['reason']})" if r.get("reason") else ""),
                r["overlay_ip"],
                r.get("wg_endpoint") or ",".join(r["endpoints"]) or "-",
                _handshake(r),
                _traffic(r),
                "yes" if r.get("connected") else "-",
            ]
            for r in rows
        ],
    )


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


@app.command()
def status(state_dir: StateDir = None, json: Json = False) -> None:
    """Show this node's identity, network, listen addresses and membership summary."""
    info = _ask(state_dir, "status")
    if json:
        emit_json(info)
        return
    shown = {
        k: info.get(k)
        for k in (
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
    }
    wireguard = info.get("wireguard") or {}
    for key in ("interface", "backend", "public_key", "listen_port", "overlay_ip", "peers"):
        shown[f"wg_{key}" if key not in ("interface",) else key] = wireguard.get(key)
    if wireguard.get("last_error"):
        shown["wg_last_error"] = wireguard["last_error"]
    emit_fields(shown)
