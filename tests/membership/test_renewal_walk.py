"""Two years of a five-member network on a fake clock: the membership cores and the renewal and
warning policies of meshd/daemon/renew_policy.py, no daemon.

With auto-renew on one admin node that is online one day a week, no member ever stops
standing on any node; with auto-renew off, every member expires on the day its credential
says (its ``created_at + member_ttl``; the founder's certificate's ``not_after``), after a
warning on each of the 30 days before.
"""

from __future__ import annotations

import itertools
import os

from meshd.daemon.renew_policy import (
    DAY,
    ExpiryWarnings,
    RenewPolicy,
    candidates,
    carry_revocations,
    endings,
    expires_text,
    plan_for,
    sign_renewals,
)
from meshd.membership import Membership, MemberState
from meshd.records import (
    Admission,
    Cap,
    Certificate,
    Invite,
    Record,
    Role,
    make_certificate,
    make_rollover,
)
from meshd.trust.invites import Issuer, enroll
from meshd.trust.keys import SigningKey, WireGuardKey
from tests.factory import T0, Net, Node

YEAR = 365 * DAY
STEP = 6 * 3600  # the walk looks at every node four times a day
ADMIN_ONLINE_WEEKDAY = 3  # the admin node runs one day a week


class Network:
    """Five members, each with its own membership core; records travel when delivered."""

    def __init__(self) -> None:
        self.net = Net()
        self.founder = self.net.founder()
        admin_key = SigningKey.generate()
        admin_cert = make_certificate(
            self.net.root,
            network_id=self.net.anchor.network_id,
            subject=admin_key.public,
            role=Role.ADMIN,
            serial=os.urandom(16),
            not_before=T0,
            not_after=T0 + 3 * YEAR,
            caps=Cap.INVITE,
            name="ops",
            prefixes=(self.net.anchor.overlay,),
        )
        self.admin = Issuer(admin_key, admin_cert)
        self.cores = [self.net.state() for _ in range(5)]
        self.log: list[Record] = [self.founder.credential]
        for core in self.cores:
            core.ingest(self.founder.credential, T0 + 1)
        self.members: list[Node] = [self.founder]
        for i in range(4):
            invite = self.net.invite(issuer=self.admin, member_ttl=YEAR, at=T0 + i * DAY)
            node = self._join(invite, f"m{i}", T0 + i * DAY + 10)
            self.members.append(node)

    def _join(self, invite: Invite, name: str, at: int) -> Node:
        key, wg = SigningKey.generate(), WireGuardKey.generate()
        enrollment = enroll(invite, node_key=key.public, wg_key=wg.public, name=name, now=at)
        admission = self.cores[0].sponsor(self.founder.key, enrollment, at)
        self.deliver([admission], at)
        return Node(key, wg, name, admission)

    def deliver(self, records: list[Record], now: int) -> None:
        self.log += records
        for core in self.cores:
            batch = core.merge_batch(records, now)
            assert batch.rejected == (), batch.rejected

    def ends(self, node: Node) -> int:
        return self.cores[0].credentials_end(node.key.public)


def _standing(core: Membership, node: Node, now: int) -> tuple[MemberState, str]:
    member = core.member(node.key.public, now)
    assert member is not None
    return member.state, member.reason


def test_two_years_with_auto_renew_on_an_admin_online_one_day_a_week() -> None:
    world = Network()
    admin_core = world.cores[1]  # the admin node is a member too
    policy = RenewPolicy(
        issuer_end=world.admin.certificate.not_after if world.admin.certificate else None,
        issuer_grants=world.admin.certificate.prefixes if world.admin.certificate else None,
    )
    renewals = 0
    now = T0 + 5 * DAY
    end = T0 + 2 * YEAR
    while now <= end:
        day = (now - T0) // DAY
        if day % 7 == ADMIN_ONLINE_WEEKDAY and policy.due(now):
            planned, skipped = policy.plan(now, candidates(admin_core, now))
            assert skipped == []
            made = sign_renewals(world.admin, world.net.anchor.network_id, planned, now)
            world.deliver(list(made), now)
            renewals += len(made)
        for core in world.cores:
            core.tick(now)
            for node in world.members:
                assert _standing(core, node, now) == (MemberState.ADMITTED, ""), (
                    f"{node.name} on day {day}"
                )
        now += STEP
    # Each member was renewed about once a year: 2 or 3 renewals each over the two years.
    assert 2 * len(world.members) <= renewals <= 3 * len(world.members)
    digests = {core.digest() for core in world.cores}
    assert len(digests) == 1
    # Renewals of one member by one issuer replace each other: one each is kept.
    assert all(len(world.cores[0].renewals_of(n.key.public)) == 1 for n in world.members)


def test_without_auto_renew_every_member_expires_on_its_day_with_warnings_before() -> None:
    world = Network()
    core = world.cores[2]
    warnings = ExpiryWarnings()
    warned: dict[str, list[int]] = {}
    expected = {world.founder.name: T0 + YEAR}  # the founder's certificate: not_after
    for n in world.members[1:]:
        assert isinstance(n.credential, Admission)
        expected[n.name] = n.credential.enrollment.created_at + YEAR  # the invite's member_ttl
    for node in world.members:
        assert world.ends(node) == expected[node.name]
    now = T0 + 5 * DAY
    while now <= T0 + YEAR + 10 * DAY:
        core.tick(now)
        for ending in warnings.due(now, endings(core, now)):
            if ending.kind == "member":
                warned.setdefault(ending.label, []).append(now)
                assert expires_text(ending.ends_at, now).startswith("expires in")
        for node in world.members:
            state = _standing(core, node, now)
            if now <= expected[node.name]:
                assert state == (MemberState.ADMITTED, ""), (node.name, now)
            else:
                assert state == (MemberState.EXPIRED, "credential-expired"), (node.name, now)
        now += STEP
    for node in world.members:
        times = warned[node.name]
        ends_at = expected[node.name]
        # From 30 days before, once a day, until the end.
        assert times[0] >= ends_at - 30 * DAY
        assert times[0] - (ends_at - 30 * DAY) < DAY
        assert all(b - a >= DAY for a, b in itertools.pairwise(times))
        assert 30 <= len(times) <= 31
        assert times[-1] <= ends_at


def test_the_policy_renews_only_standing_members_within_the_window() -> None:
    world = Network()
    core = world.cores[0]
    target = world.members[1]
    now = world.ends(target) - 10 * DAY
    policy = RenewPolicy(window=30 * DAY, period=YEAR)
    planned, _ = policy.plan(now, candidates(core, now))
    assert {p.node_key for p in planned} == {n.key.public for n in world.members}
    assert all(p.not_after == now + YEAR for p in planned)
    assert not policy.due(now + DAY - 1)
    assert policy.due(now + DAY)
    # A revoked member is not renewed; one that ended already is left to `meshd renew`.
    world.deliver([world.net.revoke(target.key.public, at=now)], now)
    later = world.ends(world.members[2]) + 1
    policy = RenewPolicy(window=30 * DAY, period=YEAR)
    planned, _ = policy.plan(later, candidates(core, later))
    names = {p.name for p in planned}
    assert target.name not in names
    assert world.members[2].name not in names


def test_an_admin_does_not_renew_past_its_own_end() -> None:
    world = Network()
    core = world.cores[0]
    now = world.ends(world.members[1]) - 5 * DAY
    policy = RenewPolicy(issuer_end=now + 2 * DAY, period=YEAR)
    planned, skipped = policy.plan(now, candidates(core, now))
    assert planned == []
    assert {s.why for s in skipped} == {"this admin's certificate ends first"}


def test_expires_text() -> None:
    assert expires_text(T0 + 12 * DAY + 5, T0) == "expires in 12 days"
    assert expires_text(T0 + DAY, T0) == "expires in 1 day"
    assert expires_text(T0 + 60, T0) == "expires in less than a day"
    assert expires_text(T0 - 3 * DAY, T0) == "expired 3 days ago"


# --- across a root rollover -------------------------------------------------------------------

ROLLOVER_DAY = 100  # the root hands over to a new root, with a 30-day overlap
OVERLAP = 30 * DAY


class RolledOver:
    """The five-member network, its root rolled over on ROLLOVER_DAY (the rollover record
    alone: nobody is certified again by hand), and two members admitted during the overlap:
    one through an invite the admin issued under its old certificate, one through an invite
    of the new root. The root writes the admin a certificate under the new root, which the
    admin installs the next time its node is online."""

    def __init__(self) -> None:
        self.world = Network()
        self.new_root = SigningKey.generate()
        self.rolled_at = T0 + ROLLOVER_DAY * DAY
        self.overlap_end = self.rolled_at + OVERLAP
        net = self.world.net
        self.rollover = make_rollover(
            net.root,
            network_id=net.anchor.network_id,
            new_root=self.new_root.public,
            issued_at=self.rolled_at,
            overlap_until=self.overlap_end,
        )
        old = self.world.admin.certificate
        assert old is not None
        self.admin_again = Issuer(
            self.world.admin.key,
            make_certificate(
                self.new_root,
                network_id=net.anchor.network_id,
                subject=old.subject,
                role=Role.ADMIN,
                serial=os.urandom(16),
                not_before=self.rolled_at,
                not_after=old.not_after,
                caps=old.caps,
                name=old.name,
                prefixes=old.prefixes,
            ),
        )
        # Admitted during the overlap: (day, name, the invite's issuer).
        self.joins = [
            (ROLLOVER_DAY + 2, "via-old-admin", self.world.admin),
            (ROLLOVER_DAY + 3, "via-new-root", Issuer(self.new_root)),
        ]

    def step(self, now: int) -> None:
        """What happens on the network at ``now`` besides renewals: the rollover, the joins."""
        if now == self.rolled_at:
            self.world.deliver([self.rollover], now)
        for day, name, issuer in self.joins:
            if now == T0 + day * DAY:
                invite = self.world.net.invite(issuer=issuer, member_ttl=YEAR, at=now - DAY)
                self.world.members.append(self.world._join(invite, name, now))

    def anchored_to_old_root(self) -> list[Node]:
        return [n for n in self.world.members if n.name != "via-new-root"]


def _walk_times(end: int) -> list[int]:
    return list(range(T0 + 5 * DAY, end + 1, STEP))


def test_a_root_rollover_with_auto_renew_on_an_admin_online_one_day_a_week() -> None:
    """Nobody stops standing, on any node, across the end of the overlap: the admin's node,
    online one day a week with auto-renew, installs its certificate under the new root and
    renews every member still anchored only to the old root (its end is the overlap's)."""
    r = RolledOver()
    world = r.world
    admin_core = world.cores[1]
    admin = world.admin
    policy = RenewPolicy()
    renewed: dict[str, int] = {}
    for now in _walk_times(r.overlap_end + 40 * DAY):
        r.step(now)
        day = (now - T0) // DAY
        if day % 7 == ADMIN_ONLINE_WEEKDAY and policy.due(now):
            if now >= r.rolled_at:
                admin = r.admin_again  # its new certificate, installed when it comes online
            planned, skipped = plan_for(policy, admin_core, admin, now)
            assert skipped == []
            made = sign_renewals(admin, world.net.anchor.network_id, planned, now)
            world.deliver(list(made), now)
            for p in planned:
                renewed[p.name] = now
        for core in world.cores:
            core.tick(now)
            for node in world.members:
                assert _standing(core, node, now) == (MemberState.ADMITTED, ""), (
                    f"{node.name} on day {day}"
                )
    # Each member anchored only to the old root was renewed under the new root during the
    # overlap (the one admitted through the admin's old certificate too), and only they were.
    assert set(renewed) == {n.name for n in r.anchored_to_old_root()}
    assert all(r.rolled_at <= at <= r.overlap_end for at in renewed.values())
    assert len({core.digest() for core in world.cores}) == 1


def test_a_root_rollover_without_auto_renew_drops_the_old_roots_members_at_the_overlaps_end() -> (
    None
):
    """Without auto-renew (and nobody certified again by hand), every member anchored only to
    the old root, admitted before the rollover or during the overlap through the admin's old
    certificate, is expired (root-retired) from the moment the overlap ends, after a warning
    on each day of the overlap; the member admitted under the new root stays."""
    r = RolledOver()
    world = r.world
    core = world.cores[2]
    warnings = ExpiryWarnings()
    warned: dict[str, list[int]] = {}
    for now in _walk_times(r.overlap_end + 10 * DAY):
        r.step(now)
        core.tick(now)
        for ending in warnings.due(now, endings(core, now)):
            if ending.kind == "member":
                warned.setdefault(ending.label, []).append(now)
        for node in world.members:
            state = _standing(core, node, now)
            if node.name == "via-new-root" or now <= r.overlap_end:
                assert state == (MemberState.ADMITTED, ""), (node.name, now)
            else:
                assert state == (MemberState.EXPIRED, "root-retired"), (node.name, now)
    for node in r.anchored_to_old_root():
        assert core.credentials_end(node.key.public) == r.overlap_end
        times = warned[node.name]
        joined = max(
            r.rolled_at,
            node.credential.admitted_at if isinstance(node.credential, Admission) else 0,
        )
        # Once a day from the rollover (or its admission, if later) until the overlap ends.
        assert times[0] - joined < DAY
        assert all(b - a >= DAY for a, b in itertools.pairwise(times))
        assert times[-1] <= r.overlap_end
        assert len(times) >= (r.overlap_end - joined) // DAY
    assert "via-new-root" not in warned


def test_auto_renew_copies_the_retiring_roots_revocations_under_the_new_root() -> None:
    """A revocation signed during the overlap by an admin still on its old certificate is
    copied by an admin (or the root) under the new root on its next online day: the member
    stays revoked after the overlap, on a node that was offline through all of it too. A node
    that may not revoke, or that signs under the retiring root itself, copies nothing."""
    r = RolledOver()
    world = r.world
    net = world.net
    world.deliver([r.rollover], r.rolled_at)
    old_admin = net.admin()
    target = world.members[2]
    revoked_at = r.rolled_at + 5 * DAY
    revocation = net.revoke(target.key.public, at=revoked_at, issuer=old_admin)
    world.deliver([revocation], revoked_at)
    core = world.cores[1]
    later = revoked_at + DAY
    network_id = net.anchor.network_id
    assert carry_revocations(core, old_admin, network_id, later) == []  # under the old root
    assert carry_revocations(core, r.admin_again, network_id, later) == []  # no revoke cap
    admin_again = Issuer(old_admin.key, _under(r, old_admin))
    copies = carry_revocations(core, admin_again, network_id, later)
    assert [(c.target, c.sponsored, c.expires_at) for c in copies] == [
        (target.key.public, revocation.sponsored, revocation.expires_at)
    ]
    world.deliver(list(copies), later)
    assert carry_revocations(core, admin_again, network_id, later + DAY) == []
    after = r.overlap_end + DAY
    offline = net.state()
    batch = offline.merge_batch(world.log, after)
    assert batch.rejected == ("root-retired",)  # the old admin's own, after the overlap
    for state in (core, offline):
        state.tick(after)
        assert _standing(state, target, after) == (MemberState.REVOKED, "revoked")
    assert offline.digest() == core.digest()


def _under(r: RolledOver, admin: Issuer) -> Certificate:
    """``admin``'s key certified by the new root, as `meshd root rollover` writes it."""
    old = admin.certificate
    assert old is not None
    return make_certificate(
        r.new_root,
        network_id=r.world.net.anchor.network_id,
        subject=old.subject,
        role=Role.ADMIN,
        serial=os.urandom(16),
        not_before=r.rolled_at,
        not_after=old.not_after,
        caps=old.caps,
        name=old.name,
        prefixes=old.prefixes,
    )
