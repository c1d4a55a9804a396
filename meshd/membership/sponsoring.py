"""Deciding, on this node's clock, whether a joiner's enrollment may be countersigned now.

What a sponsor checks before it signs an admission (``Membership.check_enrollment`` and
``Membership.sponsor``): the enrollment's signature and invite chain, the dates on this node's
clock, the invite's and the joiner's standing, and the invite's uses left. Whoever merges the
admission later judges it again from the whole set (meshd.membership.standing).
"""

from __future__ import annotations

from meshd.errors import VerifyError
from meshd.membership.standing import Standing
from meshd.records import Enrollment
from meshd.trust.chain import Verifier


def check_enrollment(
    verifier: Verifier, standing: Standing, enrollment: Enrollment, now: int, clock_skew: int
) -> None:
    """Raise VerifyError (with a hint for the joiner) unless ``enrollment`` may be admitted."""
    verifier.enrollment(enrollment)
    invite = enrollment.invite
    if enrollment.created_at > now + clock_skew:
        raise VerifyError(
            "not-yet-valid",
            f"the enrollment is dated {enrollment.created_at - now} s ahead of the sponsor's "
            f"clock, more than the {clock_skew} s allowed",
            hint="set the joining machine's clock right (`timedatectl set-ntp true`), or the "
            "sponsor's",
        )
    if now < invite.not_before:
        raise VerifyError("not-yet-valid", "the invite is not valid yet")
    if now > invite.not_after:
        raise VerifyError("invite-expired", "the invite has expired", hint="ask for a new invite")
    if invite.chain and standing.admins.signed_late(invite.issuer, invite.not_before):
        raise VerifyError(
            "admin-handed-over",
            "the invite was signed by an admin key after it was replaced",
            hint="ask for a new invite",
        )
    for key in (invite.subject, *(c.subject for c in invite.chain)):
        if standing.is_revoked(key):
            raise VerifyError(
                "invite-revoked", "the invite has been revoked", hint="ask for a new invite"
            )
    if enrollment.node_key in standing.departures:
        raise VerifyError(
            "left",
            "this node key has left the network",
            hint="join with a new identity (a fresh --state-dir)",
        )
    if standing.is_revoked(enrollment.node_key):
        raise VerifyError(
            "revoked",
            "this node key has been revoked",
            hint="a revoked key cannot rejoin; the network's admin decides",
        )
    if standing.invite_uses(invite.subject) >= invite.max_uses:
        raise VerifyError(
            "invite-used-up", "the invite has been used up", hint="ask for a new invite"
        )
