"""Each way a command can fail: its exact one line and its documented exit status."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.cli import failures, main
from meshd.cli.output import fit_widths
from meshd.errors import AlreadyRunning, MeshdError, NodeRevoked, UsageError
from tests.daemon.support import ROOT, meshd

README = ROOT / "README.md"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def the_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    state = tmp_path / "n"
    code, _, err = run(
        capsys, "init", "--network", "barnet", "--name", "a", "--state-dir", str(state)
    )
    assert code == 0, err
    return state


# --- the table -----------------------------------------------------------------------------


def test_the_readme_table_is_the_code_table() -> None:
    text = README.read_text()
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", text.split("### Exit status", 1)[1], re.M)
    assert [(int(code), meaning) for code, meaning in rows] == list(failures.EXIT_STATUSES)
    assert len({code for code, _ in failures.EXIT_STATUSES}) == len(failures.EXIT_STATUSES)


def test_exception_groups_are_unwrapped_to_the_error_inside(
    capsys: pytest.CaptureFixture[str],
) -> None:
    inner = AlreadyRunning("a meshd daemon already runs for /x", hint="stop it first")
    group = BaseExceptionGroup("nursery", [BaseExceptionGroup("inner", [inner])])
    assert failures.report(group) == 4
    assert capsys.readouterr().err == "meshd: a meshd daemon already runs for /x; stop it first\n"
    mixed = BaseExceptionGroup[BaseException]("nursery", [ValueError("x"), KeyboardInterrupt()])
    assert failures.report(mixed) == 130
    assert capsys.readouterr().err == "meshd: interrupted\n"
    assert failures.report(ExceptionGroup("g", [NodeRevoked.because("lost laptop")])) == 10
    assert "this node is revoked (lost laptop)" in capsys.readouterr().err


def test_an_error_of_ours_is_never_an_internal_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert failures.report(UsageError("no")) == 1
    assert failures.report(PermissionError(13, "Permission denied", "/etc/x")) == 5
    assert capsys.readouterr().err.splitlines()[1] == (
        "meshd: /etc/x: Permission denied; run as root, or fix the permissions of /etc/x"
    )
    assert failures.report(RuntimeError("bug")) == 70


# --- command-line errors: 2 ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["revoke"],
            "meshd: name exactly one thing to revoke; give a NODE, or --invite ID, or --admin ID",
        ),
        (
            ["invite", "--uses", "0"],
            "meshd: Invalid value for '--uses': Input should be greater than or equal to 1; "
            "see `meshd --help`",
        ),
        (
            ["invite", "--expires", "soon"],
            "meshd: --expires 'soon' is not a duration; write it like 30m, 24h or 7d",
        ),
        (["xyzzy"], "meshd: No such command 'xyzzy'; see `meshd --help`"),
        (["downn"], "meshd: No such command 'downn'. Did you mean 'down'? (see `meshd --help`)"),
        (
            ["up", "--listen", "10.231.0.2:7102"],
            "meshd: --listen '10.231.0.2:7102' is not a multiaddr; write it as a multiaddr, "
            "like /ip4/10.0.0.1/tcp/7100 or /ip6/::/tcp/7100",
        ),
        (
            ["up", "--listen", "/ip4/10.0.0.1/udp/7100"],
            "meshd: --listen '/ip4/10.0.0.1/udp/7100' is not a TCP listen address (/ip4 or /ip6, "
            "then /tcp); write it as a multiaddr, like /ip4/10.0.0.1/tcp/7100 or /ip6/::/tcp/7100",
        ),
    ],
)
def test_command_line_errors_exit_2(
    node: Path, capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    code, out, err = run(capsys, *args, "--state-dir", str(node))
    assert (code, out, the_line(err)) == (2, "", line)


def test_no_daemon_exits_3(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("status", "peers", "down"):
        code, _, err = run(capsys, command, "--state-dir", str(node))
        assert code == 3
        assert the_line(err) == (
            f"meshd: no meshd daemon is running for {node}; start it with `meshd up` "
            "(or pass the --state-dir it runs with)"
        )


# --- the state dir: 5 ----------------------------------------------------------------------


def test_init_on_a_read_only_file_system_exits_5(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only file system needs root")
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
    try:
        done = meshd("init", "--network", "x", "--state-dir", str(ro / "n"))
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    assert done.returncode == 5
    assert the_line(done.stderr) == (
        f"meshd: the state dir {ro / 'n'} is on a read-only file system; use a --state-dir on "
        "a writable file system"
    )


def test_init_in_an_unwritable_folder_exits_5(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("running as another user needs root")
    parent = tmp_path / "rootonly"
    parent.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    done = subprocess.run(
        [
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "meshd",
            "init",
            "--network",
            "x",
            "--state-dir",
            str(parent / "n"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 5, done.stderr
    assert the_line(done.stderr) == (
        f"meshd: no permission to write in the state dir {parent / 'n'}; run as root, or as the "
        "user that owns it, or use another --state-dir"
    )
    assert not (parent / "n").exists()


def test_a_state_dir_open_to_others_is_refused(
    node: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.chmod(node, 0o755)
    code, _, err = run(capsys, "invite", "--state-dir", str(node))
    assert code == 5
    assert (
        the_line(err)
        == f"meshd: the state dir {node} is open to others (mode 0755); run: chmod 700 {node}"
    )
    os.chmod(node, 0o700)
    assert run(capsys, "invite", "--state-dir", str(node))[0] == 0


def test_a_key_file_of_another_user_is_refused(
    node: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file away needs root")
    key = node / "node.key"
    os.chown(key, 65534, 65534)
    code, _, err = run(capsys, "invite", "--state-dir", str(node))
    assert code == 5
    assert the_line(err) == (
        f"meshd: the key file {key} belongs to uid 65534, not to this user (uid 0); run meshd "
        f"as its owner, or: chown -R 0 {key}"
    )


def test_a_key_file_readable_by_others_is_refused(
    node: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = node / "wg.key"
    os.chmod(key, 0o644)
    code, _, err = run(capsys, "invite", "--state-dir", str(node))
    assert code == 5
    assert (
        the_line(err)
        == f"meshd: the key file {key} is readable by others (mode 0644); run: chmod 600 {key}"
    )
    assert stat.S_IMODE(key.stat().st_mode) == 0o644  # refused, not repaired behind one's back


# --- the small ones ------------------------------------------------------------------------


def test_invite_without_addresses_says_what_to_do(
    node: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "invite", "--state-dir", str(node))
    assert code == 0
    assert out.startswith("meshd1")
    assert "run `meshd up` first" in err
    assert "need --bootstrap" not in err


def test_inspect_reads_a_token_from_stdin_or_a_file(
    node: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    code, token, _ = run(capsys, "invite", "--name", "bob", "--state-dir", str(node))
    assert code == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(token))
    code, out, _ = run(capsys, "inspect", "-", "--json", "--state-dir", str(node))
    assert code == 0
    assert json.loads(out)["member_name"] == "bob"
    (tmp_path / "token").write_text(token)
    code, out, _ = run(
        capsys, "inspect", f"@{tmp_path / 'token'}", "--json", "--state-dir", str(node)
    )
    assert code == 0
    assert json.loads(out)["member_name"] == "bob"
    code, _, err = run(capsys, "inspect", f"@{tmp_path / 'absent'}", "--state-dir", str(node))
    assert code == 1
    assert "is neither an invite token nor a file" in the_line(err)


def test_invites_and_admins_list_what_this_node_issued(
    node: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "invite", "--name", "bob", "--uses", "3", "--state-dir", str(node))[0] == 0
    assert run(capsys, "invite", "--name", "eve", "--state-dir", str(node))[0] == 0
    assert (
        run(
            capsys,
            "admin",
            "create",
            "--out",
            str(tmp_path / "adm"),
            "--name",
            "ops",
            "--state-dir",
            str(node),
        )[0]
        == 0
    )
    code, out, _ = run(capsys, "invites", "--json", "--state-dir", str(node))
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert (rows["bob"]["uses_left"], rows["bob"]["state"]) == (3, "open")
    eve = rows["eve"]["id"]
    code, _, err = run(
        capsys,
        "revoke",
        "--invite",
        eve,
        "--reason",
        "sent to the wrong person",
        "--state-dir",
        str(node),
    )
    assert code == 0, err
    code, out, _ = run(capsys, "invites", "--json", "--state-dir", str(node))
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["eve"]["state"] == "revoked"
    assert rows["eve"]["revocation_reason"] == "sent to the wrong person"
    code, out, _ = run(capsys, "invites", "--state-dir", str(node))
    assert "revoked (sent to the wrong person)" in out
    code, out, _ = run(capsys, "admins", "--json", "--state-dir", str(node))
    (ops,) = json.loads(out)
    assert (ops["name"], ops["caps"], ops["state"]) == ("ops", ["invite", "revoke"], "valid")


def test_tables_fit_the_terminal(
    node: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a-rather-long-invite-name-for-a-laptop", "b"):
        assert run(capsys, "invite", "--name", name, "--state-dir", str(node))[0] == 0
    monkeypatch.setenv("COLUMNS", "60")
    code, out, _ = run(capsys, "invites", "--state-dir", str(node))
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 60
    assert "\u2026" in out
    monkeypatch.delenv("COLUMNS")
    code, out, _ = run(capsys, "invites", "--state-dir", str(node))  # not a terminal: whole
    assert "a-rather-long-invite-name-for-a-laptop" in out
    assert fit_widths([10, 30, 5], [2, 4, 5], 30) == [10, 11, 5]


def test_shell_completion_is_on() -> None:
    done = meshd("--help")
    assert "--install-completion" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "meshd"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "_MESHD_COMPLETE": "complete_bash",
            "COMP_WORDS": "meshd inv",
            "COMP_CWORD": "1",
        },
    )
    assert set(done.stdout.split()) >= {"invite", "invites"}, done


# --- Ctrl-C: 130 ---------------------------------------------------------------------------


def interrupt(args: list[str], after: float) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "meshd", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    time.sleep(after)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture
def silent_bootstrap() -> Iterator[str]:
    """A TCP port that accepts connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        yield f"/ip4/127.0.0.1/tcp/{port}/p2p/12D3KooWEvG7dZid9ss8jDBfLsioZmTaty3FNbj7PSt27seHTFri"


def test_ctrl_c_during_join_exits_130_and_leaves_no_state_dir(
    node: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], silent_bootstrap: str
) -> None:
    code, token, _ = run(
        capsys, "invite", "--bootstrap", silent_bootstrap, "--state-dir", str(node)
    )
    assert code == 0
    joiner = tmp_path / "joiner"
    args = [
        "join",
        "--invite",
        token.strip(),
        "--name",
        "j",
        "--wg-backend",
        "none",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--state-dir",
        str(joiner),
    ]
    deadline = time.monotonic() + 30
    done = None
    for after in (4.0, 6.0, 8.0):  # once it is dialling (imports take a while on a busy machine)
        done = interrupt(args, after)
        if "contacting" in done.stderr or time.monotonic() > deadline:
            break
    assert done is not None
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines()[-1] == "meshd: interrupted"
    assert "Traceback" not in done.stderr
    assert "ExceptionGroup" not in done.stderr
    assert not joiner.exists()


def test_a_failed_join_leaves_an_existing_state_dir_as_it_was(
    node: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, token, _ = run(
        capsys,
        "invite",
        "--bootstrap",
        "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWEvG7dZid9ss8jDBfLsioZmTaty3FNbj7PSt27seHTFri",
        "--state-dir",
        str(node),
    )
    assert code == 0
    joiner = tmp_path / "joiner"
    joiner.mkdir(mode=0o700)
    (joiner / "notes").write_text("mine")
    done = meshd(
        "join", "--invite", token.strip(), "--name", "j", "--no-up", "--state-dir", str(joiner)
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("meshd: no bootstrap address is reachable")
    assert "Failed to open TCP stream" not in done.stderr  # no raw libp2p line
    assert sorted(p.name for p in joiner.iterdir()) == ["notes"]


def test_meshd_errors_carry_their_status() -> None:
    assert MeshdError("x").exit_status == 1
    assert {c.__name__: c.exit_status for c in (AlreadyRunning, NodeRevoked)} == {
        "AlreadyRunning": 4,
        "NodeRevoked": 10,
    }
