"""Renewals and departures in the membership core: their rules, and hostile inputs against them.

The hostile table (``test_hostile_lifecycle[case-id]``) follows tests/trust/test_hostile.py: each
case starts from a fresh network whose founder stands, feeds one hostile thing, and names the
exact refusal (``VerifyError.reason``) or that it is ignored.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from meshd.encoding import pack
from meshd.errors import MeshdError, VerifyError
from meshd.membership import Membership, MemberState
from meshd.records import (
    CONTEXTS,
    Cap,
    Kind,
    Leave,
    Renewal,
    Role,
    make_leave,
    make_renewal,
    make_revocation,
    record_id,
    signed_body,
)
from meshd.trust.invites import Issuer
from meshd.trust.keys import SigningKey
from tests.factory import DAY, T0, Net, Node
from tests.trust.test_hostile import NOW, World, flip_signature, replace

YEAR = 365 * DAY


def renewal(
    net: Net,
    subject: bytes,
    *,
    not_after: int = T0 + 2 * YEAR,
    at: int = T0 + 30,
    issuer: Issuer | None = None,
    **kw: Any,
) -> Renewal:
    issuer = issuer or net.issuer
    return make_renewal(
        issuer.key,
        network_id=net.anchor.network_id,
        subject=subject,
        issued_at=at,
        not_after=not_after,
        chain=issuer.chain,
        **kw,
    )


def leave(net: Net, node: Node, *, at: int = T0 + 40) -> Leave:
    return make_leave(node.key, network_id=net.anchor.network_id, issued_at=at, reason="bye")


@contextlib.contextmanager
def _no_error() -> Iterator[None]:
    yield


def state_of(state: Membership, node: bytes, now: int = NOW) -> tuple[MemberState, str]:
    member = state.member(node, now)
    assert member is not None
    return member.state, member.reason


# --- renewal ---------------------------------------------------------------------------------


def test_a_renewal_extends_the_member_past_its_own_end() -> None:
    w = World()
    node = w.founder.key.public
    end = T0 + 365 * DAY
    assert w.state.credentials_end(node) == end
    after = end + DAY
    assert state_of(w.state, node, after) == (MemberState.EXPIRED, "credential-expired")
    outcome = w.ingest(renewal(w.net, node, not_after=end + YEAR))
    assert outcome.new
    assert w.state.credentials_end(node) == end + YEAR
    member = w.state.member(node, after)
    assert member is not None
    assert (member.state, member.not_after) == (MemberState.ADMITTED, end + YEAR)
    assert state_of(w.state, node, end + YEAR + 1) == (MemberState.EXPIRED, "credential-expired")


def test_a_renewal_brings_back_an_expired_member_with_an_event() -> None:
    w = World()
    node = w.founder.key.public
    after = T0 + 366 * DAY
    w.state.tick(after)
    outcome = w.state.ingest(renewal(w.net, node, at=after - 10, not_after=after + YEAR), after)
    assert [type(e).__name__ for e in outcome.events] == ["Admitted"]


def test_a_credential_past_its_own_end_is_kept_when_its_renewal_is_known() -> None:
    """A node that starts (or joins) after the member's first end still takes its credential:
    the renewal is merged first, in a batch and on load."""
    net = Net()
    founder = net.founder()
    ren = renewal(net, founder.key.public)
    later = T0 + 400 * DAY
    for records in ((founder.credential, ren), (ren, founder.credential)):
        state = net.state()
        batch = state.merge_batch(list(records), later)
        assert batch.rejected == ()
        assert state_of(state, founder.key.public, later) == (MemberState.ADMITTED, "")
    alone = net.state()
    with pytest.raises(VerifyError) as info:
        alone.ingest(founder.credential, later)
    assert info.value.reason == "expired"


def test_an_admins_renewal_applies_only_within_its_grants() -> None:
    net = Net()
    narrow = net.admin(
        Cap.INVITE, not_after=T0 + 3 * YEAR, prefixes=(ipaddress.ip_network("10.1.0.0/16"),)
    )
    state = net.state()
    founder = net.founder()
    state.ingest(founder.credential, NOW)
    inside = net.invite(prefixes=[ipaddress.ip_network("10.1.2.0/24")])
    outside = net.invite(prefixes=[ipaddress.ip_network("10.2.0.0/24")])
    a = net.join(state, founder, inside, "inside")
    b = net.join(state, founder, outside, "outside")
    for node in (a, b):
        state.ingest(node.credential, NOW)
        state.ingest(renewal(net, node.key.public, issuer=narrow), NOW)
    assert state.credentials_end(a.key.public) == T0 + 2 * YEAR
    assert state.credentials_end(b.key.public) == T0 + 10 + YEAR  # its invite's member_ttl


def test_renewals_keep_the_latest_per_issuer() -> None:
    w = World()
    node = w.founder.key.public
    short = renewal(w.net, node, not_after=T0 + 2 * YEAR)
    long = renewal(w.net, node, not_after=T0 + 3 * YEAR)
    w.ingest(short)
    outcome = w.ingest(long)
    assert outcome.dropped == (record_id(short.raw),)
    assert w.state.renewals_of(node) == [long]
    with pytest.raises(VerifyError) as info:
        w.ingest(short)
    assert info.value.reason == "superseded-renewal"


def test_a_revocation_drops_the_renewals_of_its_target_and_those_its_target_signed() -> None:
    w = World()
    admin = w.net.admin()
    member = w.join(w.net.invite())
    by_admin = renewal(w.net, member.key.public, issuer=admin, not_after=T0 + 300 * DAY)
    by_root = renewal(w.net, w.founder.key.public)
    w.ingest(by_admin)
    w.ingest(by_root)
    outcome = w.ingest(w.net.revoke(admin.key.public, Role.ADMIN))
    assert record_id(by_admin.raw) in outcome.dropped
    assert w.state.renewals_of(member.key.public) == []
    w.ingest(w.net.revoke(w.founder.key.public, at=T0 + 21))
    assert w.state.renewals_of(w.founder.key.public) == []
    assert record_id(by_root.raw) not in w.state.record_ids()


# --- leaving ---------------------------------------------------------------------------------


def test_a_leave_excludes_the_member_and_drops_its_announcement() -> None:
    w = World()
    member = w.join(w.net.invite())
    ann = member.announce(w.net, NOW)
    w.ingest(ann)
    outcome = w.ingest(leave(w.net, member))
    assert outcome.new
    assert [type(e).__name__ for e in outcome.events] == ["Revoked"]
    assert state_of(w.state, member.key.public) == (MemberState.REVOKED, "left")
    assert record_id(ann.raw) in outcome.dropped
    assert w.state.leave_of(member.key.public) is not None
    with pytest.raises(VerifyError) as info:
        w.ingest(member.announce(w.net, NOW))
    assert info.value.reason == "revoked"


def test_a_leave_does_not_take_away_whom_the_member_admitted() -> None:
    """Rule (a): the members a leaver countersigned keep standing."""
    w = World()
    sponsor = w.join(w.net.invite())
    joined = w.net.join(w.state, sponsor, w.net.invite(), "joined", at=T0 + 20)
    w.ingest(joined.credential)
    w.ingest(leave(w.net, sponsor))
    assert state_of(w.state, joined.key.public) == (MemberState.ADMITTED, "")
    assert state_of(w.state, sponsor.key.public) == (MemberState.REVOKED, "left")


def test_a_leave_of_an_unknown_key_waits_for_its_credential() -> None:
    w = World()
    member = w.net.join(w.state, w.founder, w.net.invite(), "m")
    other = w.net.state()
    other.ingest(w.founder.credential, NOW)
    outcome = other.ingest(leave(w.net, member), NOW)
    assert outcome.pending
    assert not outcome.new
    assert other.pending_count == 1
    other.ingest(member.credential, NOW)
    assert state_of(other, member.key.public) == (MemberState.REVOKED, "left")
    w.ingest(member.credential)
    w.ingest(leave(w.net, member))
    assert other.digest() == w.state.digest()


def test_the_earliest_leave_is_kept() -> None:
    w = World()
    member = w.join(w.net.invite())
    first, second = leave(w.net, member, at=T0 + 40), leave(w.net, member, at=T0 + 50)
    w.ingest(second)
    outcome = w.ingest(first)
    assert outcome.dropped == (record_id(second.raw),)
    with pytest.raises(VerifyError) as info:
        w.ingest(second)
    assert info.value.reason == "already-left"


def test_a_revocation_replaces_a_leave_in_either_order() -> None:
    w = World()
    member = w.join(w.net.invite())
    lv, rev = leave(w.net, member), w.net.revoke(member.key.public)
    digests = []
    for order in ((lv, rev), (rev, lv)):
        state = w.elsewhere(member)
        state.ingest(order[0], NOW)
        with pytest.raises(VerifyError, match="revoked") if order[1] is lv else _no_error():
            state.ingest(order[1], NOW)
        assert state_of(state, member.key.public) == (MemberState.REVOKED, "revoked")
        assert state.leave_of(member.key.public) is None
        digests.append(state.digest())
    assert digests[0] == digests[1]


# --- hostile inputs --------------------------------------------------------------------------

Expected = str | None  # a VerifyError reason; None: ignored (a replay)
CASES: list[Any] = []


def case(case_id: str, expected: Expected) -> Callable[[Callable[[World], object]], Any]:
    def register(action: Callable[[World], object]) -> Any:
        CASES.append(pytest.param(action, expected, id=case_id))
        return action

    return register


def _member(w: World) -> Node:
    return w.join(w.net.invite())


@case("renewal-of-a-revoked-member", "revoked")
def _renew_revoked(w: World) -> object:
    member = _member(w)
    w.ingest(w.net.revoke(member.key.public))
    return w.ingest(renewal(w.net, member.key.public))


@case("renewal-replayed-after-a-revocation", "revoked")
def _renewal_replayed(w: World) -> object:
    member = _member(w)
    ren = renewal(w.net, member.key.public)
    w.ingest(ren)
    w.ingest(w.net.revoke(member.key.public))
    assert state_of(w.state, member.key.public, T0 + 500 * DAY)[0] is MemberState.REVOKED
    return w.ingest(ren)


@case("renewal-beyond-its-admins-end", "outlives-issuer")
def _renew_outliving(w: World) -> object:
    admin = w.net.admin(not_after=T0 + YEAR)
    return w.ingest(renewal(w.net, w.founder.key.public, issuer=admin, not_after=T0 + YEAR + 1))


@case("renewal-by-an-admin-without-the-invite-capability", "missing-capability")
def _renew_no_cap(w: World) -> object:
    admin = w.net.admin(Cap.REVOKE)
    return w.ingest(renewal(w.net, w.founder.key.public, issuer=admin, not_after=T0 + 300 * DAY))


@case("renewal-by-a-revoked-admin", "issuer-revoked")
def _renew_revoked_admin(w: World) -> object:
    admin = w.net.admin()
    w.ingest(w.net.revoke(admin.key.public, Role.ADMIN))
    return w.ingest(renewal(w.net, w.founder.key.public, issuer=admin, not_after=T0 + 300 * DAY))


@case("renewal-by-an-expired-admin", "issuer-expired")
def _renew_expired_admin(w: World) -> object:
    admin = w.net.admin(not_after=T0 + 20)  # valid from T0: signed before it started
    renewed = renewal(w.net, w.founder.key.public, issuer=admin, at=T0 - 10, not_after=T0 + 20)
    return w.ingest(renewed)


@case("renewal-signed-by-a-member", "bad-chain")
def _renew_by_member(w: World) -> object:
    member = _member(w)
    return w.ingest(renewal(w.net, member.key.public, issuer=Issuer(member.key)))


@case("renewal-from-the-root-carrying-a-chain", "bad-chain")
def _renew_root_chain(w: World) -> object:
    admin = w.net.admin()
    assert admin.certificate is not None
    issuer = Issuer(w.net.root, admin.certificate)
    return w.ingest(renewal(w.net, w.founder.key.public, issuer=issuer))


@case("renewal-for-another-network", "wrong-network")
def _renew_other_net(w: World) -> object:
    other = Net()
    return w.ingest(renewal(other, w.founder.key.public))


@case("renewal-of-the-root-key", "bad-target")
def _renew_root(w: World) -> object:
    return w.ingest(renewal(w.net, w.net.root.public))


@case("renewal-of-an-admin-role", "bad-role")
def _renew_admin_role(w: World) -> object:
    return w.ingest(renewal(w.net, w.founder.key.public, role=Role.ADMIN))


@case("renewal-ending-before-it-was-made", "bad-validity")
def _renew_backwards(w: World) -> object:
    return w.ingest(renewal(w.net, w.founder.key.public, at=NOW, not_after=NOW - 1))


@case("renewal-dated-beyond-clock-skew", "not-yet-valid")
def _renew_future(w: World) -> object:
    return w.ingest(renewal(w.net, w.founder.key.public, at=NOW + 301))


@case("renewal-already-ended", "expired")
def _renew_ended(w: World) -> object:
    return w.ingest(renewal(w.net, w.founder.key.public, at=T0, not_after=NOW - 1))


@case("renewal-superseded-by-a-later-one", "superseded-renewal")
def _renew_superseded(w: World) -> object:
    w.ingest(renewal(w.net, w.founder.key.public, not_after=T0 + 3 * YEAR))
    return w.ingest(renewal(w.net, w.founder.key.public, not_after=T0 + 2 * YEAR))


@case("renewal-signature-bit-flipped", "bad-signature")
def _renew_flipped(w: World) -> object:
    return w.ingest(flip_signature(renewal(w.net, w.founder.key.public), 7))


@case("renewal-with-its-end-moved-by-the-member", "bad-signature")
def _renew_tampered(w: World) -> object:
    member = _member(w)
    ren = renewal(w.net, member.key.public)
    # The member re-signs the body with a later end: the signature is no longer the root's.
    return w.ingest(replace(ren, member.key, 7, T0 + 9 * YEAR))


@case("renewal-signed-under-the-certificate-context", "bad-signature")
def _renew_context(w: World) -> object:
    ren = renewal(w.net, w.founder.key.public)
    body = signed_body(ren)
    return w.ingest(pack([body, w.net.root.sign(CONTEXTS[Kind.CERTIFICATE], body)]))


@case("renewal-of-a-member-that-left", "left")
def _renew_left(w: World) -> object:
    member = _member(w)
    w.ingest(leave(w.net, member))
    return w.ingest(renewal(w.net, member.key.public))


@case("leave-signed-by-another-member", "bad-signature")
def _leave_forged(w: World) -> object:
    victim, forger = _member(w), _member(w)
    honest = leave(w.net, victim)
    return w.ingest(replace(honest, forger.key, 3, victim.key.public))


@case("leave-of-another-network", "wrong-network")
def _leave_other_net(w: World) -> object:
    return w.ingest(leave(Net(), _member(w)))


@case("leave-of-the-root-key", "bad-target")
def _leave_root(w: World) -> object:
    return w.ingest(make_leave(w.net.root, network_id=w.nid, issued_at=NOW))


@case("leave-dated-beyond-clock-skew", "not-yet-valid")
def _leave_future(w: World) -> object:
    return w.ingest(leave(w.net, _member(w), at=NOW + 301))


@case("leave-of-a-revoked-member", "revoked")
def _leave_revoked(w: World) -> object:
    member = _member(w)
    w.ingest(w.net.revoke(member.key.public))
    return w.ingest(leave(w.net, member))


@case("leave-replayed", None)
def _leave_replayed(w: World) -> object:
    lv = leave(w.net, _member(w))
    w.ingest(lv)
    return w.ingest(lv)


@case("left-member-announces", "revoked")
def _left_announces(w: World) -> object:
    member = _member(w)
    w.ingest(leave(w.net, member))
    return w.ingest(member.announce(w.net, NOW))


@case("left-member-enrolls-again-with-its-key", "left")
def _left_reenrolls(w: World) -> object:
    member = _member(w)
    w.ingest(leave(w.net, member))
    return w.sponsor(w.enrollment(w.net.invite(), key=member.key.public))


@case("invite-key-holder-revokes-its-own-invite", "bad-chain")
def _self_revoked_invite(w: World) -> object:
    """A joiner holds its invite's secret: a revocation signed by the invite key itself
    (a 'leave' of the invite) would exclude every member admitted with it. Refused."""
    invite = w.net.invite(uses=2)
    w.join(invite)
    key = SigningKey(invite.secret)
    return w.ingest(
        make_revocation(
            key,
            network_id=w.nid,
            target=key.public,
            target_role=Role.INVITE,
            issued_at=NOW,
            expires_at=NOW + DAY,
        )
    )


@pytest.mark.parametrize(("action", "expected"), CASES)
def test_hostile_lifecycle(action: Callable[[World], object], expected: Expected) -> None:
    world = World()
    if expected is None:
        outcome = action(world)
        assert not getattr(outcome, "new", True)
        assert getattr(outcome, "stored", ()) == ()
        return
    with pytest.raises(MeshdError) as info:
        action(world)
    assert isinstance(info.value, VerifyError), repr(info.value)
    assert info.value.reason == expected, str(info.value)
