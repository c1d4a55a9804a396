"""What the membership core keeps per member: the judgements hold, and so does the saving
(one table of slotted entries, shared objects rather than equal copies)."""

from __future__ import annotations

import gc
import os
import sys
import tracemalloc

import pytest

from meshd.errors import VerifyError
from meshd.membership import Membership, MemberState
from meshd.membership.tables import MemberEntry
from meshd.records import Admission, Certificate, Role, make_admission, make_certificate, record_id
from meshd.trust.credential import Credential, Sponsored
from meshd.trust.keys import fingerprint
from tests.factory import DAY, T0, Net, Node

NOW = T0 + 100


def _admitted(members: int = 3) -> tuple[Net, list[Node], Membership]:
    net = Net()
    nodes = [net.founder(f"m{i}") for i in range(members)]
    state = net.state(announce_ttl=3600)
    state.ingest_batch([n.credential.raw for n in nodes], NOW)
    state.ingest_batch(
        [n.announce(net, NOW, endpoints=[f"192.0.2.{i}:51820"]).raw for i, n in enumerate(nodes)],
        NOW,
    )
    return net, nodes, state


def test_a_member_is_one_slotted_entry_in_one_table() -> None:
    _net, nodes, state = _admitted()
    for table in ("_announcements", "_identity", "_status", "_last_seen"):
        assert not hasattr(state, table)
        assert not hasattr(state._silence, table)
    # Nor does the sponsorship graph keep tables of credentials or standings by member.
    for table in ("_credentials", "_standing_cache"):
        assert not hasattr(state._standing, table)
    assert len(state._members) == len(nodes)
    for node in nodes:
        key = node.key.public
        entry = state._members[key]
        assert type(entry) is MemberEntry
        assert not hasattr(entry, "__dict__")
        view = state.member(key, NOW)
        assert view is not None
        assert view.state is MemberState.ADMITTED
        assert entry.state is MemberState.ADMITTED
        assert entry.announcement is view.announcement
        assert view.announcement is not None
        assert entry.last_seen == view.last_seen == NOW
        # The /128 is derived once: grants() hands out the entry's interned /128 (in a tuple
        # made when asked), and the view holds that /128, not a copy (nor an address).
        grants = state.grants(key)
        assert grants == (entry.own,)
        assert grants[0] is state.grants(key)[0] is entry.own
        assert view.overlay_prefix is grants[0]
        assert view.overlay == grants[0].network_address
        # Its credential and the one that stands are the entry's.
        assert entry.credentials is entry.standing is state._standing.standing(key)
        assert entry.judged is state._standing._judging
        # The node id is derived from the key when asked: neither the entry nor the view
        # keeps one (75 bytes a member).
        assert view.node_id == fingerprint(key)
        assert not hasattr(entry, "node_id")
        assert not hasattr(view, "_node_id")
    assert sys.getsizeof(state._members[nodes[0].key.public]) <= 88  # GC header included


def test_entries_keep_silence_and_a_revoked_member_loses_its_announcement() -> None:
    net, nodes, state = _admitted()
    gone = nodes[0].key.public
    # Silent past the TTL: expired; heard from again (a handshake): admitted.
    later = NOW + 3601 + 300
    member = state.member(gone, later)
    assert member is not None
    assert member.state is MemberState.EXPIRED
    state.heard(gone, later, later)
    member = state.member(gone, later)
    assert member is not None
    assert member.state is MemberState.ADMITTED
    assert state._members[gone].last_seen == later
    state.ingest(net.revoke(gone), NOW)
    assert state._members[gone].announcement is None
    assert state._members[gone].state is MemberState.REVOKED
    member = state.member(gone, NOW)
    assert member is not None
    assert member.state is MemberState.REVOKED
    assert member.announcement is None


def test_a_member_with_one_credential_holds_it_without_a_tuple() -> None:
    net, nodes, state = _admitted(2)
    node = nodes[0]
    key = node.key.public
    held = state._members[key].credentials
    assert held is not None
    assert not isinstance(held, tuple)
    assert held.node_key == key
    assert state._standing._held(key) == (held,)
    assert state._standing.standing(key) is held
    # Certified again: both kept, earliest first, and the earliest still decides.
    cert = node.credential
    assert isinstance(cert, Certificate)
    again = make_certificate(
        net.root,
        network_id=net.anchor.network_id,
        subject=key,
        role=Role.MEMBER,
        serial=os.urandom(16),
        not_before=T0 + 1,
        not_after=cert.not_after + DAY,
        name="again",
        wg_key=node.wg.public,
    )
    assert state.ingest(again, NOW).new
    both = state._members[key].credentials
    assert isinstance(both, tuple)
    assert [c.admitted_at for c in both] == [T0, T0 + 1]
    assert both[0] is held
    assert state._standing.standing(key) is held
    member = state.member(key, NOW)
    assert member is not None
    assert member.name == "m0"
    assert member.state is MemberState.ADMITTED
    assert state._standing.credentials_end(key) == cert.not_after + DAY


def test_a_kept_announcement_holds_the_credentials_node_key_not_a_copy() -> None:
    net, nodes, state = _admitted(2)
    for view in state.members(NOW):
        assert view.announcement is not None
        credential = state._standing.standing(view.node_key)
        assert credential is not None
        # The hot path's refresh (a batch) shares it ...
        assert view.announcement.node_key is credential.node_key
        assert view.node_key is credential.node_key
    # ... and so does the general path (one record, with a prefix of its own).
    node = nodes[0]
    own = state.grants(node.key.public)[0]
    ann = node.announce(net, NOW + 1, prefixes=[own])
    assert ann.node_key is not node.key.public
    outcome = state.ingest(ann, NOW + 1)
    assert outcome.new
    credential = state._standing.standing(node.key.public)
    assert credential is not None
    assert ann.node_key is credential.node_key
    assert ann.node_key == node.key.public
    assert state._members[node.key.public].announcement is ann


def test_members_of_one_invite_share_its_key_and_their_issuers() -> None:
    net = Net()
    founder = net.founder()
    state = net.state()
    state.ingest(founder.credential, NOW)
    admin = net.admin()
    invite = net.invite(uses=3, issuer=admin)
    joined = [net.join(state, founder, invite, f"j{i}") for i in range(3)]
    for node in joined:
        assert state.ingest(node.credential, NOW).new
    credentials = [state._standing.standing(node.key.public) for node in joined]
    first = credentials[0]
    assert first is not None
    assert first.issuers == (invite.certificate.subject, admin.key.public)
    assert first.invite == invite.certificate.subject
    assert first.issuers[0] is first.invite
    for credential in credentials:
        assert credential is not None
        assert credential.issuers is first.issuers
        assert credential.invite is first.invite
        assert credential.depends_on == (credential.node_key, *first.issuers)
    # A member the root certified depends on its own key alone, with no tuple of its own.
    own = state._standing.standing(founder.key.public)
    assert own is not None
    assert own.issuers == ()
    assert own.depends_on == (founder.key.public,)
    # The judgements are the keys': revoking the invite excludes its members only.
    assert state.ingest(net.revoke(invite.certificate.subject, Role.INVITE), NOW).new
    for node in joined:
        member = state.member(node.key.public, NOW)
        assert member is not None
        assert (member.state, member.reason) == (MemberState.REVOKED, "issuer-revoked")
    member = state.member(founder.key.public, NOW)
    assert member is not None
    assert member.state is MemberState.ADMITTED


def test_admissions_keep_no_tables_of_their_own_and_one_record_id_each() -> None:
    net = Net()
    founder = net.founder()
    state = net.state()
    state.ingest(founder.credential, NOW)
    invite = net.invite(uses=2)
    joined = [net.join(state, founder, invite, f"j{i}", at=T0 + 10 + i) for i in range(3)]
    for node in joined:
        assert state.ingest(node.credential, NOW).new
    invite_key = invite.certificate.subject
    # Which admission each (enrollment, sponsor) keeps, and how members rank under an
    # invite, are read from their credentials: the invite keeps only who holds one.
    assert not hasattr(state, "_admission_slots")
    keys = {node.key.public for node in joined}
    assert set(state._standing._ranked.get(invite_key)) == keys
    assert state.invite_uses(invite_key) == 3  # candidates: uses not counted
    judged = [state.member(node.key.public, NOW) for node in joined]
    assert [(m.state, m.reason) for m in judged if m is not None] == [
        (MemberState.ADMITTED, ""),
        (MemberState.ADMITTED, ""),
        (MemberState.REVOKED, "invite-used-up"),
    ]
    for node in joined:
        (credential,) = state._standing._held(node.key.public)
        # Its origin is its enrollment's id: one object (the set keeps its ids packed).
        assert credential.record_id in state._set
        assert credential.origin is credential.enrollment
    # A copy countersigned earlier by the same sponsor replaces the kept one.
    last = joined[2]
    admission = last.credential
    assert isinstance(admission, Admission)
    earlier = make_admission(founder.key, enrollment=admission.enrollment, admitted_at=T0 + 11)
    outcome = state.ingest(earlier, NOW)
    assert outcome.new
    assert record_id(admission.raw) in outcome.dropped
    (credential,) = state._standing._held(last.key.public)
    assert credential.record_id == record_id(earlier.raw)
    assert set(state._standing._ranked.get(invite_key)) == keys
    with pytest.raises(VerifyError) as info:
        state.ingest(admission, NOW)
    assert info.value.reason == "superseded-admission"


def test_a_certified_members_credential_keeps_no_admission_fields() -> None:
    net, nodes, state = _admitted(2)
    credential = state._standing.standing(nodes[0].key.public)
    assert credential is not None
    assert type(credential) is Credential
    # The defaults a certificate's credential reads from its class, and what it shares
    # with the other members the root certified in one Terms: 88 bytes, not 168.
    assert sys.getsizeof(credential) <= 88
    other = state._standing.standing(nodes[1].key.public)
    assert other is not None
    assert other.terms is credential.terms
    assert (credential.prefixes, credential.issuers, credential.admin) == ((), (), b"")
    assert credential.root == net.anchor.root_key
    assert (credential.invite, credential.max_uses, credential.sponsor) == (None, 0, None)
    assert (credential.enrollment, credential.rank) == (b"", 0)
    assert credential.origin is credential.record_id
    assert credential.admin_at == credential.admitted_at == T0
    # An admitted member's keeps them.
    invite = net.invite(uses=2)
    joined = net.join(state, nodes[0], invite, "j0")
    assert state.ingest(joined.credential, NOW).new
    admitted = state._standing.standing(joined.key.public)
    assert isinstance(admitted, Sponsored)
    assert admitted.invite == invite.certificate.subject
    assert admitted.sponsor == nodes[0].key.public
    assert admitted.origin is admitted.enrollment  # its membership: its enrollment
    assert admitted.admin_at == invite.certificate.not_before
    # The members of one invite share its terms: 120 bytes a credential, not 168.
    again = net.join(state, nodes[0], invite, "j1")
    assert state.ingest(again.credential, NOW).new
    second = state._standing.standing(again.key.public)
    assert isinstance(second, Sponsored)
    assert second.terms is admitted.terms
    assert sys.getsizeof(second) <= 120


def test_members_sharing_a_name_are_ordered_by_node_id() -> None:
    net = Net()
    names = ("b", "a", "b", "c", "b", "a")
    nodes = [net.founder(name) for name in names]
    state = net.state()
    state.ingest_batch([n.credential.raw for n in nodes], NOW)
    views = state.members(NOW)
    assert [(m.name, m.node_id) for m in views] == sorted(
        (name, fingerprint(n.key.public)) for name, n in zip(names, nodes, strict=True)
    )


def test_the_sponsor_graphs_tables_of_keys_are_dicts_not_sets() -> None:
    """An invite's members, a key's dependents and a sponsor's admissions are kept as a
    dict's keys: 300 members under three invites of 100 take ~156 bytes a member in those
    tables, where sets (growing fourfold) took ~224."""
    net = Net()
    founder = net.founder()
    state = net.state()
    state.ingest(founder.credential, NOW)
    joined = 0
    for batch in range(3):
        invite = net.invite(uses=100)
        for i in range(100):
            node = net.join(state, founder, invite, f"j{batch}-{i}", at=T0 + 10 + i)
            assert state.ingest(node.credential, NOW).new
            joined += 1
    graph = state._standing
    tables = (graph._ranked, graph._dependents, graph._sponsored, graph._sponsored_nodes)
    held = sum(sys.getsizeof(table.get(key)) for table in tables for key in table)
    assert held / joined < 180, held / joined
    assert all(type(table.get(key)) is dict for table in tables for key in table)
    assert len(state.members(NOW)) == joined + 1


def test_members_of_invites_of_one_use_keep_no_table_and_no_certificate_an_invite() -> None:
    """`meshd invite` makes invites of one use: a member each. Its invite's members and
    the members depending on its key are that member alone, not a dict of one (~230 bytes
    each); the invite's certificate is kept as the bytes its member's terms hold, decoded
    when asked, not decoded with its id (~400 bytes). 200 members, 200 invites: ~2,100
    bytes a member held in all, where these took ~2,700."""
    net = Net()
    founder = net.founder()
    state = net.state(announce_ttl=3600)
    state.ingest(founder.credential, NOW)
    # One invite valid for 40 days among those of a day (``meshd invite``'s default).
    invites = [net.invite(uses=1, lifetime=40 * DAY if i == 7 else DAY) for i in range(200)]
    joined = [
        net.join(state, founder, invite, f"j{i}", at=T0 + 10 + i)
        for i, invite in enumerate(invites)
    ]
    raws = [node.credential.raw for node in joined]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        state.ingest_batch(raws, NOW)
        assert len(state.members(NOW)) == len(joined) + 1
        gc.collect()
        held = (tracemalloc.get_traced_memory()[0] - before) / len(joined)
    finally:
        tracemalloc.stop()
    assert held < 2_300, held
    graph = state._standing
    for invite, node in zip(invites, joined, strict=True):
        key = invite.certificate.subject
        assert graph._ranked.get(key) == (node.key.public,)
        assert graph._dependents.get(key) == (node.key.public,)
    # What commands read (`meshd revoke invite`, the endings' warnings): every invite, once.
    issuing = state.issuing_certificates()
    assert [c.raw for c in issuing] == [i.certificate.raw for i in invites]
    assert all(type(c) is Certificate for c in issuing)
    # What ends soon is looked at every minute: only the invites that last long enough to be
    # warned about are decoded for it (chosen by what their bytes say).
    assert state.issuing_certificates(lasting_over=30 * DAY) == [invites[7].certificate]
    assert state.issuing_certificates(lasting_over=40 * DAY) == []


def test_a_certified_members_record_id_is_worked_out_not_kept() -> None:
    # ~1,000 members certified by the root: their credentials keep no record id (worked
    # out from their bytes when asked) and the sponsorship graph no entry by id for them
    # (each took 49 bytes of id and ~37 of table a member).
    net = Net()
    nodes = [net.founder(f"m{i}") for i in range(1000)]
    state = net.state(announce_ttl=3600)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        state.ingest_batch([n.credential.raw for n in nodes], NOW)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    kept = [
        stat.size_diff
        for stat in after.compare_to(before, "filename")
        if stat.traceback[0].filename.endswith(
            ("trust/chain.py", "records/ids.py", "membership/sponsor_graph.py")
        )
    ]
    # The credential, 64 bytes, and the tokens its judgement holds (~16): ~175 before.
    assert sum(kept) < 100 * len(nodes)
    assert not state._standing._by_rid
    for node in nodes[:10]:
        credential = state._standing.standing(node.key.public)
        assert type(credential) is Credential
        assert sys.getsizeof(credential) <= 64
        rid = record_id(node.credential.raw)
        assert credential.record_id == rid
        assert credential.origin == rid
        # Found by its id given its bytes (the set's), as a hand-over naming it looks it up.
        assert state._standing.credential_by_id(rid, state._set.get(rid)) is credential
        assert state._standing.credential_by_id(rid) is None
    announcement = nodes[0].announce(net, NOW, endpoints=["192.0.2.1:51820"])
    assert state.ingest(announcement, NOW).new
    rid = record_id(announcement.raw)
    assert state._standing.credential_by_id(rid, state._set.get(rid)) is None
    assert len(state.members(NOW)) == len(nodes)
