"""The trust-layer command line, driven as a user would (in-process, and a few subprocesses)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from meshd.cli import main
from meshd.trust.invites import decode_token_untrusted


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run meshd in-process; return (exit status, stdout, stderr)."""
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("meshd: ")


@pytest.fixture
def founder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    state = tmp_path / "a"
    code, out, _ = run(
        capsys,
        "init",
        "--network",
        "barnet",
        "--name",
        "alpha",
        "--state-dir",
        str(state),
        "--json",
    )
    assert code == 0
    info = json.loads(out)
    assert info["network"] == "barnet"
    assert info["overlay_prefix"].startswith("fd")
    assert info["overlay_prefix"].endswith("/48")
    return state


def test_init_writes_private_keys(founder: Path) -> None:
    assert stat.S_IMODE(founder.stat().st_mode) == 0o700
    for name in ("node.key", "wg.key", "root.key", "meshd.db"):
        assert stat.S_IMODE((founder / name).stat().st_mode) == 0o600, name


def test_init_twice_is_refused(founder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "init", "--network", "x", "--state-dir", str(founder))
    one_line_error(code, err)
    assert "already holds" in err


def test_root_key_kept_elsewhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state, offline = tmp_path / "n", tmp_path / "usb" / "root.key"
    code, _, _ = run(
        capsys, "init", "--network", "n", "--root-key", str(offline), "--state-dir", str(state)
    )
    assert code == 0
    assert offline.exists()
    assert not (state / "root.key").exists()
    code, _, err = run(capsys, "invite", "--state-dir", str(state))
    one_line_error(code, err)
    assert "--root-key" in err
    code, out, _ = run(capsys, "invite", "--root-key", str(offline), "--state-dir", str(state))
    assert code == 0
    assert out.strip().startswith("meshd1")


def test_invite_prints_one_verifiable_line(
    founder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "invite",
        "--name",
        "bob",
        "--expires",
        "2h",
        "--uses",
        "3",
        "--prefix",
        "10.9.0.0/24",
        "--bootstrap",
        "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WGqdpBQ6tGRmFg5NKxE8Vb9tQ",
        "--state-dir",
        str(founder),
    )
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1
    assert " " not in lines[0]
    token = lines[0]
    assert token not in err  # the secret goes to stdout only
    invite = decode_token_untrusted(token)
    assert invite.certificate.max_uses == 3
    assert invite.certificate.not_after - invite.certificate.not_before == 7200
    assert invite.bootstrap == (
        "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WGqdpBQ6tGRmFg5NKxE8Vb9tQ",
    )
    code, out, _ = run(capsys, "inspect", token, "--json", "--state-dir", str(founder))
    assert code == 0
    info = json.loads(out)
    assert info["uses"] == 3
    assert info["status"] == "valid now"
    assert info["member_prefixes"] == ["10.9.0.0/24"]
    assert info["this_node"] == "same network"
    assert invite.secret.hex() not in out
    assert "secret" not in info


@pytest.mark.parametrize("position", [0.1, 0.5, 0.9])
def test_tampered_token_is_refused(
    founder: Path, capsys: pytest.CaptureFixture[str], position: float
) -> None:
    _, out, _ = run(capsys, "invite", "--state-dir", str(founder))
    token = out.strip()
    i = int(len(token) * position)
    bad = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
    code, _, err = run(capsys, "inspect", bad)
    one_line_error(code, err)


def test_world_readable_key_is_refused(founder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.chmod(founder / "node.key", 0o644)
    code, _, err = run(capsys, "invite", "--state-dir", str(founder))
    one_line_error(code, err)
    assert "chmod 600" in err


def test_state_dir_from_environment(
    founder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHD_STATE_DIR", str(founder))
    code, out, _ = run(capsys, "invite")
    assert code == 0
    assert out.startswith("meshd1")


def test_missing_state_dir_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "invite", "--state-dir", str(tmp_path / "nothing"))
    one_line_error(code, err)
    assert "meshd init" in err


def test_bad_arguments_are_one_line(founder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["invite", "--expires", "3x"],
        ["invite", "--uses", "0"],
        ["invite", "--prefix", "10.0.0.1/8"],
        ["revoke"],
        ["revoke", "a", "--invite", "b"],
    ):
        code, _, err = run(capsys, *argv, "--state-dir", str(founder))
        one_line_error(code, err)


def test_revoke_by_name_id_and_key(
    founder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from meshd.node.statedir import NodeDir, now
    from meshd.trust.keys import SigningKey, WireGuardKey

    node = NodeDir.open(founder)
    state = node.membership()
    members = []
    for name in ("carol", "dave", "dave"):
        _, out, _ = run(capsys, "invite", "--state-dir", str(founder))
        invite = decode_token_untrusted(out.strip())
        from meshd.trust.invites import enroll

        key, wg = SigningKey.generate(), WireGuardKey.generate()
        enrollment = enroll(invite, node_key=key.public, wg_key=wg.public, name=name, now=now())
        admission = state.sponsor(node.node_key, enrollment, now())
        node.store.apply([state.ingest(admission, now())])
        members.append((key, wg))
    node.close()
    # Ambiguous names are an error, not a guess.
    code, _, err = run(capsys, "revoke", "dave", "--state-dir", str(founder))
    one_line_error(code, err)
    assert "matches 2 members" in err
    code, _, err = run(capsys, "revoke", "nobody", "--state-dir", str(founder))
    one_line_error(code, err)
    code, out, _ = run(
        capsys, "revoke", "carol", "--reason", "left", "--json", "--state-dir", str(founder)
    )
    assert code == 0
    info = json.loads(out)
    assert info["excluded"] == ["carol"]
    assert info["reason"] == "left"
    from meshd.trust.keys import fingerprint

    code, out, _ = run(
        capsys,
        "revoke",
        fingerprint(members[1][0].public)[:8],
        "--json",
        "--state-dir",
        str(founder),
    )
    assert code == 0
    assert json.loads(out)["excluded"] == ["dave"]
    import base64

    wg_b64 = base64.b64encode(members[2][1].public).decode()
    code, out, _ = run(capsys, "revoke", wg_b64, "--json", "--state-dir", str(founder))
    assert code == 0
    assert json.loads(out)["excluded"] == ["dave"]
    # The revocations are in the store, verified again when read back.
    node = NodeDir.open(founder)
    states = {m.name + m.node_id: m.state.value for m in node.membership().members(now())}
    node.close()
    assert sorted(states.values()) == ["admitted", "revoked", "revoked", "revoked"]


def test_revoke_again_after_a_legacy_revocation(
    founder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A member revoked before revocations had a list (a legacy revocation, judged by dates)
    is revoked again with a listed one, and the output says so."""
    from meshd.node.statedir import NodeDir, now
    from meshd.records import Role, make_revocation
    from meshd.trust.invites import enroll
    from meshd.trust.keys import SigningKey, WireGuardKey

    _, out, _ = run(capsys, "invite", "--state-dir", str(founder))
    invite = decode_token_untrusted(out.strip())
    node = NodeDir.open(founder)
    state = node.membership()
    key, wg = SigningKey.generate(), WireGuardKey.generate()
    enrollment = enroll(invite, node_key=key.public, wg_key=wg.public, name="carol", now=now())
    node.store.apply([state.ingest(state.sponsor(node.node_key, enrollment, now()), now())])
    legacy = make_revocation(
        node.issuer().key,
        network_id=node.anchor.network_id,
        target=key.public,
        target_role=Role.MEMBER,
        issued_at=now(),
        expires_at=now() + 400 * 86400,
        sponsored=None,
    )
    node.store.apply([state.ingest(legacy, now())])
    node.close()
    node = NodeDir.open(founder)
    assert node.membership().only_legacy_revocations(key.public)
    node.close()
    code, out, err = run(capsys, "revoke", "carol", "--state-dir", str(founder))
    assert code == 0
    assert "revoked carol" in out
    assert "revoked before, by legacy revocations only" in err
    node = NodeDir.open(founder)
    state = node.membership()
    node.close()
    assert not state.only_legacy_revocations(key.public)
    assert {r.legacy for r in state.revocations()} == {True, False}
    # Revoked by a listed revocation already: a new one is not announced as closing anything.
    code, out, _ = run(capsys, "revoke", "carol", "--json", "--state-dir", str(founder))
    assert code == 0
    assert json.loads(out)["relisted"] is False


def test_revoke_unused_invite(founder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, err = run(capsys, "invite", "--state-dir", str(founder))
    invite_id = err.split()[1].rstrip(":")
    code, out, _ = run(
        capsys, "revoke", "--invite", invite_id[:6], "--json", "--state-dir", str(founder)
    )
    assert code == 0
    assert json.loads(out)["target_role"] == "invite"
    # Kept for good: the invite's members can be renewed past any end known here
    # (tests/membership/test_revocations_kept.py).
    from meshd.node.store import Store
    from meshd.records import U64, Kind, Revocation, decode_untrusted

    store = Store(founder / "meshd.db")
    try:
        raws = [raw for _, raw in store.rows([Kind.REVOCATION])]
    finally:
        store.close()
    assert [decode_untrusted(raw, Revocation).expires_at for raw in raws] == [U64]


def test_admin_delegation(
    founder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    helper = tmp_path / "helper"
    code, out, _ = run(capsys, "init", "--network", "other", "--state-dir", str(helper))
    assert code == 0
    # An admin key for the founder's network, written into another folder.
    admin_dir = tmp_path / "admin"
    code, out, _ = run(
        capsys,
        "admin",
        "create",
        "--out",
        str(admin_dir),
        "--caps",
        "invite",
        "--json",
        "--state-dir",
        str(founder),
    )
    assert code == 0
    assert json.loads(out)["caps"] == ["invite"]
    assert stat.S_IMODE((admin_dir / "admin.key").stat().st_mode) == 0o600
    # A node holding only the admin key can invite but not revoke.
    (founder / "root.key").rename(tmp_path / "root.key")
    for name in ("admin.key", "admin.cert"):
        (founder / name).write_bytes((admin_dir / name).read_bytes())
    os.chmod(founder / "admin.key", 0o600)
    code, out, _ = run(capsys, "invite", "--state-dir", str(founder))
    assert code == 0
    assert decode_token_untrusted(out.strip()).certificate.chain
    code, _, err = run(capsys, "revoke", "--invite", "aaaa", "--state-dir", str(founder))
    one_line_error(code, err)
    assert "revoke capability" in err


def test_inspect_key_and_record_files(founder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inspect", str(founder / "wg.key"), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["key_type"] == "WireGuard (X25519)"
    raw = (founder / "wg.key").read_text().strip()
    assert raw not in out  # never the secret
    code, _, err = run(capsys, "inspect", str(founder / "nope"))
    one_line_error(code, err)


def test_version_and_help_in_a_real_process() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meshd", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert done.stdout.startswith("meshd ")
    done = subprocess.run(
        [sys.executable, "-m", "meshd", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    for verb in ("init", "invite", "revoke", "inspect"):
        assert verb in done.stdout


@pytest.mark.parametrize("args", [[], ["admin"]])
def test_a_command_group_alone_prints_its_help_as_a_usage_error(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "meshd", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0].startswith("Usage: meshd")
    assert "Commands:" in lines
    assert len(lines) > 5  # the help as --help shows it, not folded into one line


@pytest.mark.parametrize("command", ["peers", "status", "routes"])
def test_commands_that_ask_the_daemon_import_nothing_heavy(tmp_path: Path, command: str) -> None:
    """They must feel instant: no libp2p, trio, pyroute2, nor the trust layer's store."""
    code = (
        "import sys\n"
        "from meshd.cli import main\n"
        "try:\n"
        f"    main([{command!r}, '--state-dir', {str(tmp_path)!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('libp2p', 'trio', 'pyroute2', 'multiaddr', 'sqlite3', 'nacl',\n"
        "         'meshd.node.store')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "daemon is running" in done.stderr, done.stderr
    assert done.stdout.strip() == ""


def test_secret_arguments_from_stdin_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from meshd.cli.parse import read_secret_argument
    from meshd.errors import UsageError

    assert read_secret_argument(" meshd1abc ", "--invite") == "meshd1abc"
    monkeypatch.setattr("sys.stdin", io.StringIO("meshd1fromstdin\n"))
    assert read_secret_argument("-", "--invite") == "meshd1fromstdin"
    token = tmp_path / "token"
    token.write_text("meshd1fromfile\n")
    assert read_secret_argument(f"@{token}", "--invite") == "meshd1fromfile"
    with pytest.raises(UsageError):
        read_secret_argument(f"@{tmp_path / 'absent'}", "--invite")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(UsageError):
        read_secret_argument("-", "--invite")


def test_a_command_exit_status_reaches_the_shell() -> None:
    code = (
        "import typer\n"
        "from meshd.cli import main\n"
        "from meshd.cli.app import app\n"
        "@app.command(hidden=True)\n"
        "def failing() -> None:\n"
        "    raise typer.Exit(3)\n"
        "main(['failing'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert done.returncode == 3
