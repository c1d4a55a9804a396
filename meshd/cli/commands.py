"""Commands of the trust layer: init, invite, revoke, inspect, admin.

What ``revoke`` does is in meshd.cli.revoking, shared with the quick path.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshd.cli import revoking
from meshd.cli.app import Json, StateDir, app
from meshd.cli.output import b64, emit_fields, emit_json, note, when
from meshd.cli.parse import duration, prefix, read_secret_argument
from meshd.control.client import ask
from meshd.control.commands import InviteBootstrapAnswer, InviteBootstrapRequest
from meshd.errors import CommandLineError, DaemonNotRunning, UsageError
from meshd.node.layout import resolve

# The trust layer (keys, records, the store) is imported inside the commands that use it, so
# that commands which only ask the daemon start instantly.
if TYPE_CHECKING:
    from meshd.node.statedir import NodeDir

RootKey = Annotated[
    Path | None,
    typer.Option("--root-key", help="The root key file, when it is not kept in the state dir."),
]


@app.command()
def init(
    network: Annotated[str, typer.Option("--network", help="The network's name.")],
    name: Annotated[
        str | None, typer.Option("--name", help="This node's name [default: host name].")
    ] = None,
    root_key: Annotated[
        Path | None,
        typer.Option("--root-key", help="Keep the root key at PATH (e.g. offline media)."),
    ] = None,
    state_dir: StateDir = None,
    json: Json = False,
    public_addr: Annotated[
        list[str] | None,
        typer.Option(
            "--public-addr",
            help="ADDRESS[:PORT] or NAME[:PORT] where members outside this network reach this "
            "node's libp2p port (repeatable); invites carry it first.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create a network: its trust root, and this node as its founding member."""
    from meshd.addressing import overlay_address
    from meshd.node.permissions import state_dir_error
    from meshd.node.statedir import init_network, now
    from meshd.trust.keys import fingerprint

    _check_name(network, "--network")
    node_name = name or socket.gethostname().split(".")[0] or "founder"
    _check_name(node_name, "--name")
    from meshd.daemon.bootstrap import check_public_addr, first_tcp_port

    for addr in public_addr or ():
        check_public_addr(addr, first_tcp_port(()))
    try:
        node = init_network(
            resolve(state_dir),
            network_name=network,
            node_name=node_name,
            root_key_path=root_key,
            at=now(),
        )
    except OSError as exc:  # a read-only or unwritable state dir, a full disk
        raise state_dir_error(resolve(state_dir), exc) from None
    try:
        if public_addr:
            node.store.set_meta("public_addrs", "\n".join(public_addr).encode())
        info = {
            "network": network,
            "network_id": fingerprint(node.anchor.root_key),
            "overlay_prefix": str(node.anchor.overlay),
            "root_key": b64(node.anchor.root_key),
            "root_key_file": str(root_key or node.paths.root_key),
            "node_id": fingerprint(node.node_key.public),
            "name": node_name,
            "overlay_ip": str(overlay_address(node.anchor.root_key, node.node_key.public)),
            "wg_public_key": b64(node.wg_key.public),
            "state_dir": str(node.paths.root),
        }
    finally:
        node.close()
    if json:
        emit_json(info)
    else:
        emit_fields(info)
        note("next: `meshd invite` to admit another machine, `meshd up` to run this node")


def _check_name(value: str, option: str) -> None:
    if not value or len(value.encode()) > 64 or not value.isprintable() or value != value.strip():
        raise CommandLineError(
            f"{option} {value!r} is not a usable name",
            hint="use up to 64 bytes of printable UTF-8 text, no leading or trailing spaces",
        )


@app.command()
def invite(
    name: Annotated[str, typer.Option("--name", help="Name the invited member will get.")] = "",
    expires: Annotated[str, typer.Option("--expires", help="How long it can be used.")] = "24h",
    uses: Annotated[
        int, typer.Option("--uses", min=1, max=1_000_000, help="How many members it admits.")
    ] = 1,
    prefixes: Annotated[
        list[str] | None,
        typer.Option("--prefix", help="A prefix its members may announce (repeatable)."),
    ] = None,
    member_ttl: Annotated[
        str, typer.Option("--member-ttl", help="How long the membership lasts.")
    ] = "365d",
    bootstrap: Annotated[
        list[str] | None,
        typer.Option("--bootstrap", help="A multiaddr the joiner dials (repeatable)."),
    ] = None,
    root_key: RootKey = None,
    state_dir: StateDir = None,
) -> None:
    """Print a one-line invite token (a secret: hand it over privately)."""
    from meshd.daemon.bootstrap import check_bootstrap
    from meshd.node.statedir import NodeDir, now
    from meshd.records import Kind, record_id
    from meshd.trust.invites import create_invite, encode_token
    from meshd.trust.keys import fingerprint

    if name:
        _check_name(name, "--name")
    lifetime = duration(expires, option="--expires")
    ttl = duration(member_ttl, option="--member-ttl")
    grants = [prefix(p) for p in prefixes or []]
    node = NodeDir.open(resolve(state_dir))
    try:
        issuer = node.issuer(root_key)
        addrs = [check_bootstrap(a) for a in bootstrap or []] or _bootstrap_addrs(node)
        at = now()
        inv = create_invite(
            issuer,
            node.anchor,
            now=at,
            lifetime=lifetime,
            uses=uses,
            name=name,
            prefixes=grants,
            member_ttl=ttl,
            bootstrap=addrs,
        )
        rid = record_id(inv.certificate.raw)
        node.store.add_issued(rid, Kind.CERTIFICATE, inv.certificate.raw, at)
        try:
            print(encode_token(inv), flush=True)
        except OSError as exc:
            # The token reached no one (a full disk, a closed pipe): the invite is not
            # kept as issued, and nobody can use it.
            node.store.remove_issued(rid)
            raise UsageError(
                f"the invite token could not be written ({exc.strerror or exc}); "
                "no invite was issued",
                hint="run `meshd invite` again with its output going somewhere that takes it",
            ) from None
    finally:
        node.close()
    note(
        f"invite {fingerprint(inv.certificate.subject)}: {uses} use(s), "
        f"valid until {when(inv.certificate.not_after)}"
        + (
            ""
            if addrs
            else "; it names no bootstrap address, so no one can join with it: run `meshd up` "
            "first (invites then carry its addresses), or give `meshd invite --bootstrap "
            "MULTIADDR` of a running member"
        )
    )


def _bootstrap_addrs(node: NodeDir) -> list[str]:
    """Addresses joiners can dial: what the running daemon listens on, or what it last used."""
    try:
        live = ask(node.paths.socket, InviteBootstrapRequest(), InviteBootstrapAnswer).addrs
    except DaemonNotRunning:
        live = None
    if live is not None:
        return [a for a in live if "/0.0.0.0/" not in a and "/::/" not in a]
    from meshd.daemon.bootstrap import invite_addrs, stored_public

    stored = node.store.get_meta("listen_addrs") or b""
    listen = [a for a in stored.decode().split("\n") if a]
    return invite_addrs(stored_public(node), listen, node.node_key.public)


@app.command()
def revoke(
    node_ref: Annotated[
        str | None,
        typer.Argument(
            metavar="NODE", help="A member's name, node id (or a prefix of it) or WireGuard key."
        ),
    ] = None,
    invite_id: Annotated[
        str | None,
        typer.Option(
            "--invite", help="Revoke an invite (and everyone admitted with it) by its id."
        ),
    ] = None,
    admin_id: Annotated[
        str | None,
        typer.Option(
            "--admin", help="Revoke an admin key (and everything issued through it) by its id."
        ),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record.")] = "",
    root_key: RootKey = None,
    state_dir: StateDir = None,
    json: Json = False,
) -> None:
    """Exclude a member, an invite or an admin key from the network, for good."""
    revoking.revoke(node_ref, invite_id, admin_id, reason, root_key, state_dir, json)


@app.command()
def inspect(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TOKEN|FILE",
            help="An invite token ('-' reads it from stdin), or a key, record or token file "
            "(also as '@FILE').",
        ),
    ],
    state_dir: StateDir = None,
    json: Json = False,
) -> None:
    """Decode, verify and explain an invite token, a key file or a record file."""
    from meshd.cli.inspect import inspect_target
    from meshd.node.statedir import now

    if target == "-":
        target = read_secret_argument(target, "TOKEN")  # a token on stdin, as `join --invite -`
    elif target.startswith("@"):
        target = target[1:]  # @FILE, as `join --invite @FILE`: the file, whatever it holds
    info = inspect_target(target, resolve(state_dir), now())
    if json:
        emit_json(info)
    else:
        emit_fields(info)


admin_app = typer.Typer(help="Delegate admin keys.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")


@admin_app.command("create")
def admin_create(
    out: Annotated[
        Path,
        typer.Option("--out", help="State dir (or folder) to write admin.key and admin.cert into."),
    ],
    name: Annotated[str, typer.Option("--name", help="Who holds it.")] = "admin",
    caps: Annotated[
        str, typer.Option("--caps", help="Comma-separated: invite, revoke.")
    ] = "invite,revoke",
    expires: Annotated[str, typer.Option("--expires", help="How long it is valid.")] = "365d",
    prefixes: Annotated[
        list[str] | None,
        typer.Option(
            "--prefix", help="Prefixes it may grant [default: the network's overlay /48]."
        ),
    ] = None,
    root_key: RootKey = None,
    state_dir: StateDir = None,
    json: Json = False,
) -> None:
    """Certify a new admin key with the root key, for another person or machine."""
    import os

    from meshd.node.statedir import NodeDir, make_dir, now
    from meshd.records import ALL_CAPS, Cap, Kind, Role, make_certificate, record_id
    from meshd.trust.keyfiles import write_secret
    from meshd.trust.keys import SigningKey, fingerprint

    wanted = Cap.NONE
    for item in (c.strip().lower() for c in caps.split(",") if c.strip()):
        if item not in ("invite", "revoke"):
            raise CommandLineError(
                f"unknown capability {item!r}", hint="use invite, revoke or both"
            )
        wanted |= Cap.INVITE if item == "invite" else Cap.REVOKE
    if wanted == Cap.NONE:
        raise CommandLineError(
            "--caps names no capability: such an admin could do nothing",
            hint="use invite, revoke or both",
        )
    lifetime = duration(expires, option="--expires")
    node = NodeDir.open(resolve(state_dir))
    try:
        issuer = node.issuer(root_key)
        if issuer.certificate is not None:
            raise UsageError(
                "only the root key can certify admins",
                hint="run this where the root key is, or pass --root-key",
            )
        grants = [prefix(p) for p in prefixes or []] or [node.anchor.overlay]
        key = SigningKey.generate()
        at = now()
        cert = make_certificate(
            issuer.key,
            network_id=node.anchor.network_id,
            subject=key.public,
            role=Role.ADMIN,
            serial=os.urandom(16),
            not_before=at,
            not_after=at + lifetime,
            caps=wanted & ALL_CAPS,
            name=name,
            prefixes=grants,
        )
        make_dir(out)
        write_secret(out / "admin.key", key.seed)
        (out / "admin.cert").write_bytes(cert.raw)
        node.store.add_issued(record_id(cert.raw), Kind.CERTIFICATE, cert.raw, at)
    finally:
        node.close()
    info: dict[str, Any] = {
        "admin_id": fingerprint(key.public),
        "name": name,
        "caps": [c for c in ("invite", "revoke") if c in caps],
        "valid_until": when(at + lifetime),
        "written_to": str(out),
    }
    emit_json(info) if json else emit_fields(info)
