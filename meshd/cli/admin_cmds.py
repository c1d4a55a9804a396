"""``meshd admin rotate``: replace an admin key, keeping what it issued (wire-format §6.13).

The root certifies a new key with the old one's grants and the rest of its validity, and signs
a hand-over: what the old key signed until now keeps standing (its invites, members, renewals,
revocations); nothing it signs dated later counts anywhere. The new key and certificate take
the old ones' place in the admin's folder (``admin.key`` 0600, ``admin.cert``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshd.cli.app import Json, StateDir
from meshd.cli.commands import RootKey, admin_app
from meshd.cli.output import emit_fields, emit_json, when
from meshd.errors import DecodeError, KeyFileError, UsageError, VerifyError
from meshd.node.layout import resolve

if TYPE_CHECKING:
    from meshd.membership import Membership
    from meshd.records import Certificate
    from meshd.trust.keys import SigningKey

NEXT = ".next"  # suffix of the new key and certificate until they take the old ones' place

AdminDir = Annotated[
    Path | None,
    typer.Option(
        "--admin-dir",
        help="The folder holding the admin's admin.key and admin.cert (as `meshd admin create "
        "--out` wrote them) [default: the state dir].",
    ),
]


def read_admin(folder: Path) -> tuple[SigningKey, Certificate]:
    """The admin key and certificate kept in ``folder``; UsageError when they are unusable."""
    from meshd.records import Certificate as Cert
    from meshd.records import Role, decode_untrusted
    from meshd.trust.keyfiles import read_secret
    from meshd.trust.keys import SigningKey

    key_path, cert_path = folder / "admin.key", folder / "admin.cert"
    if not key_path.exists():
        raise UsageError(
            f"{key_path} does not exist: no admin key here",
            hint="pass --admin-dir with the folder holding admin.key and admin.cert",
        )
    try:
        key = SigningKey(read_secret(key_path))
        cert = decode_untrusted(cert_path.read_bytes(), Cert)
    except (OSError, DecodeError, KeyFileError) as exc:
        raise UsageError(f"the admin files in {folder} are unusable: {exc}") from None
    if cert.role is not Role.ADMIN or cert.subject != key.public:
        raise UsageError(f"{cert_path} is not the admin certificate of {key_path}")
    return key, cert


def check_replaceable(state: Membership, cert: Certificate, at: int) -> None:
    """Refuse to hand over an admin key that is unknown here, revoked, ended or replaced."""
    try:
        state.verifier.certificate(cert)
    except VerifyError as exc:
        raise UsageError(f"the admin certificate does not verify here: {exc}") from None
    if state.is_revoked(cert.subject):
        raise UsageError(
            "this admin key is revoked: what it issued stands no more",
            hint="certify a new admin with `meshd admin create`",
        )
    if state.admin_cutoff(cert.subject) is not None:
        raise UsageError(
            "this admin key has already been replaced",
            hint="the folder should hold its successor; check `meshd inspect admin.cert`",
        )
    if cert.not_after <= at:
        raise UsageError(
            "this admin key's certificate has ended", hint="renew it first: meshd admin renew"
        )


def _finish(state: Membership, old: Certificate, folder: Path) -> bool:
    """Finish a rotation cut short after its hand-over was stored: the new key and
    certificate left as ``.next`` go in place. Whether it did."""
    from meshd.records import Certificate as Cert
    from meshd.records import decode_untrusted
    from meshd.trust.keyfiles import read_secret
    from meshd.trust.keys import SigningKey

    key_next = folder / ("admin.key" + NEXT)
    cert_next = folder / ("admin.cert" + NEXT)
    if state.admin_cutoff(old.subject) is None or not (key_next.exists() and cert_next.exists()):
        return False
    try:
        key = SigningKey(read_secret(key_next))
        cert = decode_untrusted(cert_next.read_bytes(), Cert)
    except (OSError, DecodeError, KeyFileError):
        return False
    if cert.subject != key.public:
        return False
    os.replace(cert_next, folder / "admin.cert")
    os.replace(key_next, folder / "admin.key")
    return True


@admin_app.command("rotate")
def admin_rotate(
    admin_dir: AdminDir = None,
    root_key: RootKey = None,
    state_dir: StateDir = None,
    json: Json = False,
) -> None:
    """Replace an admin key: what it issued keeps standing, nothing it signs from now counts.

    Run where the root key is (in the state dir, or --root-key). The new key (0600) and its
    certificate (same capabilities, name and prefixes, valid as long as the old one) replace
    admin.key and admin.cert in --admin-dir; the hand-over is stored, and flooded by the
    running daemon when there is one.
    """
    from meshd.cli.root_cmds import _publish
    from meshd.node.statedir import NodeDir, now
    from meshd.records import Kind, make_admin_handover, record_id
    from meshd.records.build import recertify
    from meshd.trust.keyfiles import write_secret
    from meshd.trust.keys import SigningKey, fingerprint

    at = now()
    root = resolve(state_dir)
    folder = admin_dir or root
    finished = False
    node = NodeDir.open(root)
    try:
        issuer = node.issuer(root_key)
        if issuer.certificate is not None:
            raise UsageError(
                "only the root key can replace an admin key",
                hint="run this where the root key is, or pass --root-key",
            )
        old_key, old = read_admin(folder)
        state = node.membership(at)
        if issuer.key.public != state.roots.current():
            raise UsageError(
                "this root key has been rolled over",
                hint="use the current root key (`meshd status` names it)",
            )
        key_next = folder / ("admin.key" + NEXT)
        cert_next = folder / ("admin.cert" + NEXT)
        if _finish(state, old, folder):
            finished = True
            return
        check_replaceable(state, old, at)
        for leftover in (key_next, cert_next):
            if leftover.exists():
                raise UsageError(
                    f"{leftover} exists: an admin key rotation was cut short",
                    hint="remove it and run this again",
                )
        new = SigningKey.generate()
        write_secret(key_next, new.seed)  # the new key is kept before anything is signed
        cert = recertify(
            issuer.key,
            old,
            network_id=node.anchor.network_id,
            subject=new.public,
            not_before=at,
            not_after=old.not_after,
        )
        record = make_admin_handover(
            issuer.key,
            network_id=node.anchor.network_id,
            old_cert=old,
            new_cert=cert,
            issued_at=at,
        )
        cert_next.write_bytes(cert.raw)
        where = _publish(node, [record], at)
        node.store.add_issued(record_id(cert.raw), Kind.CERTIFICATE, cert.raw, at)
        os.replace(cert_next, folder / "admin.cert")
        os.replace(key_next, folder / "admin.key")
    finally:
        node.close()
        if finished:
            key = read_admin(folder)[0]
            typer.echo(
                f"finished a rotation cut short: admin {fingerprint(old_key.public)} was handed "
                f"over to {fingerprint(key.public)}, now in place in {folder}"
            )
    info: dict[str, Any] = {
        "old_admin_id": fingerprint(old_key.public),
        "admin_id": fingerprint(new.public),
        "name": old.name,
        "valid_until": when(old.not_after),
        "cut_off": when(at),
        "written_to": str(folder),
        "where": where,
    }
    emit_json(info) if json else emit_fields(info)
