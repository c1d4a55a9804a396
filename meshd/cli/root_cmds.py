"""``meshd root rollover`` and ``meshd admin renew``: a planned change of the root key.

A rollover (docs/wire-format.md §6.11) is signed by the current root. In the same step every
standing member is certified again by the new root (a member certificate with its name, key,
grants and remaining validity), so that nobody drops out when the overlap ends; every
revocation in the set is copied under the new root (a revocation counts only while its root is
accepted); and every admin known here (its certificate issued here, or carried by a member's
credential) is certified again under the new root, same key, capabilities, name, prefixes and
end, written to ``--admin-certs`` for the admin to install as its ``admin.cert``. ``meshd
admin renew`` certifies any other admin again.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshd.cli.app import Json, StateDir, app
from meshd.cli.commands import RootKey, admin_app
from meshd.cli.output import b64, emit_fields, emit_json, when
from meshd.cli.parse import duration
from meshd.control.client import ask
from meshd.control.commands import PublishAnswer, PublishRequest
from meshd.errors import CommandLineError, DaemonNotRunning, MeshdError, UsageError
from meshd.node.layout import resolve

if TYPE_CHECKING:
    from meshd.membership import Membership
    from meshd.node.statedir import NodeDir
    from meshd.records import AdminHandover, Certificate, Record
    from meshd.trust.keys import SigningKey

root_app = typer.Typer(help="Hand the network over to a new root key.", no_args_is_help=True)
app.add_typer(root_app, name="root")


@root_app.command("rollover")
def rollover(
    overlap: Annotated[
        str,
        typer.Option("--overlap", help="How long certificates under the old root stay accepted."),
    ] = "30d",
    new_root_key: Annotated[
        Path | None,
        typer.Option(
            "--new-root-key",
            help="Where to write the new root key [default: root.key in the state dir, "
            "replacing the old one].",
        ),
    ] = None,
    admin_certs: Annotated[
        Path | None,
        typer.Option(
            "--admin-certs",
            help="Where to write the admins' new certificates, one <admin id>.cert each "
            "[default: rollover-admin-certs in the state dir].",
        ),
    ] = None,
    root_key: RootKey = None,
    state_dir: StateDir = None,
    json: Json = False,
) -> None:
    """Hand the network over to a new root key, with an overlap; certify every standing
    member and every known admin again under it, and copy every revocation under it. The
    network id, overlay prefix and members' addresses stay."""
    from meshd.daemon.renew_policy import carry_revocations
    from meshd.node.statedir import NodeDir, now
    from meshd.records import (
        AdminHandover,
        Kind,
        Revocation,
        Role,
        make_certificate,
        make_rollover,
    )
    from meshd.records import record_id as rid_of
    from meshd.trust.invites import Issuer
    from meshd.trust.keyfiles import replace_secret, write_secret
    from meshd.trust.keys import SigningKey, fingerprint

    window = duration(overlap, option="--overlap")
    at = now()
    node = NodeDir.open(resolve(state_dir))
    try:
        issuer = node.issuer(root_key)
        if issuer.certificate is not None:
            raise UsageError(
                "only the root key can roll the root over",
                hint="run this where the root key is, or pass --root-key",
            )
        state = node.membership(at)
        if issuer.key.public != state.roots.current():
            raise UsageError(
                "this root key has already been rolled over",
                hint="use the current root key (`meshd status` names it)",
            )
        in_state_dir = new_root_key is None
        if root_key is not None and new_root_key is None:
            raise CommandLineError(
                "the root key is kept outside the state dir: say where the new one goes",
                hint="pass --new-root-key PATH",
            )
        if new_root_key is not None and new_root_key.exists():
            raise UsageError(f"{new_root_key} already exists", hint="choose a new path")
        new = SigningKey.generate()
        record = make_rollover(
            issuer.key,
            network_id=node.anchor.network_id,
            new_root=new.public,
            issued_at=at,
            overlap_until=at + window,
        )
        # The new key is kept before anything is signed by it or published.
        kept_at = new_root_key or node.paths.root_key
        if in_state_dir:
            replace_secret(kept_at, new.seed)
        else:
            write_secret(kept_at, new.seed)
        records: list[Record] = [record]
        for member in state.members(at):
            if member.state.value != "admitted" or member.not_after <= at:
                continue
            records.append(
                make_certificate(
                    new,
                    network_id=node.anchor.network_id,
                    subject=member.node_key,
                    role=Role.MEMBER,
                    serial=os.urandom(16),
                    not_before=at,
                    not_after=member.not_after,
                    name=member.name,
                    prefixes=state.grants(member.node_key)[1:],
                    wg_key=member.wg_key,
                )
            )
        members = len(records) - 1
        # Every revocation copied under the new root: the rollover is merged first, so the
        # old root's revocations are the retiring root's, and none is carried yet.
        state.ingest(record, at)
        records += carry_revocations(state, Issuer(new), node.anchor.network_id, at)
        admins = _admins_again(node, state, new, at)
        records += _handovers_again(node, state, new, admins, at)
        where = _publish(node, records, at)
        folder = admin_certs or node.paths.root / "rollover-admin-certs"
        if admins:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for cert in admins:
            (folder / f"{fingerprint(cert.subject)}.cert").write_bytes(cert.raw)
            node.store.add_issued(rid_of(cert.raw), Kind.CERTIFICATE, cert.raw, at)
    finally:
        node.close()
    info: dict[str, Any] = {
        "old_root": fingerprint(issuer.key.public),
        "new_root": fingerprint(new.public),
        "overlap_until": when(at + window),
        "members_certified_again": members,
        "revocations_copied": sum(isinstance(r, Revocation) for r in records),
        "admins_certified_again": len(admins),
        "admin_handovers_copied": sum(isinstance(r, AdminHandover) for r in records),
        "admin_certs": str(folder) if admins else None,
        "new_root_key": str(kept_at),
        "where": where,
    }
    emit_json(info) if json else emit_fields(info)


@admin_app.command("renew")
def admin_renew(
    cert: Annotated[
        Path | None,
        typer.Option("--cert", help="The admin's current admin.cert (read, not changed)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the new certificate.")
    ] = None,
    admin_dir: Annotated[
        Path | None,
        typer.Option(
            "--admin-dir",
            help="The folder holding the admin's admin.key and admin.cert: the new certificate "
            "is installed there [default: the state dir, when it holds admin.key].",
        ),
    ] = None,
    expires: Annotated[str, typer.Option("--expires", help="How long it is valid.")] = "365d",
    root_key: RootKey = None,
    state_dir: StateDir = None,
    json: Json = False,
) -> None:
    """Certify an admin's key again under the current root (renewal, or after a rollover):
    same key, capabilities, name and prefixes. Where the admin key is (the state dir, or
    --admin-dir), the new certificate replaces its admin.cert; with --cert and --out, it is
    written to --out, to install by hand."""
    from meshd.cli.admin_cmds import read_admin
    from meshd.errors import DecodeError
    from meshd.node.statedir import NodeDir, now
    from meshd.records import Certificate, Kind, Role, decode_untrusted
    from meshd.records import record_id as rid_of
    from meshd.records.build import recertify
    from meshd.trust.keys import fingerprint

    lifetime = duration(expires, option="--expires")
    root = resolve(state_dir)
    install: Path | None = None
    if cert is None:
        if out is not None:
            raise CommandLineError(
                "--out needs --cert", hint="pass --cert FILE too, or --admin-dir"
            )
        folder = admin_dir or root
        old = read_admin(folder)[1]
        install = folder / "admin.cert"
    else:
        try:
            old = decode_untrusted(cert.read_bytes(), Certificate)
        except (OSError, DecodeError) as exc:
            raise UsageError(f"{cert} is not an admin certificate: {exc}") from None
        if old.role is not Role.ADMIN:
            raise UsageError(f"{cert} is not an admin certificate")
        if out is None:
            folder = admin_dir or root
            if not (folder / "admin.key").exists() or read_admin(folder)[0].public != old.subject:
                raise CommandLineError(
                    f"the key of {cert} is not in {folder}: say where the new certificate goes",
                    hint="pass --out FILE, or --admin-dir with the folder holding its admin.key",
                )
            install = folder / "admin.cert"
    at = now()
    node = NodeDir.open(root)
    try:
        issuer = node.issuer(root_key)
        if issuer.certificate is not None:
            raise UsageError("only the root key can certify admins", hint="pass --root-key")
        if old.network_id != node.anchor.network_id:
            where = cert or folder / "admin.cert"
            raise UsageError(
                f"{where} belongs to another network than {root}'s",
                hint="renew it with the --state-dir (or --root-key) of the network that made it",
            )
        state = node.membership(at)
        if state.is_revoked(old.subject):
            raise UsageError("this admin key is revoked", hint="create a new admin instead")
        if state.admin_cutoff(old.subject) is not None:
            raise UsageError(
                "this admin key has been replaced (meshd admin rotate)",
                hint="renew its successor: the admin.cert in the folder that held it",
            )
        new = recertify(
            issuer.key,
            old,
            network_id=node.anchor.network_id,
            not_before=at,
            not_after=at + lifetime,
        )
        target = install or out
        if target is None:  # not reached: --cert without --out installs, or is refused
            raise CommandLineError("say where the new certificate goes", hint="pass --out FILE")
        if install is None and target.exists():
            raise UsageError(f"{target} already exists", hint="choose a new path")
        if install is not None:
            staged = install.with_name(install.name + ".next")
            staged.write_bytes(new.raw)
            os.replace(staged, install)  # a reader sees the old certificate or the new one
        else:
            target.write_bytes(new.raw)
        node.store.add_issued(rid_of(new.raw), Kind.CERTIFICATE, new.raw, at)
    finally:
        node.close()
    info = {
        "admin_id": fingerprint(old.subject),
        "name": old.name,
        "valid_until": when(at + lifetime),
        ("installed" if install is not None else "written_to"): str(target),
    }
    if json:
        emit_json(info)
    elif install is not None:
        typer.echo(
            f"renewed admin {info['admin_id']} ({old.name}) until {info['valid_until']}: "
            f"installed as {install}, replacing the certificate valid until {when(old.not_after)}"
        )
    else:
        emit_fields(info)


def _admins_again(node: NodeDir, state: Membership, new: SigningKey, at: int) -> list[Certificate]:
    """A certificate under ``new`` for every admin known here that is neither revoked, nor
    ended, nor handed over (``meshd admin rotate``: its successor is certified instead):
    same key, capabilities, name, prefixes and end."""
    from meshd.records import Certificate, Kind, Role, decode_untrusted
    from meshd.records.build import recertify

    known = list(state.issuing_certificates())
    for raw in node.store.issued(Kind.CERTIFICATE):
        with contextlib.suppress(MeshdError):
            known.append(decode_untrusted(raw, Certificate))
    latest: dict[bytes, Certificate] = {}
    for cert in known:
        if cert.role is not Role.ADMIN or cert.not_after <= at or state.is_revoked(cert.subject):
            continue
        if state.admin_cutoff(cert.subject) is not None:
            continue
        if cert.subject not in latest or cert.not_after > latest[cert.subject].not_after:
            latest[cert.subject] = cert
    return [
        recertify(
            new, cert, network_id=node.anchor.network_id, not_before=at, not_after=cert.not_after
        )
        for cert in latest.values()
    ]


def _handovers_again(
    node: NodeDir, state: Membership, new: SigningKey, admins: list[Certificate], at: int
) -> list[AdminHandover]:
    """A copy under ``new`` of every admin key hand-over in the set, with its cut-off: a
    hand-over counts only while the root that signed it is accepted (docs/wire-format.md
    §6.13). Its successor's certificate is the one certified again for it (``admins``)."""
    from meshd.records import make_admin_handover
    from meshd.records.build import recertify

    again = {cert.subject: cert for cert in admins}
    copies = []
    seen: set[tuple[bytes, int, bytes]] = set()
    for handover in state.admin_handovers():
        # One copy per hand-over, not one of it and one of its copy (a second rollover).
        same = (handover.old_key, handover.issued_at, handover.new_key)
        if same in seen:
            continue
        seen.add(same)
        successor = again.get(handover.new_key) or recertify(
            new,
            handover.new_cert,
            network_id=node.anchor.network_id,
            not_before=at,
            not_after=handover.new_cert.not_after,
        )
        copies.append(
            make_admin_handover(
                new,
                network_id=node.anchor.network_id,
                old_cert=handover.old_cert,
                new_cert=successor,
                issued_at=handover.issued_at,
            )
        )
    return copies


def _publish(node: NodeDir, records: list[Record], at: int) -> str:
    """Hand the records to the running daemon (stored and flooded at once), else store them
    here (the daemon floods them by sync when it runs)."""
    try:
        for record in records:
            publish = PublishRequest(b64(record.raw))
            ask(node.paths.socket, publish, PublishAnswer, timeout=10.0)
    except DaemonNotRunning:
        state = node.membership(at)
        node.store.apply([state.ingest(record, at) for record in records])
        return "stored; members learn it by sync when the daemon runs"
    return "stored and flooded by the running daemon"
