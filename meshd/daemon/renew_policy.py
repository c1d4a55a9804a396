"""When memberships are renewed and when their end is worth a warning (pure: ``now`` is given).

``meshd up --auto-renew`` on a node holding the root or an admin key with the invite
capability renews, once a day, every member that stands and whose credential ends within the
window (30 days by default), to ``now + period`` (365 days by default), never past the
issuer's own end. Every daemon warns, once a day per thing, about members, admins and
invites that end within :data:`WARN_WINDOW`.

Across a root rollover a member's end is its credentials' end as the membership core counts
it: no later than the end of the overlap of the root it is anchored to, unless a renewal
signed under a newer root carries it further. So "anchored only to a root whose overlap ends
within the window" is "ends within the window", and the renewal this node signs under the new
root re-anchors it. A renewal is worth signing only under a root that outlasts the member's
current end: :func:`issuer_end` caps the issuer's end at its own root's. The same daily run
copies, under the new root, every revocation signed under a root being retired
(:func:`carry_revocations`), so that it keeps counting once that root's overlap ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from meshd.addressing import Prefix, prefix_within
from meshd.membership import Membership, MemberState
from meshd.records import (
    MAX_SPONSORED,
    U64,
    Cap,
    Certificate,
    Renewal,
    Revocation,
    Role,
    make_renewal,
    make_revocation,
)
from meshd.trust.invites import Issuer
from meshd.trust.keys import fingerprint

DAY: Final = 86400
DEFAULT_WINDOW: Final = 30 * DAY
DEFAULT_PERIOD: Final = 365 * DAY
WARN_WINDOW: Final = 30 * DAY


def expires_text(ends_at: int, now: int) -> str:
    """``expires in N days`` (whole days left, rounded down), or how long ago it ended."""
    if ends_at < now:
        days = (now - ends_at) // DAY
        return "expired today" if days == 0 else f"expired {days} day{'s' * (days != 1)} ago"
    days = (ends_at - now) // DAY
    if days == 0:
        return "expires in less than a day"
    return f"expires in {days} day{'s' * (days != 1)}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A member as the renewal policy sees it."""

    node_key: bytes
    name: str
    state: MemberState
    ends_at: int  # the end of its credentials, renewals included
    prefixes: tuple[Prefix, ...]  # what its credential grants, besides its own /128


@dataclass(frozen=True, slots=True)
class Planned:
    node_key: bytes
    name: str
    not_after: int


@dataclass(frozen=True, slots=True)
class Skipped:
    node_key: bytes
    name: str
    why: str


@dataclass(slots=True)
class RenewPolicy:
    """Which standing members to renew, and to when; runs at most once a day.

    ``issuer_end``: the end of the admin certificate renewals are signed under (None for the
    root); ``issuer_grants``: its prefixes (None for the root). A renewal by an admin only
    applies to members whose grants lie within the admin's, and never outlives the admin.
    """

    window: int = DEFAULT_WINDOW
    period: int = DEFAULT_PERIOD
    issuer_end: int | None = None
    issuer_grants: tuple[Prefix, ...] | None = None
    last_run: int | None = None

    def due(self, now: int) -> bool:
        return self.last_run is None or now - self.last_run >= DAY

    def plan(self, now: int, members: Iterable[Candidate]) -> tuple[list[Planned], list[Skipped]]:
        """What to renew at ``now`` (and what cannot be); marks the day's run as done."""
        self.last_run = now
        planned: list[Planned] = []
        skipped: list[Skipped] = []
        target = now + self.period
        if self.issuer_end is not None:
            target = min(target, self.issuer_end)
        for m in members:
            if m.state is MemberState.REVOKED or not now <= m.ends_at <= now + self.window:
                continue  # excluded, ended already (renewed only by hand), or not due yet
            if self.issuer_grants is not None and not all(
                any(prefix_within(p, g) for g in self.issuer_grants) for p in m.prefixes
            ):
                skipped.append(Skipped(m.node_key, m.name, "its grants are outside this admin's"))
            elif target <= m.ends_at:
                skipped.append(Skipped(m.node_key, m.name, "this admin's certificate ends first"))
            else:
                planned.append(Planned(m.node_key, m.name, target))
        return planned, skipped


def plan_for(
    policy: RenewPolicy, membership: Membership, issuer: Issuer, now: int
) -> tuple[list[Planned], list[Skipped]]:
    """The day's plan for ``issuer`` (``meshd up --auto-renew``): its end and grants as they
    are today (its root may be being retired; its certificate may have been replaced)."""
    cert = issuer.certificate
    policy.issuer_end = issuer_end(membership, issuer)
    policy.issuer_grants = cert.prefixes if cert is not None else None
    return policy.plan(now, candidates(membership, now, now + policy.window))


def candidates(membership: Membership, now: int, ending_by: int | None = None) -> list[Candidate]:
    """Every member known to ``membership`` (whose credentials end by ``ending_by``, if
    given), as the renewal policy sees it at ``now``."""
    return [
        Candidate(
            m.node_key,
            m.name or m.node_id,
            m.state,
            membership.credentials_end(m.node_key),
            membership.grants(m.node_key)[1:],
        )
        for m in membership.members(now, ending_by=ending_by)
    ]


@dataclass(frozen=True, slots=True)
class Ending:
    """Something with an end: a member, an admin or an invite."""

    kind: str  # "member", "admin", "invite"
    key: bytes
    label: str
    ends_at: int


@dataclass(slots=True)
class ExpiryWarnings:
    """Warn about each thing ending within ``window``, once a day per thing."""

    window: int = WARN_WINDOW
    _warned: dict[tuple[str, bytes], int] = field(default_factory=dict)

    def due(self, now: int, endings: Iterable[Ending]) -> list[Ending]:
        """The endings to warn about at ``now``; each is then quiet for a day."""
        found = []
        for ending in endings:
            if not now <= ending.ends_at <= now + self.window:
                continue
            key = (ending.kind, ending.key)
            last = self._warned.get(key)
            if last is not None and now - last < DAY:
                continue
            self._warned[key] = now
            found.append(ending)
        return sorted(found, key=lambda e: (e.ends_at, e.kind, e.label))


def endings(
    membership: Membership,
    now: int,
    certificates: Iterable[Certificate] = (),
    *,
    window: int | None = None,
) -> list[Ending]:
    """What ends, as known to ``membership`` at ``now``: every member that is not excluded
    (renewals included), the admins and the long-lived invites (longer than the warning
    window) that members' credentials were issued under, and ``certificates`` (this node's
    own admin certificate, invites it issued).

    An admin or invite key ends with the last of its certificates known here, each no later
    than the end of the root it is under (a key certified again, by ``meshd admin renew`` or
    a rollover, is not warned about on its older certificate's end); an admin key handed over
    (``meshd admin rotate``) or revoked ends nothing worth a warning. With ``window``, the
    members that end later than ``now + window`` are left out, no view made of them (at
    10,000 members, a look each minute made 10,000 views and endings, ~2 MB, to keep none).
    """
    ending_by = None if window is None else now + window
    found = [
        Ending("member", m.node_key, m.name or m.node_id, membership.credentials_end(m.node_key))
        for m in membership.members(now, ending_by=ending_by)
        if m.state is not MemberState.REVOKED
    ]
    latest: dict[bytes, tuple[int, Certificate]] = {}
    issuing = membership.issuing_certificates(lasting_over=WARN_WINDOW)  # others: no warning
    for cert in (*issuing, *certificates):
        if membership.is_revoked(cert.subject) or membership.admin_cutoff(cert.subject) is not None:
            continue
        end = min(cert.not_after, membership.roots.end(_root_of(cert)))
        if cert.subject not in latest or end > latest[cert.subject][0]:
            latest[cert.subject] = (end, cert)
    for end, cert in latest.values():
        if cert.role is Role.ADMIN:
            found.append(Ending("admin", cert.subject, cert.name or fingerprint(cert.subject), end))
        elif cert.role is Role.INVITE and cert.not_after - cert.not_before > WARN_WINDOW:
            found.append(Ending("invite", cert.subject, fingerprint(cert.subject), end))
    return found


def sign_renewals(
    issuer: Issuer, network_id: bytes, planned: Iterable[Planned], now: int
) -> list[Renewal]:
    """The renewals ``issuer`` signs for ``planned``, dated ``now``."""
    return [
        make_renewal(
            issuer.key,
            network_id=network_id,
            subject=p.node_key,
            issued_at=now,
            not_after=p.not_after,
            chain=issuer.chain,
        )
        for p in planned
    ]


def _root_of(record: Certificate | Revocation) -> bytes:
    return record.chain[0].issuer if record.chain else record.issuer


def issuer_end(membership: Membership, issuer: Issuer) -> int | None:
    """Until when what ``issuer`` signs counts: its admin certificate's end, and no later
    than the end of the root that certificate (or the root key itself) is under; None for
    the current root, for good."""
    cert = issuer.certificate
    root = issuer.key.public if cert is None else cert.issuer
    end = membership.roots.end(root)
    if cert is not None:
        end = min(end, cert.not_after)
    return None if end >= U64 else end


def uncarried_revocations(membership: Membership) -> list[Revocation]:
    """Revocations signed under a root whose acceptance ends (one rolled over) that no
    revocation of the same target under a root accepted for longer carries: same target, and
    their lists together hold this one's (a legacy one: any such revocation)."""
    roots = membership.roots
    revocations = membership.revocations()
    found = []
    for rev in revocations:
        end = roots.end(_root_of(rev))
        if end >= U64:
            continue
        later = [r for r in revocations if r.target == rev.target and roots.end(_root_of(r)) > end]
        listed = {e for r in later if r.sponsored is not None for e in r.sponsored}
        carried = bool(later) and (rev.sponsored is None or set(rev.sponsored) <= listed)
        if not carried:
            found.append(rev)
    return found


def carry_revocations(
    membership: Membership, issuer: Issuer, network_id: bytes, now: int
) -> list[Revocation]:
    """Copies, signed by ``issuer`` at ``now``, of the revocations under a root being retired
    that nothing under a later root carries yet (wire-format §6.11): same target, role, end,
    reason and list (a legacy one: the list of what its target countersigned before it). None
    when ``issuer`` may not revoke, or signs under a root that ends no later than theirs."""
    if issuer.certificate is not None and Cap.REVOKE not in issuer.certificate.caps:
        return []
    mine = issuer_end(membership, issuer)
    copies: list[Revocation] = []
    for rev in uncarried_revocations(membership):
        if rev.expires_at < now:
            continue
        if mine is not None and mine <= membership.roots.end(_root_of(rev)):
            continue
        listed = rev.sponsored if rev.sponsored is not None else membership.sponsored_by(rev.target)
        chunks = [
            list(listed[i : i + MAX_SPONSORED]) for i in range(0, len(listed), MAX_SPONSORED)
        ] or [[]]
        copies += [
            make_revocation(
                issuer.key,
                network_id=network_id,
                target=rev.target,
                target_role=rev.target_role,
                issued_at=now,
                expires_at=rev.expires_at,
                reason=rev.reason,
                chain=issuer.chain,
                sponsored=chunk,
            )
            for chunk in chunks
        ]
    return copies
