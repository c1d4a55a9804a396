"""``meshd join`` on the quick path (meshd.cli.quick_up): what it runs with, as typer's join.

For a table of command lines, variables and config files, what the quick path's ``join`` does
(the log's settings, the start-up checks, the invite as read (``-``, ``@FILE``), the name and
the DaemonConfig it joins with, the daemon or not for ``--no-up``) equals what typer's does,
compared as objects; the lines it must not take go to typer and get typer's answer; its
option table is typer's ``join``; and a ``meshd join`` it takes runs in one interpreter that
imported neither typer, click nor pydantic, with the same one line and exit status as typer's
for an invite that cannot be used.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from meshd.cli import logs, main
from meshd.cli.configfile import settling
from meshd.cli.quick import recognise
from meshd.cli.quick_up import FLAGS, OPTIONS
from meshd.daemon import join as joining
from meshd.daemon import launch, startup
from tests.cli.quick_support import left_to_typer
from tests.daemon.support import ROOT

PEER = "12D3KooWHwyUKko53tSAuiTN9K8NFR6MqVxENqwQzGWbmQSsD9R6"
BOOTSTRAP = f"/ip4/192.0.2.7/tcp/7100/p2p/{PEER}"
TOKEN = "meshd1-not-a-real-token"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MESHD_* variable of the caller's, no /etc/meshd/meshd.toml, stdin empty."""
    for name in list(os.environ):
        if name.startswith("MESHD"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(settling, "DEFAULT_PATH", tmp_path / "absent" / "meshd.toml")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))


class _Node:
    def __init__(self, seen: list[tuple[Any, ...]]) -> None:
        self.seen = seen

    def close(self) -> None:
        self.seen.append(("close",))


def started(
    monkeypatch: pytest.MonkeyPatch, args: list[str], *, quick: bool, stdin: str = ""
) -> list[tuple[Any, ...]]:
    """What ``meshd join ARGS`` would do, one way: the log's settings, the start-up checks,
    the join (invite, name, DaemonConfig) and the daemon, caught where each would happen."""
    seen: list[tuple[Any, ...]] = []

    def configure(level: str, form: str, **options: Any) -> None:
        seen.append(("log", level, form, options))

    async def preflight(config: Any) -> None:
        seen.append(("preflight", config))

    async def join(token: str, *, name: str, config: Any, progress: Any) -> _Node:
        seen.append(("join", token, name, config))
        return _Node(seen)

    async def run_until_signalled(config: Any, node: Any) -> None:
        seen.append(("daemon", config))

    monkeypatch.setattr(logs, "configure", configure)
    monkeypatch.setattr(startup, "preflight", preflight)
    monkeypatch.setattr(joining, "join", join)
    monkeypatch.setattr(launch, "run_until_signalled", run_until_signalled)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    main(["join", *args], quick=quick)
    return seen


UP_STEPS = ["log", "preflight", "join", "log", "daemon", "close"]
NO_UP_STEPS = ["log", "join", "close"]


def same_both_ways(
    monkeypatch: pytest.MonkeyPatch, args: list[str], stdin: str = ""
) -> list[tuple[Any, ...]]:
    assert recognise(["join", *args]) is not None, args
    quick = started(monkeypatch, args, quick=True, stdin=stdin)
    full = started(monkeypatch, args, quick=False, stdin=stdin)
    assert quick == full
    return quick


def joined(seen: list[tuple[Any, ...]]) -> tuple[str, str, Any]:
    (step,) = [s for s in seen if s[0] == "join"]
    return step[1], step[2], step[3]


LINES: list[list[str]] = [
    ["--invite", TOKEN],
    ["--invite", f"  {TOKEN}\n"],  # stripped
    ["--invite=" + TOKEN, "--name", "n1", "--wg-backend", "none"],
    ["--invite", TOKEN, "--no-up", "--state-dir", "/tmp/meshd-quick-join"],
    ["--no-up", "--invite", "x", "--invite", TOKEN, "--no-up", "--name=n2", "--name", "n3"],
    ["--invite", TOKEN, "--listen", "/ip4/127.0.0.1/tcp/7100", "--listen=/ip6/::1/tcp/7101"],
    ["--invite", TOKEN, "--listen-port=51000", "--degree", "9", "--degree=012"],
    ["--invite", TOKEN, "--interface", "wg-j.1", "--endpoint", "192.0.2.1:51820"],
    ["--invite", TOKEN, "--announce-interval", "60s", "--announce-ttl=10m"],
    ["--invite", TOKEN, "--babel-hello-interval", "0.5"],
    ["--invite", TOKEN, "--metrics", "127.0.0.1:9101", "--relay", "off"],
    ["--invite", TOKEN, "--public-addr", "203.0.113.5", "--public-addr=[2001:db8::5]:7200"],
    ["--invite", TOKEN, "--bootstrap", BOOTSTRAP, f"--bootstrap=/ip4/192.0.2.8/tcp/1/p2p/{PEER}"],
    ["--invite", TOKEN, "--log-level", "WARN", "--log-format=JSON"],
]


@pytest.mark.parametrize("args", LINES)
def test_the_command_line_gives_the_same_join_both_ways(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    seen = same_both_ways(monkeypatch, args)
    assert [step[0] for step in seen] == (NO_UP_STEPS if "--no-up" in args else UP_STEPS)


def test_the_lines_mean_what_they_say(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not only equal: equal to what was asked (a parse that read nothing would be equal too).
    token, name, config = joined(same_both_ways(monkeypatch, LINES[1]))
    assert (token, name) == (TOKEN, "")
    token, name, config = joined(same_both_ways(monkeypatch, LINES[4]))
    assert (token, name) == (TOKEN, "n3")
    token, name, config = joined(same_both_ways(monkeypatch, LINES[6]))
    assert (config.listen_port, config.degree) == (51000, 12)
    _, _, config = joined(same_both_ways(monkeypatch, LINES[10]))
    assert (config.metrics, config.relay) == ("127.0.0.1:9101", "off")
    _, _, config = joined(same_both_ways(monkeypatch, LINES[12]))
    assert config.bootstrap == (BOOTSTRAP, f"/ip4/192.0.2.8/tcp/1/p2p/{PEER}")
    seen = same_both_ways(monkeypatch, LINES[13])
    assert seen[0] == ("log", "warning", "json", {"quiet": True})
    assert seen[3] == ("log", "warning", "json", {"config_file": None})


def test_the_invite_is_read_from_stdin_or_a_file_the_same_both_ways(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = same_both_ways(monkeypatch, ["--invite", "-", "--no-up"], stdin=f"{TOKEN}\nmore\n")
    assert joined(seen)[0] == TOKEN
    seen = same_both_ways(monkeypatch, ["--invite=-"], stdin=f"  {TOKEN}  \n")
    assert joined(seen)[0] == TOKEN
    secret = tmp_path / "invite"
    secret.write_text(f"\n{TOKEN}\n")
    seen = same_both_ways(monkeypatch, ["--invite", f"@{secret}", "--name", "f"])
    assert joined(seen)[:2] == (TOKEN, "f")
    monkeypatch.setenv("MESHD_INVITE", f"@{secret}")
    seen = same_both_ways(monkeypatch, ["--no-up"])
    assert joined(seen)[0] == TOKEN
    monkeypatch.setenv("MESHD_INVITE", "-")
    seen = same_both_ways(monkeypatch, [], stdin=TOKEN)
    assert joined(seen)[0] == TOKEN


def test_recognising_a_join_reads_no_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    # A line left to typer must find stdin as it was; the quick path reads it only to run.
    stdin = io.StringIO(TOKEN)
    monkeypatch.setattr(sys, "stdin", stdin)
    assert recognise(["join", "--invite", "-", "--degree", "0"]) is None
    assert recognise(["join", "--invite", "-"]) is not None
    assert stdin.tell() == 0


ENVIRONMENTS: list[tuple[dict[str, str], list[str]]] = [
    ({"MESHD_INVITE": TOKEN}, []),
    ({"MESHD_INVITE": "other"}, ["--invite", TOKEN]),  # the command line wins
    ({"MESHD_INVITE": TOKEN, "MESHD_NAME": "e1", "MESHD_NO_UP": "yes"}, []),
    ({"MESHD_INVITE": TOKEN, "MESHD_NO_UP": "0"}, []),
    ({"MESHD_INVITE": TOKEN, "MESHD_NO_UP": "off"}, ["--no-up"]),
    ({"MESHD_INVITE": TOKEN, "MESHD_NAME": ""}, []),  # empty: unset
    ({"MESHD_INVITE": TOKEN, "MESHD_BOOTSTRAP": f"{BOOTSTRAP}  {BOOTSTRAP}\t"}, []),
    ({"MESHD_INVITE": TOKEN, "MESHD_WG_BACKEND": "none", "MESHD_DEGREE": "7"}, []),
    ({"MESHD_INVITE": TOKEN, "MESHD_STATE_DIR": "/tmp/meshd-env-join"}, []),
    ({"MESHD_INVITE": TOKEN, "MESHD_LOG": "DEBUG"}, []),  # the deprecated variable
    ({"MESHD_INVITE": TOKEN, "MESHD_LOG_FORMAT": "json", "MESHD_METRICS": "[::1]:9101"}, []),
]


@pytest.mark.parametrize(("env", "args"), ENVIRONMENTS)
def test_the_environment_gives_the_same_join_both_ways(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: list[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    seen = same_both_ways(monkeypatch, args)
    token, name, config = joined(seen)
    assert token == TOKEN
    assert name == env.get("MESHD_NAME", "")
    no_up = env.get("MESHD_NO_UP") == "yes" or "--no-up" in args
    assert [step[0] for step in seen] == (NO_UP_STEPS if no_up else UP_STEPS)
    if "MESHD_BOOTSTRAP" in env:
        assert config.bootstrap == (BOOTSTRAP, BOOTSTRAP)


FILE = """\
state_dir = "/tmp/meshd-file-join"
wg_backend = "none"
listen = ["/ip4/127.0.0.1/tcp/7100"]
announce_interval = 60
degree = 9
log_format = "json"
log_level = "warning"
babel_hello_interval = 2
metrics = "127.0.0.1:9102"
invite = "@INVITE"
name = "from-file"
bootstrap = ["/ip4/192.0.2.7/tcp/7100/p2p/12D3KooWHwyUKko53tSAuiTN9K8NFR6MqVxENqwQzGWbmQSsD9R6"]
no_up = true
# up's keys are known too, and join leaves them
auto_renew = true
babel_interface = ["eth0"]
"""

FILES: list[tuple[dict[str, str], list[str]]] = [
    ({}, ["--config", "FILE"]),
    ({}, ["--config=FILE", "--name", "n9", "--invite", "-"]),
    ({"MESHD_CONFIG": "FILE"}, []),
    ({"MESHD_CONFIG": "FILE", "MESHD_NO_UP": "false", "MESHD_LOG": "error"}, []),
    ({"MESHD_CONFIG": "/nowhere.toml"}, ["--config", "FILE"]),
    ({}, ["DEFAULT"]),  # the default path, where it exists
]


@pytest.mark.parametrize(("env", "args"), FILES)
def test_the_config_file_gives_the_same_join_both_ways(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], args: list[str]
) -> None:
    secret = tmp_path / "invite"
    secret.write_text(TOKEN + "\n")
    path = tmp_path / "meshd.toml"
    path.write_text(FILE.replace("INVITE", str(secret)))
    if args == ["DEFAULT"]:
        monkeypatch.setattr(settling, "DEFAULT_PATH", path)
        args = []
    for name, value in env.items():
        monkeypatch.setenv(name, value.replace("FILE", str(path)))
    args = [arg.replace("FILE", str(path)) for arg in args]
    seen = same_both_ways(monkeypatch, args, stdin="from-stdin\n")
    token, name, config = joined(seen)
    assert token == ("from-stdin" if "-" in args else TOKEN)
    assert name == ("n9" if "n9" in args else "from-file")
    assert (config.wg_backend, config.degree, config.announce_interval) == ("none", 9, 60)
    assert config.bootstrap == (BOOTSTRAP,)
    assert config.metrics == "127.0.0.1:9102"
    assert not config.auto_renew  # up's key, not join's
    assert not config.babel.interfaces
    assert config.babel.hello_interval == 2.0
    if env.get("MESHD_NO_UP") == "false":
        assert [step[0] for step in seen] == UP_STEPS
        assert seen[-3] == ("log", "error", "json", {"config_file": path})
    else:
        assert [step[0] for step in seen] == NO_UP_STEPS
        assert seen[0] == ("log", "warning", "json", {"quiet": True})


# --- what the quick path leaves to typer ----------------------------------------------------


REFUSED: list[tuple[dict[str, str], list[str]]] = [
    ({}, ["--help"]),
    ({}, []),  # no invite: typer says it is missing
    ({}, ["--invite", ""]),
    ({}, ["--invite="]),
    ({}, ["--invite"]),
    ({}, ["--invite", "--name", "x"]),  # typer takes '--name' as the token
    ({}, ["--invite", "-x"]),
    ({}, ["--invite", TOKEN, "--name", "-x"]),
    ({}, ["--invite", TOKEN, "extra"]),
    ({}, ["--invite", TOKEN, "--no-up=yes"]),
    ({}, ["--invite", TOKEN, "--auto-renew"]),  # up's
    ({}, ["--invite", TOKEN, "--babel-key", "1:hmac-sha256:" + "ab" * 32]),  # up's
    ({}, ["--invite", TOKEN, "--bootstrap", "/ip4/1.2.3.4/tcp/7100"]),
    ({}, ["--invite", TOKEN, "--bootstrap", "1.2.3.4:7100"]),
    ({}, ["--invite", TOKEN, "--degree", "0"]),
    ({}, ["--invite", TOKEN, "--degree", "+6"]),  # typer takes it; the quick path does not
    ({}, ["--invite", TOKEN, "--wg-backend", "bogus"]),
    ({}, ["--invite", TOKEN, "--metrics", "nowhere"]),
    ({}, ["--invite", TOKEN, "--config", "/nowhere.toml"]),
    ({"MESHD_INVITE": TOKEN, "MESHD_NO_UP": "maybe"}, []),
    ({"MESHD_INVITE": TOKEN, "MESHD_NO_UP": "t"}, []),  # typer takes it; the quick path not
    ({"MESHD_INVITE": TOKEN, "MESHD_CONFIG": "BAD"}, []),
]

TAKEN: list[Any] = [
    ["--invite", "-x"],
    ["--invite", TOKEN, "--name", "-x"],
    ["--invite", TOKEN, "--degree", "+6"],
    {"MESHD_INVITE": TOKEN, "MESHD_NO_UP": "t"},
]  # lines typer reads although the quick path does not


@pytest.mark.parametrize(("env", "args"), REFUSED)
def test_lines_left_to_typer(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    env: dict[str, str],
    args: list[str],
) -> None:
    # typer says what it says, the same through main's quick way (which passes it on).
    code, out, err, seen = left_to_typer("join", started, monkeypatch, capsys, tmp_path, env, args)
    if args[:1] == ["--help"]:
        assert code == 0
        assert out.startswith("Usage: meshd join")
    elif args in TAKEN or env in TAKEN:
        assert code == 0  # typer's to read, and it reads it
        steps = NO_UP_STEPS if "MESHD_NO_UP" in env else UP_STEPS
        assert [step[0] for step in seen] == steps
    else:
        assert code != 0, err
        assert err.startswith("meshd: "), err
        assert len(err.splitlines()) == 1, err
        assert not any(step[0] == "join" for step in seen)


VALUES: dict[str, list[str]] = {
    "--invite": [TOKEN, "-", "", "-x"],
    "--name": ["n1", "-n"],
    "--bootstrap": [BOOTSTRAP, "1.2.3.4:7100"],
    "--listen": ["/ip4/127.0.0.1/tcp/1", "10.0.0.1:7100"],
    "--wg-backend": ["none", "bogus"],
    "--degree": ["3", "65", "6.0"],
    "--babel-hello-interval": ["0.05", "1e2"],
    "--log-level": ["debug", "WARN", "loud"],
    "--relay": ["on", "always"],
    "--metrics": ["127.0.0.1:9101", "nowhere"],
    "--state-dir": ["/tmp/meshd-qj1"],
}
_WORDS = st.one_of(
    st.sampled_from(sorted(VALUES)).flatmap(
        lambda flag: st.tuples(st.sampled_from(VALUES[flag]), st.booleans()).map(
            lambda pair: [f"{flag}={pair[0]}"] if pair[1] else [flag, pair[0]]
        )
    ),
    st.sampled_from([["--no-up"], ["--auto-renew"], ["--help"], ["--nam", "x"], ["extra"]]),
)
_ENV = st.dictionaries(
    st.sampled_from(["MESHD_INVITE", "MESHD_NO_UP", "MESHD_NAME", "MESHD_DEGREE"]),
    st.sampled_from([TOKEN, "5", "x", "1", "no", "t", "-"]),
    max_size=2,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.tuples(
        st.sampled_from([[], ["--invite", TOKEN], ["--invite=-"], ["--invite", "-"]]),
        st.lists(_WORDS, max_size=5),
    ).map(lambda pair: [*pair[0], *(word for part in pair[1] for word in part)]),
    _ENV,
)
def test_any_join_line_the_quick_path_takes_joins_the_same(
    words: list[str], env: dict[str, str]
) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        taken = recognise(["join", *words]) is not None
        event("taken by the quick path" if taken else "left to typer")
        if not taken:
            return
        outcomes = []
        for quick in (True, False):
            try:
                outcomes.append(started(monkeypatch, words, quick=quick, stdin=f"{TOKEN}\n"))
            except SystemExit as exc:  # an invite read as nothing: the same line both ways
                outcomes.append([("exit", exc.code)])
        assert outcomes[0] == outcomes[1]


def test_the_quick_flags_of_join_are_typer_joins() -> None:
    """The flags the quick path reads for ``join`` are exactly those of typer's ``join``
    (each option's type, default, range and variable: tests/cli/test_cli_quick_up.py)."""
    import typer.main

    from meshd.cli.app import load_commands

    group = typer.main.get_command(load_commands())
    command = group.commands["join"]  # type: ignore[attr-defined]
    assert {param.opts[0]: param.name for param in command.params} == FLAGS["join"]
    assert {"--invite", "--name", "--no-up", "--bootstrap"} <= set(FLAGS["join"])
    assert all("join" in OPTIONS[name].commands for name in FLAGS["join"].values())


# --- one interpreter, without typer ----------------------------------------------------------

_PROBE = """
import sys
from meshd.daemon import join, launch
heavy = ("typer", "click", "pydantic", "pydantic_core", "rich")
joining = join.join
async def join_probe(*args, **kwargs):
    print("loaded:", ",".join(m for m in heavy if m in sys.modules), file=sys.stderr)
    return await joining(*args, **kwargs)
join.join = join_probe
from meshd.cli import main
main(sys.argv[2:], quick=sys.argv[1] == "quick")
"""


@pytest.mark.parametrize(
    "invite",
    [f"@{TOKEN}", "bogus", "-"],
)
def test_join_on_the_quick_path_imports_neither_typer_click_nor_pydantic(
    tmp_path: Path, invite: str
) -> None:
    """A join with an invite that cannot be used (no such file, not a token, nothing on
    stdin) ends with the same one line and exit status either way; the quick one reached the
    join without typer, click or pydantic."""
    args = ["join", "--invite", invite, "--wg-backend", "none", "--no-up",
            "--listen", "/ip4/127.0.0.1/tcp/0", "--state-dir", str(tmp_path / "j")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHD")}
    answers = []
    for way in ("quick", "typer"):
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, way, *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
            input="",
        )
        lines = done.stderr.splitlines()
        loaded = [line for line in lines if line.startswith("loaded:")]
        said = [line for line in lines if not line.startswith("loaded:")]
        answers.append((done.returncode, said, loaded))
    (quick_code, quick_said, quick_loaded), (typer_code, typer_said, typer_loaded) = answers
    assert (quick_code, quick_said) == (typer_code, typer_said)
    assert len(quick_said) == 1, quick_said
    assert quick_said[0].startswith("meshd: "), quick_said
    assert quick_code in (1, 2), quick_said
    if invite == "bogus":  # the join itself refused it
        assert "the invite token is unusable" in quick_said[0]
        assert quick_loaded == ["loaded: "]
        assert "pydantic" in typer_loaded[0]
    else:  # refused while it was read, before the join
        assert "--invite" in quick_said[0]
        assert quick_loaded == typer_loaded == []
    assert not (tmp_path / "j").exists()


_DAEMON_PROBE = """
import sys
from meshd.daemon import launch
heavy = ("typer", "click", "pydantic", "pydantic_core", "rich")
async def run_until_signalled(config, node):
    print("joined:", config.state_dir, file=sys.stderr)
    print("loaded:", ",".join(m for m in heavy if m in sys.modules), file=sys.stderr)
launch.run_until_signalled = run_until_signalled
from meshd.cli import main
main(sys.argv[2:], quick=sys.argv[1] == "quick")
"""


def test_a_real_join_reaches_its_daemon_without_typer_click_or_pydantic(tmp_path: Path) -> None:
    """Admitted by a running founder, the quick ``meshd join`` reaches the daemon's start
    with none of typer, click or pydantic imported; typer's way had them all."""
    from tests.daemon.support import FAST, daemons, free_port

    with daemons(tmp_path, "a") as (founder,):
        founder.init("quickjoin")
        founder.up()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHD")}
        env["MESHD_CONFIG"] = "/dev/null"
        loaded = {}
        for way in ("quick", "typer"):
            state = tmp_path / f"j-{way}"
            listen = f"/ip4/127.0.0.1/tcp/{free_port()}"
            args = ["join", "--invite", "-", "--name", f"j-{way}", *FAST,
                    "--listen", listen, "--state-dir", str(state)]  # fmt: skip
            done = subprocess.run(
                [sys.executable, "-c", _DAEMON_PROBE, way, *args],
                capture_output=True,
                text=True,
                timeout=90,
                cwd=ROOT,
                env=env,
                input=founder.invite() + "\n",
            )
            assert done.returncode == 0, done.stderr
            lines = done.stderr.splitlines()
            assert f"joined: {state}" in lines, done.stderr
            loaded[way] = lines[-1]
    assert loaded["quick"] == "loaded: "
    assert loaded["typer"].startswith("loaded: typer,")  # (its click is typer's own)
    assert "pydantic_core" in loaded["typer"]
