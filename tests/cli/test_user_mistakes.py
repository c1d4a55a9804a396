"""A user's mistakes, each met with one line that says what to do and a documented exit
status: never a secret in that line, never "internal error", nothing of anyone else's taken
over, nothing half made left behind."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_failures import run


def the_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    assert lines[0].startswith("meshd: "), err
    return lines[0]


@pytest.fixture
def founder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    state = tmp_path / "a"
    code, _, err = run(
        capsys, "init", "--network", "barnet", "--name", "alpha", "--state-dir", str(state)
    )
    assert code == 0, err
    return state


@pytest.fixture
def token(founder: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = run(capsys, "invite", "--name", "bob", "--state-dir", str(founder))
    assert code == 0, err
    return out.strip()


# --- secrets --------------------------------------------------------------------------------


def _secret_part(token: str) -> str:
    return token[len("meshd1") :][20:80]


@pytest.mark.parametrize(
    "argv",
    [
        ["join", "{token}", "--no-up", "--wg-backend", "none"],  # --invite forgotten
        ["join", "--no-up", "{token}"],
        ["inspect", '"{token}"'],  # pasted with its quotes
        ["inspect", "x{token}"],
        ["inspect", "MESHD1{rest}"],
        ["inspect", "meshd2{rest}"],
        ["inspect", "{rest}"],
        ["peers", "{token}"],
    ],
)
def test_no_error_line_shows_an_invite_token(
    token: str, founder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    rest = token[len("meshd1") :]
    args = [a.format(token=token, rest=rest) for a in argv]
    if args[0] == "join":
        args += ["--state-dir", str(tmp_path / "j")]
    else:
        args += ["--state-dir", str(founder)]
    code, out, err = run(capsys, *args)
    assert code != 0
    line = the_line(err)
    assert _secret_part(token) not in err + out, line
    assert "not shown" in line or "is running" in line, line


def test_join_given_the_token_without_invite_says_how(
    token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "join", token, "--no-up", "--state-dir", str(tmp_path / "j"))
    assert code == 2
    assert "--invite" in the_line(err)
    assert not (tmp_path / "j").exists()


def test_redact_keeps_what_is_no_secret() -> None:
    from meshd.cli.failures import redact

    key = "tUPvC7qmojrVTgx9UuP33NQMGYjzOHzltSeyaZtt9jI="
    rid = "ab" * 32
    peer = "12D3KooWDpJ7As7BWAwRMfu1VU2WGqdpBQ6tGRmFg5NKxE8Vb9tQ"
    line = f"member {key} record {rid} at /ip4/1.2.3.4/tcp/7100/p2p/{peer} in /var/lib/meshd"
    assert redact(line) == line
    assert redact("x" * 99) == "x" * 99
    assert redact("a " + "B" * 120 + " z") == "a <120 characters, not shown> z"
    cut = "meshd1" + "AbCdEfGhIj" * 5  # a token cut short: still no part of it shown
    assert "AbCdEfGhIj" not in redact(f"bad token {cut}")
    path = "cannot open /srv/meshd1-production/meshd.db"  # a name like a prefix, no token
    assert redact(path) == path


# --- nothing of anyone else's taken over, nothing half made left --------------------------


def test_init_does_not_take_over_a_shared_directory_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`init --state-dir /tmp` (or `--state-dir ""` in a home directory) made the directory
    0700 and wrote keys into it: a directory shared with others, taken from them."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (shared / "someone-elses").write_text("x")
    code, _, err = run(capsys, "init", "--network", "n", "--state-dir", str(shared))
    assert code == 5
    assert "does not take over" in the_line(err)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert sorted(p.name for p in shared.iterdir()) == ["someone-elses"]
    out = tmp_path / "adm"
    out.mkdir()
    os.chmod(out, 0o755)
    (out / "notes").write_text("x")
    founder = tmp_path / "f"
    code, _, err = run(capsys, "init", "--network", "n", "--state-dir", str(founder))
    assert code == 0, err
    code, _, err = run(
        capsys, "admin", "create", "--name", "ops", "--out", str(out), "--state-dir", str(founder)
    )
    assert code == 5, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert sorted(p.name for p in out.iterdir()) == ["notes"]


def test_init_takes_an_empty_directory_made_for_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = tmp_path / "state"  # as systemd's StateDirectory= makes one: empty, 0755
    made.mkdir()
    os.chmod(made, 0o755)
    code, _, err = run(capsys, "init", "--network", "n", "--state-dir", str(made))
    assert code == 0, err
    assert stat.S_IMODE(made.stat().st_mode) == 0o700


@pytest.mark.parametrize("failure", ["disk-full", "interrupted"])
def test_an_init_that_fails_part_way_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:  # fmt: skip
    """A full disk (SQLite: "disk I/O error") or Ctrl-C part way through `init` left the keys
    and an empty store: a state dir that `init` and `join` both refused ("already holds")
    and every other command called "a store but no network"."""
    from meshd.errors import StoreNotWritable
    from meshd.node import statedir

    real = statedir.Store  # type: ignore[attr-defined]

    class Failing(real):  # type: ignore[misc,valid-type]
        def set_meta(self, key: str, value: bytes) -> None:
            if failure == "interrupted":
                raise KeyboardInterrupt
            raise StoreNotWritable("cannot write the store: disk I/O error", hint="free space")

    monkeypatch.setattr(statedir, "Store", Failing)
    state = tmp_path / "n"
    code, _, err = run(capsys, "init", "--network", "n", "--state-dir", str(state))
    assert code == (130 if failure == "interrupted" else 5)
    the_line(err)
    assert not state.exists()
    monkeypatch.setattr(statedir, "Store", real)
    code, _, err = run(capsys, "init", "--network", "n", "--state-dir", str(state))
    assert code == 0, err


# --- a user's input, never "internal error" -------------------------------------------------


def test_an_argument_that_is_not_utf8_is_a_command_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = os.fsdecode(b"caf\xe9")  # what Python makes of a Latin-1 argument
    code, _, err = run(capsys, "init", "--network", name, "--state-dir", str(tmp_path / "n"))
    assert code == 2
    assert "not UTF-8" in the_line(err)
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize("command", ["peers", "revoke"])
def test_a_member_name_that_is_not_utf8_is_a_command_line_error_daemon_or_not(
    founder: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """No daemon runs here: the name is wrong all the same (it said "the request is not
    JSON", exit 1)."""
    name = os.fsdecode(b"caf\xe9")
    code, _, err = run(capsys, command, name, "--state-dir", str(founder))
    assert code == 2
    assert "not UTF-8" in the_line(err)


def test_a_terminal_that_cannot_show_a_name_gets_it_escaped(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONIOENCODING="latin-1")
    done = subprocess.run(
        [sys.executable, "-m", "meshd", "init", "--network", "日本", "--name", "x",
         "--state-dir", str(tmp_path / "n")],
        capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b"internal error" not in done.stderr


def test_an_invite_whose_token_cannot_be_written_is_not_issued(
    founder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``meshd invite > /dev/full``: the token reached no one, and the invite was kept as
    issued and open all the same (and the line said only "No space left on device")."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "meshd", "invite", "--name", "lost",
             "--state-dir", str(founder)],
            stdout=full, stderr=subprocess.PIPE, timeout=60, check=False,
        )  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 1, err
    line = [x for x in err.splitlines() if x.startswith("meshd: ")]
    assert len(line) == 1, err
    assert "could not be written" in line[0]
    assert "no invite was issued" in line[0]
    assert "Traceback" not in err
    code, out, err = run(capsys, "invites", "--state-dir", str(founder))
    assert code == 0, err
    assert "lost" not in out


@pytest.mark.parametrize(
    ("variable", "value", "command"),
    [
        ("MESHD_DEGREE", "abc", "up"),
        ("MESHD_DEGREE", "0", "up"),
        ("MESHD_LISTEN_PORT", "port", "join"),
    ],
)
def test_a_bad_value_from_the_environment_names_its_variable(
    founder: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    command: str,
) -> None:
    """It blamed the option (``Invalid value for '--degree'``), which was not given."""
    monkeypatch.setenv(variable, value)
    argv = ["--state-dir", str(founder / command), "--wg-backend", "none"]
    if command == "join":
        argv += ["--invite", "meshd1x", "--no-up"]
    code, _, err = run(capsys, command, *argv)
    assert code == 2, err
    line = the_line(err)
    assert line.startswith(f"meshd: {variable}={value!r} in the environment: "), line
    assert line.endswith("; fix or unset it"), line
    assert "--" not in line


def test_an_integer_too_long_to_read_in_the_config_file_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "meshd.toml"
    config.write_text("degree = " + "9" * 5000 + "\n")
    code, _, err = run(capsys, "config", "check", str(config))
    assert code == 78, err
    assert "internal error" not in err


def test_an_invite_read_from_an_endless_file_stops_at_a_token_s_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "join", "--invite", "@/dev/zero", "--no-up", "--state-dir", str(tmp_path / "j")
    )
    assert code == 2
    assert "that is no token" in the_line(err)


@pytest.mark.parametrize("addr", ["notamultiaddr", "/ip4/1.2.3.4/tcp/1", "/ip4/0.0.0.0/tcp/7100"])
def test_an_invite_bootstrap_address_no_joiner_can_dial_is_refused(
    founder: Path, capsys: pytest.CaptureFixture[str], addr: str
) -> None:
    """`invite --bootstrap` took any text and made a token that `join` then refused ("not a
    dialable /p2p multiaddr"): the mistake showed at the joiner's, later and elsewhere."""
    code, out, err = run(capsys, "invite", "--bootstrap", addr, "--state-dir", str(founder))
    assert code == 2
    assert "--bootstrap" in the_line(err)
    assert out == ""


def test_config_show_shows_no_babel_key_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
    config = tmp_path / "meshd.toml"
    config.write_text(f'babel_key = ["k1:hmac-sha256:{secret}"]\n')
    for json_flag in ((), ("--json",)):
        code, out, err = run(capsys, "config", "show", str(config), *json_flag)
        assert code == 0, err
        assert secret not in out + err
        assert "k1:hmac-sha256" in out


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_config_check_refuses_a_number_that_is_no_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """`babel_hello_interval = nan` passed the check (nan compares false with any bound),
    then `up` refused it naming an option that was not on its command line."""
    config = tmp_path / "meshd.toml"
    config.write_text(f"babel_hello_interval = {value}\n")
    code, out, err = run(capsys, "config", "check", str(config))
    assert code == 78
    assert "finite" in out + err


# --- permissions: status 5, with what to do -----------------------------------------------


def test_a_socket_we_may_not_use_is_a_permission_error(
    founder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket as socket_module

    import meshd.control.client as client

    class Refused(socket_module.socket):
        def connect(self, address: object) -> None:
            raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(socket_module, "socket", Refused)
    assert client.socket is socket_module  # type: ignore[attr-defined]
    (founder / "meshd.sock").touch()
    code, _, err = run(capsys, "status", "--state-dir", str(founder))
    assert code == 5
    assert "no permission" in the_line(err)


def test_a_key_file_we_may_not_read_is_a_permission_error(
    founder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os as os_module

    import meshd.trust.keyfiles as keyfiles
    from meshd.errors import MeshdError

    real = os_module.open

    def refused(path: str, flags: int, mode: int = 0o777) -> int:
        if str(path).endswith("node.key"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, flags, mode)

    monkeypatch.setattr(os_module, "open", refused)
    with pytest.raises(MeshdError) as caught:
        keyfiles.read_secret(founder / "node.key")
    assert caught.value.exit_status == 5
    assert "chmod 600" in caught.value.one_line()


def test_an_admin_of_no_capability_is_refused(
    founder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "admin", "create", "--name", "ops", "--caps", "", "--out", str(tmp_path / "adm"),
        "--state-dir", str(founder),
    )  # fmt: skip
    assert code == 2
    assert "no capability" in the_line(err)
    assert not (tmp_path / "adm").exists()


def test_a_metrics_port_out_of_range_is_a_command_line_error() -> None:
    from meshd.errors import MeshdError
    from meshd.metrics.http import parse_address

    with pytest.raises(MeshdError) as caught:
        parse_address("127.0.0.1:99999")
    assert caught.value.exit_status == 2
