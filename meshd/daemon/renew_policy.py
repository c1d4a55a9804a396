"""When memberships are renewed and when their end is worth a warning (pure: ``now`` is given).

``meshd up --auto-renew`` on a node holding the root or an admin key with the invite
capability renews, once a day, every member that stands and whose credential ends within the
window (30 days by default), to ``now + period`` (365 days by default), never past the
issuer's own end. Every daemon warns, once a day per thing, about members, admins and
invites that end within :data:`WARN_WINDOW`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from meshd.addressing import Prefix, prefix_within
from meshd.membership import Membership, MemberState
from meshd.records import Certificate, Renewal, Role, make_renewal
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


def candidates(membership: Membership, now: int) -> list[Candidate]:
    """Every member known to ``membership``, as the renewal policy sees it at ``now``."""
    return [
        Candidate(
            m.node_key,
            m.name or m.node_id,
            m.state,
            membership.credentials_end(m.node_key),
            membership.grants(m.node_key)[1:],
        )
        for m in membership.members(now)
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
    membership: Membership, now: int, certificates: Iterable[Certificate] = ()
) -> list[Ending]:
    """What ends, as known to ``membership`` at ``now``: every member that is not excluded
    (renewals included), the admins and the long-lived invites (longer than the warning
    window) that members' credentials were issued under, and ``certificates`` (this node's
    own admin certificate, invites it issued)."""
    found = [
        Ending("member", m.node_key, m.name or m.node_id, membership.credentials_end(m.node_key))
        for m in membership.members(now)
        if m.state is not MemberState.REVOKED
    ]
    seen: set[bytes] = set()
    for cert in (*membership.issuing_certificates(), *certificates):
        if cert.subject in seen or membership.is_revoked(cert.subject):
            continue
        seen.add(cert.subject)
        if cert.role is Role.ADMIN:
            found.append(
                Ending(
                    "admin", cert.subject, cert.name or fingerprint(cert.subject), cert.not_after
                )
            )
        elif cert.role is Role.INVITE and cert.not_after - cert.not_before > WARN_WINDOW:
            found.append(Ending("invite", cert.subject, fingerprint(cert.subject), cert.not_after))
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
