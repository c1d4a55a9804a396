"""Who stands: the indexes and rules that judge members from the record set alone.

``Standing`` holds every verified credential by member, the ranking of admissions under each
invite, the revocations, and who countersigned whom. From these, and from nothing that depends
on arrival order, it decides whether a credential stands:

- it is within its invite's uses: admissions under an invite are ranked by (sponsor's
  timestamp, record id) and the first N stand;
- no revocation names a key it depends on (its own, its invite's, its admin's);
- its sponsor stood when it countersigned: the sponsor held a credential admitted no later,
  itself within its uses and properly countersigned, and no revocation issued at or before
  that time excluded it. A sponsor revoked later does not take the members it admitted before
  with it.

Judgements are cached until the next credential or revocation arrives; announcements, the bulk
of the traffic, never invalidate them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from meshd.membership.views import MemberState
from meshd.records import Revocation
from meshd.trust import Credential

MAX_SPONSOR_DEPTH = 256  # an admission further than this from a certificate does not stand


class Standing:
    """The judgement indexes of one membership state."""

    def __init__(self) -> None:
        self._credentials: dict[bytes, list[tuple[int, bytes, Credential]]] = {}
        self._by_invite: dict[bytes, list[tuple[int, bytes, bytes]]] = {}
        self._invite_uses: dict[bytes, int] = {}
        self._dependents: dict[bytes, set[bytes]] = {}
        self._revocations: dict[bytes, list[Revocation]] = {}
        self._sponsored: dict[bytes, set[bytes]] = {}
        self._chain_cache: dict[bytes, bool] = {}
        self._standing_cache: dict[bytes, Credential | None] = {}

    # --- changes ------------------------------------------------------------------------

    def add_credential(self, credential: Credential, rid: bytes) -> set[bytes]:
        """Index a verified credential; returns the members whose standing may change."""
        node = credential.node_key
        bisect.insort(
            self._credentials.setdefault(node, []), (credential.admitted_at, rid, credential)
        )
        for key in credential.depends_on:
            self._dependents.setdefault(key, set()).add(node)
        touched = {node}
        if credential.invite is not None:
            ranked = self._by_invite.setdefault(credential.invite, [])
            bisect.insort(ranked, (credential.admitted_at, rid, node))
            uses = self._invite_uses.get(credential.invite)
            self._invite_uses[credential.invite] = (
                credential.max_uses if uses is None else min(uses, credential.max_uses)
            )
            touched.update(n for _, _, n in ranked)
        if credential.sponsor is not None:
            self._sponsored.setdefault(credential.sponsor, set()).add(node)
        self.invalidate()
        return touched

    def drop_credential(self, node: bytes, rid: bytes) -> set[bytes]:
        """Forget a superseded credential; returns the members whose standing may change."""
        entries = self._credentials[node]
        dropped = next(c for _, r, c in entries if r == rid)
        entries[:] = [e for e in entries if e[1] != rid]
        touched = {node}
        if dropped.invite is not None:
            ranked = self._by_invite[dropped.invite]
            ranked[:] = [e for e in ranked if e[1] != rid]
            touched.update(n for _, _, n in ranked)
        self.invalidate()
        return touched

    def add_revocation(self, revocation: Revocation) -> set[bytes]:
        """Index a verified revocation; returns the members it excludes."""
        self._revocations.setdefault(revocation.target, []).append(revocation)
        self.invalidate()
        return set(self._dependents.get(revocation.target, ()))

    def invalidate(self) -> None:
        self._chain_cache.clear()
        self._standing_cache.clear()

    def with_sponsored(self, nodes: Iterable[bytes]) -> set[bytes]:
        """``nodes`` and every member they (transitively) countersigned."""
        queue = list(nodes)
        seen = set(queue)
        while queue:
            for sponsored in self._sponsored.get(queue.pop(), ()):
                if sponsored not in seen:
                    seen.add(sponsored)
                    queue.append(sponsored)
        return seen

    # --- judgements ---------------------------------------------------------------------

    def standing(self, node: bytes) -> Credential | None:
        """The member's earliest credential that stands, if any."""
        if node in self._standing_cache:
            return self._standing_cache[node]
        found = None
        for _, rid, credential in self._credentials.get(node, ()):
            if self._revoked_by(credential) is None and self._chain_ok(rid, credential):
                found = credential
                break
        self._standing_cache[node] = found
        return found

    def judge(
        self, node: bytes, now: int, last_seen: int | None, announce_ttl: int | None
    ) -> tuple[MemberState, str, Credential]:
        """The member's state at ``now``, why, and the credential that decides it."""
        entries = self._credentials[node]
        reason = ""
        expired: Credential | None = None
        for _, rid, credential in entries:
            excluded = self._exclusion(node, rid, credential)
            if excluded:
                reason = reason or excluded
                continue
            if credential.not_after < now:
                expired = expired or credential
                continue
            if announce_ttl is not None:
                last = credential.admitted_at if last_seen is None else last_seen
                if last + announce_ttl < now:
                    return MemberState.EXPIRED, "silent", credential
            return MemberState.ADMITTED, "", credential
        if expired is not None:
            return MemberState.EXPIRED, "credential-expired", expired
        return MemberState.REVOKED, reason, entries[0][2]

    def _exclusion(self, node: bytes, rid: bytes, credential: Credential) -> str:
        """Why a credential does not stand, or "" when it does."""
        if not self._within_uses(credential, rid):
            return "invite-used-up"
        revoked_key = self._revoked_by(credential)
        if revoked_key is not None:
            return "revoked" if revoked_key == node else "issuer-revoked"
        if not self._chain_ok(rid, credential):
            return "sponsor-not-member"
        return ""

    def _within_uses(self, credential: Credential, rid: bytes) -> bool:
        if credential.invite is None:
            return True
        ranked = self._by_invite[credential.invite]
        limit = self._invite_uses[credential.invite]
        position = bisect.bisect_left(ranked, (credential.admitted_at, rid, b""))
        return position < limit

    def _revoked_by(self, credential: Credential) -> bytes | None:
        if credential.depends_on.isdisjoint(self._revocations):
            return None
        return min(credential.depends_on & self._revocations.keys())

    def _revoked_at(self, credential: Credential, at: int) -> bool:
        """Whether a revocation issued at or before ``at`` excludes this credential."""
        for key in credential.depends_on:
            for revocation in self._revocations.get(key, ()):
                if revocation.issued_at <= at:
                    return True
        return False

    def _chain_ok(self, rid: bytes, credential: Credential, depth: int = 0) -> bool:
        """Within its invite's uses, and countersigned by a member who then stood."""
        cached = self._chain_cache.get(rid)
        if cached is not None:
            return cached
        self._chain_cache[rid] = False  # breaks cycles; replaced below
        ok = self._within_uses(credential, rid)
        if ok and credential.sponsor is not None:
            ok = False
            if depth < MAX_SPONSOR_DEPTH:
                for admitted_at, sponsor_rid, sponsor in self._credentials.get(
                    credential.sponsor, ()
                ):
                    if admitted_at > credential.admitted_at:
                        break
                    if (
                        sponsor_rid != rid
                        and self._chain_ok(sponsor_rid, sponsor, depth + 1)
                        and not self._revoked_at(sponsor, credential.admitted_at)
                    ):
                        ok = True
                        break
        self._chain_cache[rid] = ok
        return ok

    # --- queries ------------------------------------------------------------------------

    def knows(self, node: bytes) -> bool:
        return node in self._credentials

    def nodes(self) -> Iterator[bytes]:
        return iter(self._credentials)

    def credentials_end(self, node: bytes) -> int:
        """When the last of a member's known credentials ends (0 when none is known)."""
        return max((c.not_after for _, _, c in self._credentials.get(node, ())), default=0)

    def is_revoked(self, key: bytes) -> bool:
        return key in self._revocations

    def revocations(self) -> list[Revocation]:
        return [r for rs in self._revocations.values() for r in rs]

    def invite_uses(self, invite_key: bytes) -> int:
        return len(self._by_invite.get(invite_key, ()))
