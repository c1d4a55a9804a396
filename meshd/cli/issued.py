"""``meshd invites`` and ``meshd admins``: what this node issued, and where each stands.

Read from the state dir's store (what ``meshd invite`` and ``meshd admin create`` recorded
there) and judged against the membership held in that store: with a daemon running, that
is what the daemon wrote (SQLite in WAL mode reads beside it). The trust layer is imported
inside the commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshd.cli.app import Json, StateDir, app
from meshd.cli.output import emit_json, emit_table, when
from meshd.node.layout import resolve

if TYPE_CHECKING:
    from meshd.membership import Membership
    from meshd.records import Certificate, Revocation


def _state(cert: Certificate, revoked: bool, at: int, uses_left: int | None) -> str:
    if revoked:
        return "revoked"
    if cert.not_after < at:
        return "expired"
    if uses_left == 0:
        return "used-up"
    return "open" if uses_left is not None else "valid"


def issued_rows(
    role_name: str, at: int | None = None, state_dir: Any = None
) -> list[dict[str, Any]]:
    """One row per certificate of ``role_name`` (``invite`` or ``admin``) this node issued."""
    from meshd.node.statedir import NodeDir, now
    from meshd.records import Cap, Certificate, Kind, Role, decode_untrusted
    from meshd.trust.keys import fingerprint

    role = Role.INVITE if role_name == "invite" else Role.ADMIN
    at = now() if at is None else at
    node = NodeDir.open(resolve(state_dir))
    try:
        membership: Membership = node.membership(at)
        revoked: dict[bytes, Revocation] = {}
        for known in membership.revocations():
            revoked.setdefault(known.target, known)
        rows = []
        for raw in node.store.issued(Kind.CERTIFICATE):
            cert = decode_untrusted(raw, Certificate)
            if cert.role is not role:
                continue
            revocation = revoked.get(cert.subject)
            row: dict[str, Any] = {
                "id": fingerprint(cert.subject),
                "name": cert.name,
                "issued_at": cert.not_before,
                "expires_at": cert.not_after,
            }
            uses_left = None
            if role is Role.INVITE:
                used = membership.invite_uses(cert.subject)
                uses_left = max(0, cert.max_uses - used)
                row.update(uses=cert.max_uses, used=used, uses_left=uses_left)
            else:
                row["caps"] = [
                    name
                    for cap, name in ((Cap.INVITE, "invite"), (Cap.REVOKE, "revoke"))
                    if cap in cert.caps
                ]
            row["state"] = _state(cert, revocation is not None, at, uses_left)
            row["revocation_reason"] = revocation.reason if revocation is not None else None
            rows.append(row)
        return rows
    finally:
        node.close()


def _state_text(row: dict[str, Any]) -> str:
    reason = row.get("revocation_reason")
    return f"{row['state']} ({reason})" if reason else row["state"]


@app.command()
def invites(state_dir: StateDir = None, json: Json = False) -> None:
    """List the invites this node issued: id, name, uses left, expiry and state."""
    rows = issued_rows("invite", state_dir=state_dir)
    if json:
        emit_json(rows)
        return
    emit_table(
        ["id", "name", "uses left", "expires", "state"],
        [
            [
                r["id"],
                r["name"] or "-",
                f"{r['uses_left']}/{r['uses']}",
                when(r["expires_at"]),
                _state_text(r),
            ]
            for r in rows
        ],
    )


@app.command()
def admins(state_dir: StateDir = None, json: Json = False) -> None:
    """List the admin keys this node certified: id, name, capabilities, expiry and state."""
    rows = issued_rows("admin", state_dir=state_dir)
    if json:
        emit_json(rows)
        return
    emit_table(
        ["id", "name", "caps", "expires", "state"],
        [
            [
                r["id"],
                r["name"] or "-",
                ",".join(r["caps"]) or "-",
                when(r["expires_at"]),
                _state_text(r),
            ]
            for r in rows
        ],
    )
