"""`meshd rotate wg`, `meshd root rollover` and `meshd admin renew`, offline (no daemon)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from meshd.membership import MemberState
from meshd.node.statedir import NodeDir, now
from meshd.records import Certificate, decode_untrusted
from meshd.trust.invites import decode_token_untrusted
from meshd.trust.keyfiles import read_secret
from meshd.trust.keys import SigningKey, WireGuardKey
from meshd.wg.model import key_to_base64
from tests.cli.test_cli import founder, one_line_error, run

__all__ = ["founder"]

DAY = 86400


def test_rotate_wg_offline_writes_the_key_first_and_stores_the_rotation(
    founder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = WireGuardKey(read_secret(founder / "wg.key")).public
    code, out, _ = run(capsys, "rotate", "wg", "--state-dir", str(founder), "--json")
    assert code == 0
    answer = json.loads(out)
    key_file = founder / "wg.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    new = WireGuardKey(read_secret(key_file)).public
    assert new != before
    assert answer["wg_public_key"] == key_to_base64(new)
    node = NodeDir.open(founder)
    try:
        state = node.membership()
        member = state.member(node.node_key.public, now())
        assert member is not None
        assert member.wg_key == new
        assert member.wg_counter == answer["counter"]
    finally:
        node.close()
    # Again: a higher counter, another key.
    code, out, _ = run(capsys, "rotate", "wg", "--state-dir", str(founder), "--json")
    assert code == 0
    assert json.loads(out)["counter"] > answer["counter"]


def test_root_rollover_keeps_the_network_and_certifies_members_again(
    founder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old_root = SigningKey(read_secret(founder / "root.key")).public
    code, out, _ = run(
        capsys, "root", "rollover", "--overlap", "1d", "--state-dir", str(founder), "--json"
    )
    assert code == 0, out
    info = json.loads(out)
    assert info["members_certified_again"] == 1
    new_root = SigningKey(read_secret(founder / "root.key")).public
    assert new_root != old_root
    assert stat.S_IMODE((founder / "root.key").stat().st_mode) == 0o600
    node = NodeDir.open(founder)
    try:
        assert node.anchor.root_key == old_root  # the network record does not change
        state = node.membership()
        assert state.roots.current() == new_root
        later = now() + 2 * DAY
        member = state.member(node.node_key.public, later)
        assert member is not None
        assert member.state is MemberState.ADMITTED  # on its certificate from the new root
    finally:
        node.close()
    # The new root issues invites; the old key is gone from the state dir.
    code, out, _ = run(capsys, "invite", "--name", "beta", "--state-dir", str(founder))
    assert code == 0
    token = decode_token_untrusted(out.strip().splitlines()[-1])
    assert token.certificate.issuer == new_root
    assert token.network.root_key == old_root


def test_a_second_rollover_with_the_retired_key_is_refused(
    founder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    retired = tmp_path / "retired.key"
    retired.write_bytes((founder / "root.key").read_bytes())
    retired.chmod(0o600)
    code, _, _ = run(capsys, "root", "rollover", "--state-dir", str(founder))
    assert code == 0
    code, _, err = run(
        capsys,
        "root",
        "rollover",
        "--root-key",
        str(retired),
        "--new-root-key",
        str(tmp_path / "other.key"),
        "--state-dir",
        str(founder),
    )
    one_line_error(code, err)
    assert "already been rolled over" in err


def test_admin_renew_certifies_the_same_key_under_the_current_root(
    founder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin_dir = tmp_path / "admin"
    code, _, err = run(
        capsys, "admin", "create", "--out", str(admin_dir), "--state-dir", str(founder)
    )
    assert code == 0, err
    old = decode_untrusted((admin_dir / "admin.cert").read_bytes(), Certificate)
    code, _, err = run(capsys, "root", "rollover", "--state-dir", str(founder))
    assert code == 0, err
    new_root = SigningKey(read_secret(founder / "root.key")).public
    out_file = tmp_path / "admin.cert.new"
    code, _, err = run(
        capsys,
        "admin",
        "renew",
        "--cert",
        str(admin_dir / "admin.cert"),
        "--out",
        str(out_file),
        "--expires",
        "400d",
        "--state-dir",
        str(founder),
    )
    assert code == 0, err
    new = decode_untrusted(out_file.read_bytes(), Certificate)
    assert new.subject == old.subject
    assert new.issuer == new_root
    assert (new.caps, new.name, new.prefixes) == (old.caps, old.name, old.prefixes)
    node = NodeDir.open(founder)
    try:
        node.membership().verifier.certificate(new)  # verifies under the rolled-over root
    finally:
        node.close()


def test_rotate_node_offline_keeps_name_and_address(
    founder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = NodeDir.open(founder)
    try:
        old = node.node_key.public
        before = node.membership().member(old, now())
        assert before is not None
    finally:
        node.close()
    code, out, err = run(capsys, "rotate", "node", "--state-dir", str(founder), "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["overlay_ip"] == str(before.overlay)
    assert not (founder / "node.key.next").exists()
    assert stat.S_IMODE((founder / "node.key").stat().st_mode) == 0o600
    node = NodeDir.open(founder)
    try:
        new = node.node_key.public
        assert new != old
        assert node.first_key == old
        state = node.membership()
        after = state.member(new, now())
        assert after is not None
        assert after.state is MemberState.ADMITTED
        assert (after.name, after.overlay, after.not_after) == (
            before.name,
            before.overlay,
            before.not_after,
        )
        gone = state.member(old, now())
        assert gone is not None
        assert (gone.state, gone.reason) == (MemberState.REVOKED, "handed-over")
    finally:
        node.close()
    # And again, from the new key: a chain of hand-overs keeps the first address.
    code, out, err = run(capsys, "rotate", "node", "--state-dir", str(founder), "--json")
    assert code == 0, err
    assert json.loads(out)["overlay_ip"] == str(before.overlay)


def test_rotate_node_from_a_key_already_handed_over_is_refused(
    founder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state directory put back from a copy taken before a rotation holds the old node key:
    a second hand-over of it would end the membership on every node (a key that hands over
    twice forfeits it): the key stands no more, so `rotate node` refuses in one line (exit 1)
    and writes no key."""
    kept = (founder / "node.key").read_bytes()
    code, _, err = run(capsys, "rotate", "node", "--state-dir", str(founder))
    assert code == 0, err
    (founder / "node.key").write_bytes(kept)
    code, _, err = run(capsys, "rotate", "node", "--state-dir", str(founder))
    one_line_error(code, err)
    assert code == 1, err
    assert "not a standing member" in err
    assert not (founder / "node.key.next").exists()


def test_a_rotation_cut_short_is_finished_on_open(
    founder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hand-over was stored but the new key not yet put in place: opening the state dir
    puts it in place (the store names it)."""
    from meshd.records import make_handover
    from meshd.trust.keyfiles import write_secret

    node = NodeDir.open(founder)
    try:
        state = node.membership()
        new = SigningKey.generate()
        raw = state.credential_record(node.node_key.public)
        assert raw is not None
        record = make_handover(
            node.node_key,
            new,
            network_id=node.anchor.network_id,
            issued_at=now(),
            wg_key=node.wg_key.public,
            credential=decode_untrusted(raw, Certificate),
        )
        write_secret(founder / "node.key.next", new.seed)
        node.store.apply([state.ingest(record, now())])
    finally:
        node.close()
    node = NodeDir.open(founder)
    try:
        assert node.node_key.public == new.public
        assert not (founder / "node.key.next").exists()
    finally:
        node.close()


def test_root_rollover_copies_revocations_and_certifies_admins_again(
    founder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every revocation is copied under the new root (it stays revoked after the overlap,
    when the old root's own no longer counts) and every admin known here that is not
    revoked gets a certificate under the new root, written for it to install."""
    kept, dropped = tmp_path / "kept", tmp_path / "dropped"
    for folder in (kept, dropped):
        code, _, err = run(
            capsys, "admin", "create", "--out", str(folder), "--state-dir", str(founder)
        )
        assert code == 0, err
    gone = decode_untrusted((dropped / "admin.cert").read_bytes(), Certificate)
    code, _, err = run(capsys, "revoke", "--admin", _admin_id(gone), "--state-dir", str(founder))
    assert code == 0, err
    code, out, err = run(
        capsys, "root", "rollover", "--overlap", "1d", "--state-dir", str(founder), "--json"
    )
    assert code == 0, err
    info = json.loads(out)
    assert info["revocations_copied"] == 1
    assert info["admins_certified_again"] == 1
    new_root = SigningKey(read_secret(founder / "root.key")).public
    old = decode_untrusted((kept / "admin.cert").read_bytes(), Certificate)
    written = Path(info["admin_certs"]) / f"{_admin_id(old)}.cert"
    assert stat.S_IMODE(written.parent.stat().st_mode) == 0o700
    new = decode_untrusted(written.read_bytes(), Certificate)
    assert (new.subject, new.issuer, new.not_after) == (old.subject, new_root, old.not_after)
    assert (new.caps, new.name, new.prefixes) == (old.caps, old.name, old.prefixes)
    node = NodeDir.open(founder)
    try:
        after = now() + 2 * DAY
        state = node.membership(after)
        state.verifier.certificate(new)
        assert state.is_revoked(gone.subject)  # by the copy: the old root's own is retired
        assert all(r.issuer == new_root for r in state.revocations())
    finally:
        node.close()


def _admin_id(cert: Certificate) -> str:
    from meshd.trust.keys import fingerprint

    return fingerprint(cert.subject)


def test_auto_renew_takes_up_the_admins_new_certificate_and_carries_revocations(
    founder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An admin's auto-renewing daemon, after a rollover: once its certificate under the new
    root is installed as admin.cert it signs under it (no restart), renews the members the
    overlap would end, and copies under the new root a revocation made under the old one."""
    from meshd.daemon.renewer import AutoRenew
    from meshd.daemon.state import NodeState
    from meshd.records import Role, make_revocation
    from meshd.trust.invites import Issuer
    from tests.cli.test_cli_lifecycle import Clock, _member, _no_flood

    carol = _member(founder, capsys, "carol", "400d")
    dave = _member(founder, capsys, "dave", "400d")
    admin_dir = tmp_path / "admin"
    code, _, err = run(
        capsys, "admin", "create", "--out", str(admin_dir), "--state-dir", str(founder)
    )
    assert code == 0, err
    old_cert = decode_untrusted((admin_dir / "admin.cert").read_bytes(), Certificate)
    (founder / "admin.cert").write_bytes(old_cert.raw)  # this node's own admin certificate
    code, out, err = run(
        capsys, "root", "rollover", "--overlap", "20d", "--state-dir", str(founder), "--json"
    )
    assert code == 0, err
    written = Path(json.loads(out)["admin_certs"]) / f"{_admin_id(old_cert)}.cert"
    node = NodeDir.open(founder)
    clock = Clock()
    try:
        state = NodeState(node, announce_ttl=None, clock=clock)
        admin = Issuer(SigningKey(read_secret(admin_dir / "admin.key")), old_cert)
        service = AutoRenew(state, admin, _no_flood, window=30 * DAY, period=365 * DAY, clock=clock)
        # A revocation the admin signs under its old certificate, during the overlap.
        old_revocation = make_revocation(
            admin.key,
            network_id=node.anchor.network_id,
            target=dave,
            target_role=Role.MEMBER,
            issued_at=clock.now,
            expires_at=clock.now + 400 * DAY,
            reason="gone",
            chain=admin.chain,
            sponsored=[],
        )
        state.add_local(old_revocation)
        # Under its old certificate it cannot carry anyone past the overlap: nothing made.
        assert service.step(clock.now) == []
        (founder / "admin.cert").write_bytes(written.read_bytes())  # installed
        clock.now += DAY
        made = service.step(clock.now)
        assert service.issuer.certificate is not None
        assert service.issuer.certificate.issuer == state.membership.roots.current()
        assert service.carried == 1
        assert service.renewed == 0
        assert made == [r.raw for r in state.membership.revocations() if r.target == dave][-1:]
        after = clock.now + 25 * DAY  # past the overlap
        state.membership.tick(after)
        member = state.membership.member(carol, after)
        assert member is not None
        assert member.state is MemberState.ADMITTED
        assert state.membership.is_revoked(dave)
    finally:
        node.close()


def test_status_and_peers_show_the_current_root_and_who_is_anchored_to_the_retiring_one(
    founder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`meshd status`: the current root's fingerprint and since when, the retiring root and
    the end of its overlap, the members anchored only to it (JSON and text); `meshd peers`
    marks them. Before any rollover: the first root, since the network's creation."""
    from meshd.cli.asking import _root_fields
    from meshd.daemon.state import NodeState
    from meshd.daemon.state_views import peers_view, status_view
    from meshd.trust.invites import Issuer, create_invite, enroll
    from meshd.trust.keys import fingerprint
    from tests.cli.test_cli_lifecycle import Clock

    node = NodeDir.open(founder)
    try:
        first = node.anchor.root_key
        view = status_view(NodeState(node, announce_ttl=None, clock=Clock()))
        assert view["root"] == {
            "current": fingerprint(first),
            "since": node.anchor.network.created_at,
            "retiring": [],
            "anchored_to_retiring": [],
        }
        assert "retiring_root" not in _root_fields(view["root"])
    finally:
        node.close()
    admin_dir = tmp_path / "admin"
    code, _, err = run(
        capsys, "admin", "create", "--out", str(admin_dir), "--state-dir", str(founder)
    )
    assert code == 0, err
    code, _, err = run(capsys, "root", "rollover", "--overlap", "20d", "--state-dir", str(founder))
    assert code == 0, err
    new_root = SigningKey(read_secret(founder / "root.key")).public
    # Dave joins during the overlap through the admin's certificate under the old root.
    old_admin = Issuer(
        SigningKey(read_secret(admin_dir / "admin.key")),
        decode_untrusted((admin_dir / "admin.cert").read_bytes(), Certificate),
    )
    node = NodeDir.open(founder)
    clock = Clock()
    try:
        invite = create_invite(old_admin, node.anchor, now=clock.now, lifetime=DAY, uses=1)
        key, wg = SigningKey.generate(), WireGuardKey.generate()
        enrollment = enroll(
            invite, node_key=key.public, wg_key=wg.public, name="dave", now=clock.now
        )
        state = NodeState(node, announce_ttl=None, clock=clock)
        state.add_local(state.membership.sponsor(node.node_key, enrollment, clock.now))
        rolled = state.membership.roots.winner_from(first)
        assert rolled is not None
        root = status_view(state)["root"]
        assert root == {
            "current": fingerprint(new_root),
            "since": rolled.issued_at,
            "retiring": [{"root": fingerprint(first), "overlap_until": rolled.overlap_until}],
            "anchored_to_retiring": ["dave"],
        }
        shown = _root_fields(root)
        assert shown["root"].startswith(fingerprint(new_root) + " (since ")
        assert shown["retiring_root"].startswith(fingerprint(first) + " (overlap until ")
        assert shown["anchored_to_retiring_root"] == ["dave"]
        rows = {r["name"]: r for r in peers_view(state, set())}
        assert rows["dave"]["retiring_root"] is True
        assert rows["dave"]["credentials_end"] == rolled.overlap_until
        assert all(r["retiring_root"] is None for name, r in rows.items() if name != "dave")
    finally:
        node.close()
