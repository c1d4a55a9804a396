"""``meshd root rollover`` certifies again every admin still in use, and no admin key that
was handed over (``meshd admin rotate``): its successor is the admin the new root certifies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshd.node.statedir import NodeDir, now
from meshd.records import Certificate, decode_untrusted
from meshd.trust.keyfiles import read_secret
from meshd.trust.keys import SigningKey, fingerprint
from tests.cli.test_cli import run


def test_a_rollover_certifies_the_successor_of_a_rotated_admin_not_the_old_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "root"
    code, _, err = run(capsys, "init", "--network", "barnet", "--state-dir", str(state))
    assert code == 0, err
    folder = tmp_path / "admin"
    code, _, err = run(capsys, "admin", "create", "--out", str(folder), "--state-dir", str(state))
    assert code == 0, err
    old = SigningKey(read_secret(folder / "admin.key")).public
    code, _, err = run(
        capsys, "admin", "rotate", "--admin-dir", str(folder), "--state-dir", str(state)
    )
    assert code == 0, err
    heir = SigningKey(read_secret(folder / "admin.key")).public
    assert heir != old
    certs = tmp_path / "certs"
    code, out, err = run(
        capsys, "root", "rollover", "--admin-certs", str(certs), "--json", "--state-dir",
        str(state),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["admins_certified_again"] == 1
    assert sorted(p.name for p in certs.iterdir()) == [f"{fingerprint(heir)}.cert"]
    cert = decode_untrusted((certs / f"{fingerprint(heir)}.cert").read_bytes(), Certificate)
    assert cert.subject == heir


def test_a_rollover_copies_the_admin_hand_over_so_its_cut_off_outlives_the_old_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "root"
    code, _, err = run(capsys, "init", "--network", "barnet", "--state-dir", str(state))
    assert code == 0, err
    folder = tmp_path / "admin"
    code, _, err = run(capsys, "admin", "create", "--out", str(folder), "--state-dir", str(state))
    assert code == 0, err
    old = SigningKey(read_secret(folder / "admin.key")).public
    code, _, err = run(
        capsys, "admin", "rotate", "--admin-dir", str(folder), "--state-dir", str(state)
    )
    assert code == 0, err
    code, out, err = run(
        capsys, "root", "rollover", "--overlap", "1d", "--json", "--state-dir", str(state)
    )
    assert code == 0, err
    assert json.loads(out)["admin_handovers_copied"] == 1
    # A second rollover, within the first's overlap: one copy again, not one of the
    # hand-over and one of its first copy.
    code, out, err = run(
        capsys, "root", "rollover", "--overlap", "1d", "--json", "--state-dir", str(state)
    )
    assert code == 0, err
    assert json.loads(out)["admin_handovers_copied"] == 1
    node = NodeDir.open(state)
    try:
        cutoff = node.membership().admin_cutoff(old)
        assert cutoff is not None
        # Past both overlaps the older roots' hand-overs are retired; the last copy keeps
        # the cut-off.
        assert node.membership(now() + 2 * 86400).admin_cutoff(old) == cutoff
    finally:
        node.close()
