"""`meshd admin rotate` and `meshd admin renew` installing in place, offline (no daemon)."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from meshd.node.statedir import NodeDir, now
from meshd.records import AdminHandover, Certificate, decode_record_untrusted, decode_untrusted
from meshd.trust.keyfiles import read_secret
from meshd.trust.keys import SigningKey, fingerprint
from tests.cli.test_cli import founder, one_line_error, run

__all__ = ["founder"]


def admin_files(folder: Path) -> tuple[bytes, Certificate]:
    key = SigningKey(read_secret(folder / "admin.key")).public
    return key, decode_untrusted((folder / "admin.cert").read_bytes(), Certificate)


@pytest.fixture
def admin_dir(founder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    folder = tmp_path / "admin"
    code, _, err = run(capsys, "admin", "create", "--out", str(folder), "--state-dir", str(founder))
    assert code == 0, err
    return folder


def test_admin_rotate_replaces_the_key_and_stores_the_hand_over(
    founder: Path, admin_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old_key, old = admin_files(admin_dir)
    kept = tmp_path / "old-admin"
    shutil.copytree(admin_dir, kept)
    code, out, err = run(
        capsys, "admin", "rotate", "--admin-dir", str(admin_dir), "--state-dir", str(founder),
        "--json",
    )  # fmt: skip
    assert code == 0, err
    answer = json.loads(out)
    new_key, new = admin_files(admin_dir)
    assert new_key != old_key
    assert answer["old_admin_id"] == fingerprint(old_key)
    assert answer["admin_id"] == fingerprint(new_key)
    assert stat.S_IMODE((admin_dir / "admin.key").stat().st_mode) == 0o600
    assert sorted(p.name for p in admin_dir.iterdir()) == ["admin.cert", "admin.key"]
    assert (new.subject, new.caps, new.name, new.prefixes, new.not_after) == (
        new_key,
        old.caps,
        old.name,
        old.prefixes,
        old.not_after,
    )
    node = NodeDir.open(founder)
    try:
        state = node.membership()
        cutoff = state.admin_cutoff(old_key)
        assert cutoff is not None
        assert cutoff <= now()
        handovers = [
            r
            for rid in state.record_ids()
            if isinstance(r := decode_record_untrusted(state.record(rid) or b""), AdminHandover)
        ]
        assert [(h.old_key, h.new_key) for h in handovers] == [(old_key, new_key)]
        state.verifier.certificate(new)
    finally:
        node.close()
    # The old key's folder, kept somewhere, cannot be handed over again.
    code, _, err = run(
        capsys, "admin", "rotate", "--admin-dir", str(kept), "--state-dir", str(founder)
    )
    one_line_error(code, err)
    assert "already been replaced" in err
    # Nor renewed.
    code, _, err = run(
        capsys, "admin", "renew", "--admin-dir", str(kept), "--state-dir", str(founder)
    )
    one_line_error(code, err)
    assert "has been replaced" in err
    # The successor can be rotated in turn.
    code, _, err = run(
        capsys, "admin", "rotate", "--admin-dir", str(admin_dir), "--state-dir", str(founder)
    )
    assert code == 0, err
    assert admin_files(admin_dir)[0] not in (old_key, new_key)


def test_admin_rotate_needs_the_root_key_and_an_admin_folder(
    founder: Path, admin_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "admin", "rotate", "--admin-dir", str(tmp_path / "none"), "--state-dir",
        str(founder),
    )  # fmt: skip
    one_line_error(code, err)
    assert "no admin key here" in err
    # In the admin's own folder as a state dir there is no root key.
    (founder / "root.key").rename(tmp_path / "root.key")
    shutil.copy(admin_dir / "admin.key", founder / "admin.key")
    shutil.copy(admin_dir / "admin.cert", founder / "admin.cert")
    code, _, err = run(capsys, "admin", "rotate", "--state-dir", str(founder))
    one_line_error(code, err)
    assert "only the root key" in err
    # With --root-key it rotates the state dir's admin key in place.
    code, _, err = run(
        capsys, "admin", "rotate", "--root-key", str(tmp_path / "root.key"), "--state-dir",
        str(founder),
    )  # fmt: skip
    assert code == 0, err
    assert admin_files(founder)[0] != admin_files(admin_dir)[0]


def test_admin_renew_installs_where_the_admin_key_is_and_says_so_in_one_line(
    founder: Path, admin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, old = admin_files(admin_dir)
    code, out, err = run(
        capsys, "admin", "renew", "--admin-dir", str(admin_dir), "--expires", "500d",
        "--state-dir", str(founder),
    )  # fmt: skip
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"renewed admin {fingerprint(key)} (admin) until ")
    assert f"installed as {admin_dir / 'admin.cert'}" in lines[0]
    same, new = admin_files(admin_dir)
    assert same == key
    assert new.not_after > old.not_after
    assert (new.caps, new.prefixes) == (old.caps, old.prefixes)
    assert sorted(p.name for p in admin_dir.iterdir()) == ["admin.cert", "admin.key"]
    # --cert alone, where its key is not: refused, one line.
    code, _, err = run(
        capsys, "admin", "renew", "--cert", str(admin_dir / "admin.cert"), "--state-dir",
        str(founder),
    )  # fmt: skip
    one_line_error(code, err)
    assert "--out" in err


def test_admin_renew_refuses_an_admin_of_another_network(
    founder: Path, admin_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Renewed with another network's root, an admin's folder got a certificate of that
    network in place of its own (and that network an admin it never created)."""
    other = tmp_path / "other"
    code, _, err = run(capsys, "init", "--network", "elsewhere", "--state-dir", str(other))
    assert code == 0, err
    before = (admin_dir / "admin.cert").read_bytes()
    code, _, err = run(
        capsys, "admin", "renew", "--admin-dir", str(admin_dir), "--state-dir", str(other)
    )
    one_line_error(code, err)
    assert "belongs to another network" in err
    assert (admin_dir / "admin.cert").read_bytes() == before
    assert sorted(p.name for p in admin_dir.iterdir()) == ["admin.cert", "admin.key"]
    code, out, err = run(capsys, "admins", "--json", "--state-dir", str(other))
    assert code == 0, err
    assert fingerprint(admin_files(admin_dir)[0]) not in out


def test_inspect_checks_an_admin_hand_over(
    founder: Path, admin_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`inspect` verifies and describes an admin hand-over; one signed by a key that is not
    the root (its successor certified by that key too) says FAILED."""
    from meshd.records import make_admin_handover, make_certificate

    _, old = admin_files(admin_dir)
    node = NodeDir.open(founder)
    try:
        root = SigningKey(read_secret(node.paths.root_key))
        nid, t = node.anchor.network_id, now()
    finally:
        node.close()
    records = {}
    for name, signer in (("handover", root), ("forged", SigningKey.generate())):
        new = make_certificate(
            signer,
            network_id=nid,
            subject=SigningKey.generate().public,
            role=old.role,
            serial=old.serial,
            not_before=t,
            not_after=old.not_after,
            caps=old.caps,
            name=old.name,
            prefixes=old.prefixes,
        )
        records[name] = make_admin_handover(
            signer, network_id=nid, old_cert=old, new_cert=new, issued_at=t
        )
    for name, verdict in (("handover", "ok"), ("forged", "FAILED")):
        path = tmp_path / name
        path.write_bytes(records[name].raw)
        code, out, _ = run(capsys, "inspect", str(path), "--json", "--state-dir", str(founder))
        assert code == 0
        info = json.loads(out)
        assert info["kind"] == "adminhandover"
        assert info["old_admin_id"] == fingerprint(old.subject)
        assert info["signatures"].startswith(verdict), (name, out)


def test_auto_renew_takes_up_the_admins_new_key_after_a_rotation(
    founder: Path, admin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An admin's auto-renewing daemon whose admin key is replaced under it signs with the
    new key from its next round (the old one's renewals would be refused: admin-handed-over)."""
    from meshd.daemon.renewer import AutoRenew
    from meshd.daemon.state import NodeState
    from meshd.trust.invites import Issuer
    from tests.cli.test_cli_lifecycle import Clock, _member, _no_flood

    DAY = 86400
    carol = _member(founder, capsys, "carol", "20d")
    shutil.copy(admin_dir / "admin.key", founder / "admin.key")
    shutil.copy(admin_dir / "admin.cert", founder / "admin.cert")
    old_key, old = admin_files(founder)
    node = NodeDir.open(founder)
    clock = Clock()
    try:
        state = NodeState(node, announce_ttl=None, clock=clock)
        admin = Issuer(SigningKey(read_secret(founder / "admin.key")), old)
        service = AutoRenew(state, admin, _no_flood, window=30 * DAY, period=365 * DAY, clock=clock)
        code, _, err = run(capsys, "admin", "rotate", "--state-dir", str(founder))
        assert code == 0, err
        new_key = admin_files(founder)[0]
        handover = next(
            r
            for _, raw in node.store.rows()
            if isinstance(r := decode_record_untrusted(raw), AdminHandover)
        )
        clock.now = now()  # no earlier than the new certificate
        state.membership.ingest(handover, clock.now)
        made = service.step(clock.now)
        assert service.issuer.key.public == new_key != old_key
        assert service.renewed == 1
        assert len(made) == 1
        renewal = state.membership.renewals_of(carol)
        assert [r.issuer for r in renewal] == [new_key]
    finally:
        node.close()


def test_revoking_a_replaced_admin_key_says_its_successor_goes_with_it(
    founder: Path, admin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old_key, _ = admin_files(admin_dir)
    code, _, err = run(
        capsys, "admin", "rotate", "--admin-dir", str(admin_dir), "--state-dir", str(founder)
    )
    assert code == 0, err
    new_key, _ = admin_files(admin_dir)
    code, out, err = run(
        capsys, "revoke", "--admin", fingerprint(old_key), "--state-dir", str(founder)
    )
    assert code == 0, err
    assert "its successor is revoked with it" in out
    node = NodeDir.open(founder)
    try:
        assert node.membership().is_revoked(new_key)
    finally:
        node.close()


def test_admin_rotate_finishes_a_rotation_cut_short_after_the_hand_over_was_stored(
    founder: Path, admin_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stopped between storing the hand-over and putting the new files in place: run again,
    it puts them in place (the old key is already replaced, so it rotates nothing more)."""
    cut = tmp_path / "cut"
    shutil.copytree(admin_dir, cut)
    code, _, err = run(
        capsys, "admin", "rotate", "--admin-dir", str(admin_dir), "--state-dir", str(founder)
    )
    assert code == 0, err
    for name in ("admin.key", "admin.cert"):  # as left by a rotation cut short
        shutil.copy(admin_dir / name, cut / f"{name}.next")
    code, out, err = run(
        capsys, "admin", "rotate", "--admin-dir", str(cut), "--state-dir", str(founder)
    )
    assert code == 0, err
    assert out.startswith("finished a rotation cut short")
    assert len(out.strip().splitlines()) == 1
    assert admin_files(cut) == admin_files(admin_dir)
    assert sorted(p.name for p in cut.iterdir()) == ["admin.cert", "admin.key"]
