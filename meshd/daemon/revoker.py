"""``meshd revoke NODE`` done by the running daemon (control command ``revoke``).

The daemon has the membership and the trust layer loaded, so the command's own process need
not import and load them: it sends the member's name and the reason, and the daemon signs with
this node's root or admin key, stores, floods, and answers what the CLI prints once the
revocation is on disk (the control service waits for meshd.daemon.disksync). It signs only
for a caller that could read that key file itself (root, or the file's owner: the control
socket's group may ask the daemon things, not sign with its keys). ``--root-key``, invites and
admin keys stay with the CLI, which signs and hands the record in (``publish``).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from meshd.cli.revoking import (
    KEPT_FOR_GOOD,
    _candidate_from_member,
    build_revocations,
    matching,
    resolve_member,
    revocation_info,
)
from meshd.control.commands import RevokeAnswer, RevokeRequest
from meshd.control.server import caller_uid
from meshd.control.typed_json import decode_answer
from meshd.daemon.state import NodeState
from meshd.errors import UsageError
from meshd.membership import Revoked
from meshd.records import Cap, Role

Flood = Callable[[bytes], Awaitable[None]]


def may_sign(uid: int | None, key: Path) -> bool:
    """Whether the process of ``uid`` could read ``key`` itself: root, or its owner."""
    if uid is None:
        return False
    if uid == 0:
        return True
    try:
        return os.stat(key).st_uid == uid
    except OSError:
        return False


async def revoke(state: NodeState, flood: Flood, request: RevokeRequest) -> RevokeAnswer:
    node_ref, reason = request.node, request.reason
    if not node_ref:
        raise UsageError("revoke needs args.node: a member's name, node id or WireGuard key")
    if len(reason.encode()) > 256 or not reason.isprintable():
        raise UsageError("--reason must be printable and at most 256 bytes")
    node = state.node
    key = node.paths.root_key if node.paths.root_key.exists() else node.paths.admin_key
    if key.exists() and not may_sign(caller_uid(), key):
        raise UsageError(
            f"the daemon signs with {key} only for root or its owner",
            hint="run meshd revoke as one of them, or pass --root-key",
        )
    issuer = node.issuer()  # neither key here: its error says so
    issuer.require(Cap.REVOKE)
    at = state.clock()
    membership = state.membership
    # From the latest snapshot's views (made at the last change), else the membership now
    # (a member admitted since): none of the other members' fields worked out.
    found = matching(state.feed.current.members, node_ref) or matching(
        membership.members(at), node_ref
    )
    member = resolve_member([_candidate_from_member(m) for m in found], node_ref)
    if member.node_key == state.key:
        raise UsageError(
            "this node cannot revoke itself",
            hint="revoke it from another node that holds the root or an admin key",
        )
    target = member.node_key
    sponsored = membership.sponsored_by(target)
    relisted = membership.only_legacy_revocations(target)
    revocations = build_revocations(
        issuer,
        node.anchor.network_id,
        target,
        Role.MEMBER,
        at,
        KEPT_FOR_GOOD,  # never pruned (meshd.cli.revoking.KEPT_FOR_GOOD)
        reason,
        sponsored,
    )
    new = False
    excluded: list[str] = []
    for revocation in revocations:
        outcome = state.add_local(revocation)  # committed before it is flooded
        if outcome.new:
            new = True
            await flood(revocation.raw)
        excluded += [
            e.member.name or e.member.node_id for e in outcome.events if isinstance(e, Revoked)
        ]
    label = f"{member.name} ({member.node_id})"
    info = revocation_info(
        revocations[0].raw,
        label,
        Role.MEMBER,
        target,
        reason,
        excluded,
        len(sponsored),
        relisted,
        new,
    )
    return decode_answer(RevokeAnswer, info)
