"""Commands that run the daemon (up, join) or ask it (peers, status).

trio, libp2p and the daemon are imported inside ``up`` and ``join``. What ``peers`` and
``status`` do is in meshd.cli.asking, which the quick path runs without this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meshd.cli import asking
from meshd.cli.app import Json, StateDir, app
from meshd.cli.configfile.keys import CONTEXT
from meshd.cli.configfile.settling import configurable

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
Mtu = Annotated[
    int | None,
    typer.Option(
        "--mtu",
        min=1280,
        max=65535,
        help="The WireGuard interface's MTU (1280 fits every path) "
        "[default: the smallest MTU of the default routes' interfaces less 80, "
        "1280 to 1420: 1420 over a 1500-byte underlay, 1412 behind PPPoE].",
        show_default=False,
    ),
]
Endpoint = Annotated[
    list[str] | None,
    typer.Option(
        "--endpoint",
        help="ADDRESS:PORT where members reach our WireGuard (repeatable; an address, not a "
        "name: members are told addresses) [default: every underlay address, with "
        "--listen-port].",
        show_default=False,
    ),
]
AnnounceInterval = Annotated[
    str,
    typer.Option(
        "--announce-interval",
        help="How often to announce this node while nothing changes (a change goes at once).",
    ),
]
AnnounceTtl = Annotated[
    str,
    typer.Option(
        "--announce-ttl",
        help="Silence after which a member counts as expired (a connection or a WireGuard "
        "handshake with it ends a silence too).",
    ),
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

ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="MESHD_CONFIG",
        help="The TOML config file [default: /etc/meshd/meshd.toml if it exists]; "
        "options and MESHD_* variables override it (docs/config.md).",
        show_default=False,
        readable=False,  # one we may not read is a config error (78), said where it is read
    ),
]
LogLevel = Annotated[
    str, typer.Option("--log-level", help="meshd's log level: debug, info, warning or error.")
]
LogFormat = Annotated[
    str, typer.Option("--log-format", help="Log lines as text or json (one object per line).")
]

BabelRedistribute = Annotated[
    list[str] | None,
    typer.Option(
        "--babel-redistribute",
        help="Filter routes between the mesh and the --babel-interface links, both ways: "
        "'PREFIX [ge N] [le N] allow|deny' (repeatable; first match wins, no match denies; "
        "without rules no site route reaches the mesh).",
        show_default=False,
    ),
]

Metrics = Annotated[
    str | None,
    typer.Option(
        "--metrics",
        help="Serve Prometheus metrics on HOST:PORT, e.g. 127.0.0.1:9101 (docs/metrics.md) "
        "[default: off].",
        show_default=False,
    ),
]


Relay = Annotated[
    str,
    typer.Option(
        "--relay",
        help="Forward traffic between members that cannot reach each other: auto (when this "
        "node has a public endpoint), on or off (docs/nat.md).",
    ),
]
PublicAddr = Annotated[
    list[str] | None,
    typer.Option(
        "--public-addr",
        help="ADDRESS[:PORT] or NAME[:PORT] where members outside this network reach our "
        "libp2p port (repeatable; the port defaults to --listen's); invites carry it first.",
        show_default=False,
    ),
]
Bootstrap = Annotated[
    list[str] | None,
    typer.Option(
        "--bootstrap",
        help="A member's /ip4|ip6/ADDRESS/tcp/PORT/p2p/PEER_ID (or /dns/NAME/..., looked up "
        "at each dial), dialled whenever no member is connected, with those join kept "
        "(repeatable); join dials it besides the invite's, and keeps it.",
        show_default=False,
    ),
]


AutoRenew = Annotated[
    bool,
    typer.Option(
        "--auto-renew",
        help="Renew, once a day, every member whose membership ends within --renew-window "
        "(needs the root key or an admin key with the invite capability here).",
    ),
]
RenewWindow = Annotated[
    str, typer.Option("--renew-window", help="With --auto-renew: how close to its end.")
]
RenewFor = Annotated[
    str, typer.Option("--renew-for", help="With --auto-renew: how long from then it lasts.")
]


@app.command(context_settings=CONTEXT)
@configurable
def up(
    ctx: typer.Context,
    listen: Listen = None,
    state_dir: StateDir = None,
    wg_backend: WgBackend = "auto",
    interface: Interface = "meshd0",
    listen_port: ListenPort = 51820,
    mtu: Mtu = None,
    endpoint: Endpoint = None,
    announce_interval: AnnounceInterval = "2h",
    announce_ttl: AnnounceTtl = "6h",
    degree: Degree = 6,
    babel_interface: BabelInterface = None,
    babel_hello_interval: BabelHello = 4.0,
    babel_originate: BabelOriginate = None,
    babel_key: BabelKey = None,
    babel_redistribute: BabelRedistribute = None,
    metrics: Metrics = None,
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
    config_file: ConfigFile = None,
    relay: Relay = "auto",
    public_addr: PublicAddr = None,
    auto_renew: AutoRenew = False,
    renew_window: RenewWindow = "30d",
    renew_for: RenewFor = "365d",
    bootstrap: Bootstrap = None,
) -> None:
    """Run this node's daemon in the foreground (Ctrl-C or SIGTERM stops it).

    SIGHUP (systemctl reload) reads the options again: the log's level and format change
    at once, other changes are named and wait for a restart."""
    # What follows the parse is meshd.cli.starting's, which the quick path runs too
    # (meshd.cli.quick_up): the same DaemonConfig from the same values either way.
    from meshd.cli.starting import prepare, run

    run(prepare(locals()))


@app.command(context_settings=CONTEXT)
@configurable
def join(
    ctx: typer.Context,
    invite: Annotated[
        str,
        typer.Option(
            "--invite",
            help="The invite token (a secret; required); '-' reads it from stdin, '@FILE' "
            "from a file, so that it stays out of the process list.",
            show_default=False,
        ),
    ] = "",
    name: Annotated[
        str, typer.Option("--name", help="This node's name [default: the invite's].")
    ] = "",
    listen: Listen = None,
    state_dir: StateDir = None,
    wg_backend: WgBackend = "auto",
    interface: Interface = "meshd0",
    listen_port: ListenPort = 51820,
    mtu: Mtu = None,
    endpoint: Endpoint = None,
    no_up: Annotated[
        bool, typer.Option("--no-up", help="Exit once admitted instead of running the daemon.")
    ] = False,
    announce_interval: AnnounceInterval = "2h",
    announce_ttl: AnnounceTtl = "6h",
    degree: Degree = 6,
    babel_hello_interval: BabelHello = 4.0,
    metrics: Metrics = None,
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
    config_file: ConfigFile = None,
    bootstrap: Bootstrap = None,
    relay: Relay = "auto",
    public_addr: PublicAddr = None,
) -> None:
    """Join a network with an invite token, then run the daemon (unless --no-up)."""
    # What follows the parse is meshd.cli.starting's, which the quick path runs too
    # (meshd.cli.quick_up): the same invite, name and DaemonConfig either way.
    from meshd.cli.starting import prepare_join, run_join

    run_join(prepare_join(locals()))


@app.command()
def down(
    state_dir: StateDir = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.1, max=3600, help="Seconds to wait for it to stop."),
    ] = 30.0,
) -> None:
    """Stop the running daemon gracefully (as SIGTERM does) and wait until it has stopped."""
    from meshd.cli.stopping import down as stop_daemon

    stop_daemon(state_dir, timeout)


@app.command()
def peers(
    member: Annotated[
        str | None,
        typer.Argument(
            metavar="MEMBER",
            help="Only this member: a name, a node id (or its first characters), a WireGuard"
            " key, or an overlay or link-local address.",
        ),
    ] = None,
    state_dir: StateDir = None,
    json: Json = False,
) -> None:
    """List the members this node knows, with their state and addresses."""
    asking.peers(member, state_dir, json)


@app.command()
def status(state_dir: StateDir = None, json: Json = False) -> None:
    """Show this node's identity, network, listen addresses and membership summary."""
    asking.status(state_dir, json)


@app.command()
def netcheck(state_dir: StateDir = None, json: Json = False) -> None:
    """Where members see this node, whether its NAT is cone or symmetric, who reaches it."""
    from meshd.cli.netcheck import netcheck as check

    check(state_dir, json)
