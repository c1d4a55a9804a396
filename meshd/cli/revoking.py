"""What ``meshd revoke`` does: sign a revocation here, then hand it to the running daemon.

It runs both through the typer app and through the quick path (meshd.cli.quick). When a
daemon runs, the member list and what the target countersigned (the revocation lists it, see
Revocation.sponsored) come from it, and the store is not loaded. The trust layer
(keys, records, the state dir) is imported inside :func:`revoke`, never at the top.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol, TypeVar

from meshd.cli.output import b64, emit_json, note, when
from meshd.control.client import ask
from meshd.control.commands import (
    PeerRow,
    PeersAnswer,
    PeersRequest,
    PublishAnswer,
    PublishRequest,
    RevokeAnswer,
    RevokeRequest,
    SponsoredAnswer,
    SponsoredRequest,
)
from meshd.control.typed_json import decode_answer, to_json
from meshd.errors import (
    CommandLineError,
    ControlDecodeError,
    DaemonNotRunning,
    MeshdError,
    UsageError,
)
from meshd.node.layout import Paths, resolve

if TYPE_CHECKING:
    from meshd.membership import Member, Membership
    from meshd.node.statedir import NodeDir
    from meshd.records import Certificate, Revocation, Role
    from meshd.trust.invites import Issuer


KEPT_FOR_GOOD: Final = 2**64 - 1
"""The ``expires_at`` of every revocation ``meshd revoke`` makes: never pruned. A member's
end known to the revoker was not its last: renewals made elsewhere, or of a key its
membership was handed over from, carried it further, and an invite's members can be
renewed for years; a revocation that expired before them let them stand again where it was
pruned (a restart, a node that joined later). An ended member is revoked all the same (its
end was in the past: the revocation was refused as expired)."""


def revoke(
    node_ref: str | None = None,
    invite_id: str | None = None,
    admin_id: str | None = None,
    reason: str = "",
    root_key: Path | None = None,
    state_dir: Path | None = None,
    json: bool = False,
) -> None:
    """Exclude a member, an invite or an admin key from the network, for good."""
    if sum(x is not None for x in (node_ref, invite_id, admin_id)) != 1:
        raise CommandLineError(
            "name exactly one thing to revoke", hint="give a NODE, or --invite ID, or --admin ID"
        )
    if len(reason.encode()) > 256 or not reason.isprintable():
        raise CommandLineError("--reason must be printable and at most 256 bytes")
    if node_ref is not None and root_key is None:
        # A running daemon has the membership and the trust layer loaded: it signs with this
        # node's key (when the caller could read it), stores and floods at once; this process
        # then imports nothing heavy and makes one round trip.
        answer = _daemon_revoke(state_dir, node_ref, reason)
        if answer is not None:
            _show(answer, "stored and flooded by the running daemon", json)
            return
    from meshd.node.statedir import NodeDir, now
    from meshd.records import Cap

    at = now()
    node = NodeDir.open(resolve(state_dir))
    try:
        issuer = node.issuer(root_key)
        issuer.require(Cap.REVOKE)
        rows = _daemon_peers(node)
        state = None
        if rows is not None and node_ref is not None:
            # A daemon runs: it knows the members; no need to load and verify the store here.
            candidates = [_candidate_from_row(r) for r in rows]
        else:
            state = node.membership(at)
            candidates = [_candidate_from_member(m) for m in state.members(at)]
        target, role, expires_at, label = _revocation_target(
            node, state, candidates, node_ref, invite_id, admin_id, at
        )
        # What the target (or a member under it) countersigned, as known here: those
        # admissions keep standing; any other countersignature of the target does not,
        # whatever its date. A long list is spread over several revocations. `relisted`:
        # revoked already, but only by legacy revocations (without a list, from releases
        # before it), so its countersignatures are still judged by their dates and it could
        # backdate one; a listed revocation closes that.
        known = _daemon_sponsored(node, target) if state is None else None
        if known is not None:
            sponsored, relisted = known
        else:
            if state is None:
                state = node.membership(at)
            sponsored = state.sponsored_by(target)
            relisted = state.only_legacy_revocations(target)
        revocations = build_revocations(
            issuer, node.anchor.network_id, target, role, at, expires_at, reason, sponsored
        )
        revocation = revocations[0]
        new = False
        excluded: list[str] = []
        if rows is not None:
            # The daemon verifies it, makes it durable, then floods it at once.
            for record in revocations:
                published = ask(
                    node.paths.socket,
                    PublishRequest(b64(record.raw)),
                    PublishAnswer,
                    timeout=10.0,
                )
                new = new or published.new
                excluded += published.excluded
            where = "stored and flooded by the running daemon"
        else:
            if state is None:
                state = node.membership(at)
            outcomes = [state.ingest(record, at) for record in revocations]
            node.store.apply(outcomes)  # durable before anything else happens
            new = any(outcome.new for outcome in outcomes)
            excluded = [
                e.member.name or e.member.node_id for outcome in outcomes for e in outcome.events
            ]
            where = "stored; the daemon floods it to every member when it runs (`meshd up`)"
    finally:
        node.close()
    info = revocation_info(
        revocation.raw, label, role, target, reason, excluded, len(sponsored), relisted, new
    )
    _show(decode_answer(RevokeAnswer, info), where, json)


def _show(info: RevokeAnswer, where: str, json: bool) -> None:
    if json:
        emit_json(to_json(info))
    else:
        excluded = info.excluded
        excluded_text = f"; excluded: {', '.join(excluded)}" if excluded else ""
        print(f"revoked {info.target}{excluded_text}")
        if info.relisted:
            note(
                "it was revoked before, by legacy revocations only (without a list); this one "
                f"lists the {info.sponsored_kept} admission(s) it countersigned before them, "
                "and no other countersignature of it stands any more, whatever its date"
            )
        note(where)


def build_revocations(
    issuer: Issuer,
    network_id: bytes,
    target: bytes,
    role: Role,
    at: int,
    expires_at: int,
    reason: str,
    sponsored: Sequence[bytes],
) -> list[Revocation]:
    """The revocation(s) of ``target``: the admissions it countersigned that keep standing
    are listed, a long list spread over several revocations."""
    from meshd.records import MAX_SPONSORED, make_revocation

    chunks = [
        list(sponsored[i : i + MAX_SPONSORED]) for i in range(0, len(sponsored), MAX_SPONSORED)
    ] or [[]]
    return [
        make_revocation(
            issuer.key,
            network_id=network_id,
            target=target,
            target_role=role,
            issued_at=at,
            expires_at=expires_at,
            reason=reason,
            chain=issuer.chain,
            sponsored=chunk,
        )
        for chunk in chunks
    ]


def revocation_info(
    raw: bytes,
    label: str,
    role: Role,
    target: bytes,
    reason: str,
    excluded: Sequence[str],
    sponsored_kept: int,
    relisted: bool,
    new: bool,
) -> dict[str, Any]:
    """What ``meshd revoke`` reports (``--json`` prints it as it is)."""
    from meshd.records import record_id
    from meshd.trust.keys import fingerprint

    return {
        "revocation_id": record_id(raw).hex(),
        "target": label,
        "target_role": role.name.lower(),
        "target_id": fingerprint(target),
        "reason": reason,
        "excluded": list(dict.fromkeys(excluded)),
        "sponsored_kept": sponsored_kept,
        "relisted": relisted,
        "new": new,
    }


class _Candidate(NamedTuple):
    """A member as `revoke NODE` matches it, from the store or from the daemon (a NamedTuple:
    the quick path does not import dataclasses)."""

    node_key: bytes
    node_id: str
    name: str
    wg_key: str  # base64, as `wg` prints it


def _candidate_from_member(member: Member) -> _Candidate:
    return _Candidate(
        member.node_key,
        member.node_id,
        member.name,
        b64(member.wg_key),
    )


def _candidate_from_row(row: PeerRow) -> _Candidate:
    return _Candidate(
        base64.b64decode(row.node_key),
        row.node_id,
        row.name,
        row.wg_public_key,
    )


def _daemon_revoke(state_dir: Path | None, node_ref: str, reason: str) -> RevokeAnswer | None:
    """Have the running daemon revoke ``node_ref``; None when no daemon runs, or an older one
    that does not know the command."""
    try:
        return ask(
            Paths(resolve(state_dir)).socket,
            RevokeRequest(node_ref, reason),
            RevokeAnswer,
            timeout=10.0,
        )
    except DaemonNotRunning:
        return None
    except (ControlDecodeError, UsageError) as exc:
        if "knows no command" in str(exc):
            return None
        raise


def _daemon_sponsored(node: NodeDir, target: bytes) -> tuple[list[bytes], bool] | None:
    """What a revocation of ``target`` lists, from the running daemon's membership (so the
    store need not be loaded and verified here); None if the daemon cannot say."""
    try:
        answer = ask(node.paths.socket, SponsoredRequest(target.hex()), SponsoredAnswer)
        return [bytes.fromhex(rid) for rid in answer.sponsored], answer.legacy_only
    except (MeshdError, ValueError):
        return None  # an older daemon, or none: the store is read instead


def _daemon_peers(node: NodeDir) -> tuple[PeerRow, ...] | None:
    """The running daemon's member list, or None when no daemon runs for this state dir."""
    try:
        return ask(node.paths.socket, PeersRequest(), PeersAnswer).rows
    except DaemonNotRunning:
        return None


def _revocation_target(
    node: NodeDir,
    state: Membership | None,
    candidates: list[_Candidate],
    node_ref: str | None,
    invite_id: str | None,
    admin_id: str | None,
    at: int,
) -> tuple[bytes, Role, int, str]:
    from meshd.records import Role
    from meshd.trust.keys import fingerprint

    if node_ref is not None:
        member = resolve_member(candidates, node_ref)
        if member.node_key == node.node_key.public:
            raise UsageError(
                "this node cannot revoke itself",
                hint="revoke it from another node that holds the root or an admin key",
            )
        # Kept for good (KEPT_FOR_GOOD): a membership can outlive any end known here.
        return (
            member.node_key,
            Role.MEMBER,
            KEPT_FOR_GOOD,
            f"{member.name} ({member.node_id})",
        )
    if state is None:
        state = node.membership(at)
    certs = _known_certificates(node, state)
    wanted = Role.INVITE if invite_id is not None else Role.ADMIN
    ref = (invite_id or admin_id or "").lower()
    matches = {
        c.subject: c for c in certs if c.role is wanted and fingerprint(c.subject).startswith(ref)
    }
    kind = wanted.name.lower()
    if not ref or not matches:
        raise UsageError(
            f"no {kind} known here has the id {ref!r}",
            hint=f"use the id `meshd inspect` shows for the {kind}",
        )
    if len(matches) > 1:
        raise UsageError(f"{ref!r} matches {len(matches)} {kind}s", hint="give more of the id")
    cert = next(iter(matches.values()))
    label = f"{kind} {fingerprint(cert.subject)}"
    cutoff = state.admin_cutoff(cert.subject) if wanted is Role.ADMIN else None
    if cutoff is not None:
        # A revocation of a key handed over wins over the hand-over (wire-format §6.13).
        label += f" (replaced {when(cutoff)}: its successor is revoked with it)"
    return cert.subject, wanted, KEPT_FOR_GOOD, label


def _known_certificates(node: NodeDir, state: Membership) -> list[Certificate]:
    """Invite and admin certificates issued here or seen in members' credentials."""
    from meshd.records import Certificate, Kind, decode_untrusted

    issued = [decode_untrusted(raw, Certificate) for raw in node.store.issued(Kind.CERTIFICATE)]
    return issued + state.issuing_certificates()


class _Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def wg_key(self) -> bytes: ...

    @property
    def node_id(self) -> str: ...


_N = TypeVar("_N", bound=_Named)


def matching(members: Sequence[_N], ref: str) -> list[_N]:
    """The members :func:`resolve_member` would pick ``ref`` from (those of that name, else
    of that WireGuard key, else whose node id starts with it), each field read only when its
    turn comes: at 10,000 members a candidate made of each first (its node id, its key's
    base64) took ~0.1 s, where names alone take ~1 ms."""
    found = [m for m in members if m.name == ref]
    if found:
        return found
    key = _canonical_key(ref)
    if key is not None:
        found = [m for m in members if m.wg_key == key]
        if found:
            return found
    if len(ref) < 4:
        return []
    prefix = ref.lower()
    return [m for m in members if m.node_id.startswith(prefix)]


def _canonical_key(text: str) -> bytes | None:
    """The 32 bytes ``text`` is the base64 of, exactly as `wg` prints it; None for anything
    else (what resolve_member's comparison of texts would say)."""
    from meshd.wg.model import key_from_base64  # the daemon's side alone: no dataclasses here

    try:
        key = key_from_base64(text)
    except ValueError:
        return None
    return key if b64(key) == text else None


def resolve_member(members: list[_Candidate], ref: str) -> _Candidate:
    """Find one member by name, node id prefix or WireGuard key; ambiguity is an error."""
    by_name = [m for m in members if m.name == ref]
    by_key = [m for m in members if m.wg_key == ref]
    by_id = [m for m in members if len(ref) >= 4 and m.node_id.startswith(ref.lower())]
    found = {m.node_key: m for m in (by_name or by_key or by_id)}
    if not found:
        raise UsageError(
            f"no member matches {ref!r}",
            hint="give a name, a node id (or its first characters) or a WireGuard key",
        )
    if len(found) > 1:
        names = ", ".join(f"{m.name} ({m.node_id[:10]})" for m in found.values())
        raise UsageError(
            f"{ref!r} matches {len(found)} members: {names}", hint="give more of the node id"
        )
    return next(iter(found.values()))
