"""``meshd up`` on the quick path (meshd.cli.quick_up): the same DaemonConfig as typer's parse.

For a table of command lines, variables and config files, the quick path's configuration (and
log settings) equals the typer path's, compared as objects; the lines it must not take go to
typer; its option table says what the typer app declares; and a ``meshd up`` it takes runs
in one interpreter that imported neither typer, click nor pydantic.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from meshd.cli import logs, main
from meshd.cli.configfile import settling
from meshd.cli.configfile.keys import CONTEXT, keys
from meshd.cli.quick import recognise
from meshd.cli.quick_up import OPTIONS, file_keys
from meshd.daemon import reexec
from tests.cli.quick_support import left_to_typer
from tests.daemon.support import ROOT

KEY = "1:hmac-sha256:" + "ab" * 32


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MESHD_* variable of the caller's, no /etc/meshd/meshd.toml."""
    for name in list(os.environ):
        if name.startswith("MESHD"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(settling, "DEFAULT_PATH", tmp_path / "absent" / "meshd.toml")


def started(
    monkeypatch: pytest.MonkeyPatch, args: list[str], *, quick: bool
) -> list[tuple[Any, ...]]:
    """What ``meshd up ARGS`` would run the daemon with, one way: the log's settings and the
    DaemonConfig, caught where the daemon would start."""
    seen: list[tuple[Any, ...]] = []

    def configure(level: str, form: str, **options: Any) -> None:
        seen.append(("log", level, form, options))

    monkeypatch.setattr(logs, "configure", configure)
    monkeypatch.setattr(
        reexec, "run_daemon", lambda config, options=None: seen.append(("daemon", config))
    )
    main(["up", *args], quick=quick)
    return seen


def same_both_ways(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> Any:
    assert recognise(["up", *args]) is not None, args
    quick = started(monkeypatch, args, quick=True)
    full = started(monkeypatch, args, quick=False)
    assert quick == full
    assert [step[0] for step in quick] == ["log", "daemon"]
    return quick[1][1]


LINES: list[list[str]] = [
    [],
    ["--wg-backend", "none"],
    ["--listen", "/ip4/127.0.0.1/tcp/7100", "--listen=/ip6/::1/tcp/7101", "--wg-backend=none"],
    ["--listen-port=51000", "--degree", "9", "--degree=12", "--degree", "007"],
    ["--interface", "wg-x.1", "--endpoint", "192.0.2.1:51820", "--endpoint", "[2001:db8::1]:1"],
    ["--announce-interval", "60s", "--announce-ttl", "10m", "--announce-interval=90s"],
    ["--auto-renew", "--renew-window", "7d", "--renew-for=1d12h", "--auto-renew"],
    [
        "--babel-interface",
        "eth0",
        "--babel-interface=eth1",
        "--babel-hello-interval",
        "0.5",
        "--babel-originate",
        "10.1.0.0/24",
        "--babel-originate",
        "10.2.0.0/24 from 10.0.0.0/8",
        "--babel-key",
        KEY,
        "--babel-redistribute",
        "10.0.0.0/8 le 24 allow",
        "--babel-redistribute=0.0.0.0/0 deny",
    ],
    ["--babel-hello-interval", "655", "--babel-hello-interval=0.05"],
    ["--metrics", "127.0.0.1:9101", "--relay", "on", "--public-addr", "203.0.113.5:7100"],
    ["--relay=off", "--public-addr", "203.0.113.5", "--public-addr", "[2001:db8::5]:7200"],
    ["--log-level", "WARN", "--log-format=json", "--log-level=Debug"],
    ["--log-level", "critical", "--log-format", "JSON"],
    ["--state-dir", "/tmp/meshd-quick-up", "--state-dir=/tmp/meshd-quick-up-2"],
    ["--listen-port", "1", "--degree", "64", "--listen-port=65535"],
    ["--mtu", "1280", "--mtu=1412"],
]


@pytest.mark.parametrize("args", LINES)
def test_the_command_line_gives_the_same_config_both_ways(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    same_both_ways(monkeypatch, args)


def test_the_lines_mean_what_they_say(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not only equal: equal to what was asked (a parse that read nothing would be equal too).
    config = same_both_ways(monkeypatch, LINES[3])
    assert (config.listen_port, config.degree) == (51000, 7)
    config = same_both_ways(monkeypatch, LINES[2])
    assert config.listen == ("/ip4/127.0.0.1/tcp/7100", "/ip6/::1/tcp/7101")
    assert config.wg_backend == "none"
    config = same_both_ways(monkeypatch, LINES[6])
    assert (config.auto_renew, config.renew_window, config.renew_for) == (True, 7 * 86400, 129600)
    config = same_both_ways(monkeypatch, LINES[7])
    assert config.babel.interfaces == ("eth0", "eth1")
    assert len(config.babel.originate) == len(config.babel.redistribute) == 2
    assert config.babel.hello_interval == 0.5
    assert same_both_ways(monkeypatch, LINES[-1]).mtu == 1412


ENVIRONMENTS: list[tuple[dict[str, str], list[str]]] = [
    ({"MESHD_WG_BACKEND": "none", "MESHD_DEGREE": "7"}, []),
    ({"MESHD_WG_BACKEND": "none"}, ["--wg-backend", "kernel"]),  # the command line wins
    ({"MESHD_LISTEN": "/ip4/127.0.0.1/tcp/1  /ip4/127.0.0.2/tcp/2\t"}, []),
    ({"MESHD_LISTEN": "/ip4/127.0.0.1/tcp/1"}, ["--listen", "/ip4/127.0.0.3/tcp/3"]),
    ({"MESHD_AUTO_RENEW": "yes"}, []),
    ({"MESHD_AUTO_RENEW": " TRUE "}, []),
    ({"MESHD_AUTO_RENEW": "0"}, []),
    ({"MESHD_AUTO_RENEW": "off"}, ["--auto-renew"]),
    ({"MESHD_DEGREE": ""}, []),  # empty: unset
    ({"MESHD_STATE_DIR": "/tmp/meshd-env-state"}, []),
    (
        {"MESHD_BABEL_HELLO_INTERVAL": "1.5", "MESHD_BABEL_KEY": f"{KEY} 2:blake2s128:{'c' * 32}"},
        [],
    ),
    ({"MESHD_LOG": "DEBUG"}, []),  # the deprecated variable
    ({"MESHD_LOG": "DEBUG", "MESHD_LOG_LEVEL": "error"}, []),
    ({"MESHD_LOG_FORMAT": "json", "MESHD_METRICS": "[::1]:9101"}, ["--log-format", "text"]),
    ({"MESHD_RENEW_FOR": "2w", "MESHD_ANNOUNCE_TTL": "1d"}, []),
]


@pytest.mark.parametrize(("env", "args"), ENVIRONMENTS)
def test_the_environment_gives_the_same_config_both_ways(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: list[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = same_both_ways(monkeypatch, args)
    if "MESHD_DEGREE" in env:
        assert config.degree == int(env["MESHD_DEGREE"] or 6)
    if env.get("MESHD_AUTO_RENEW") == "yes":
        assert config.auto_renew


FILE = """\
state_dir = "/tmp/meshd-file-state"
wg_backend = "none"
listen = ["/ip4/127.0.0.1/tcp/7100", "/ip4/127.0.0.1/tcp/7101"]
announce_interval = 60
announce-ttl = "10m"
degree = 9
log_format = "json"
log_level = "warning"
babel_hello_interval = 2
babel_originate = "10.9.0.0/24"
auto_renew = true
metrics = "127.0.0.1:9102"
# join's keys are known too
invite = "@/etc/meshd/invite"
name = "n1"
bootstrap = ["/ip4/192.0.2.7/tcp/7100/p2p/12D3KooWHwyUKko53tSAuiTN9K8NFR6MqVxENqwQzGWbmQSsD9R6"]
no_up = true
"""

FILES: list[tuple[dict[str, str], list[str]]] = [
    ({}, ["--config", "FILE"]),
    ({}, ["--config=FILE", "--degree", "3", "--listen", "/ip4/127.0.0.9/tcp/9"]),
    ({"MESHD_CONFIG": "FILE"}, []),
    ({"MESHD_CONFIG_FILE": "FILE"}, []),  # click's own name for --config's variable
    ({"MESHD_CONFIG": "FILE", "MESHD_DEGREE": "4", "MESHD_LOG": "error"}, []),
    ({"MESHD_CONFIG": "FILE", "MESHD_LOG_LEVEL": "info", "MESHD_LOG": "error"}, []),
    ({"MESHD_CONFIG": "/nowhere.toml"}, ["--config", "FILE"]),
    ({"MESHD_AUTO_RENEW": "false"}, ["--config", "FILE"]),
    ({}, ["DEFAULT"]),  # the default path, where it exists
]


@pytest.mark.parametrize(("env", "args"), FILES)
def test_the_config_file_gives_the_same_config_both_ways(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], args: list[str]
) -> None:
    path = tmp_path / "meshd.toml"
    path.write_text(FILE)
    if args == ["DEFAULT"]:
        monkeypatch.setattr(settling, "DEFAULT_PATH", path)
        args = []
    for name, value in env.items():
        monkeypatch.setenv(name, value.replace("FILE", str(path)))
    args = [arg.replace("FILE", str(path)) for arg in args]
    quick = started(monkeypatch, args, quick=True)
    assert recognise(["up", *args]) is not None
    assert quick == started(monkeypatch, args, quick=False)
    (_, level, form, options), (_, config) = quick
    assert options == {"config_file": path}
    assert form == "json"
    assert config.wg_backend == "none"
    if "--degree" not in args and "MESHD_DEGREE" not in env:
        assert config.degree == 9
        assert config.announce_interval == 60
        assert config.listen == ("/ip4/127.0.0.1/tcp/7100", "/ip4/127.0.0.1/tcp/7101")
        assert config.metrics == "127.0.0.1:9102"
    if not env:
        assert level == "warning"
        assert config.auto_renew


# --- what the quick path leaves to typer ----------------------------------------------------


REFUSED: list[tuple[dict[str, str], list[str]]] = [
    ({}, ["--help"]),
    ({}, ["-h"]),
    ({}, ["--listen"]),
    ({}, ["--listen", ""]),
    ({}, ["--listen="]),
    ({}, ["--listen", "--wg-backend", "none"]),
    ({}, ["extra"]),
    ({}, ["--", "--degree", "3"]),
    ({}, ["--lis", "/ip4/127.0.0.1/tcp/1"]),
    ({}, ["--invite", "x"]),  # join's
    ({}, ["--degree", "0"]),
    ({}, ["--degree", "65"]),
    ({}, ["--degree", "x"]),
    ({}, ["--degree", "+6"]),  # typer takes it; the quick path does not read it
    ({}, ["--degree", "6.0"]),  # and this
    ({}, ["--listen-port", "70000"]),
    ({}, ["--mtu", "1000"]),  # under IPv6's 1280
    ({}, ["--babel-hello-interval", "1e3"]),
    ({}, ["--babel-hello-interval", "0.01"]),
    ({}, ["--babel-hello-interval", "nan"]),
    ({}, ["--auto-renew=yes"]),
    ({}, ["--wg-backend", "bogus"]),
    ({}, ["--interface", "a/b"]),
    ({}, ["--announce-interval", "1x"]),
    ({}, ["--announce-interval", "6h"]),  # not shorter than the TTL
    ({}, ["--log-level", "loud"]),
    ({}, ["--log-format", "xml"]),
    ({}, ["--listen", "10.231.0.2:7102"]),
    ({}, ["--babel-key", "1:md5:00"]),
    ({}, ["--metrics", "nowhere"]),
    ({}, ["--relay", "always"]),
    ({}, ["--config", "/nowhere.toml"]),
    ({"MESHD_DEGREE": "x"}, []),
    ({"MESHD_DEGREE": "0"}, []),
    ({"MESHD_AUTO_RENEW": "maybe"}, []),
    ({"MESHD_AUTO_RENEW": "t"}, []),  # typer takes it; the quick path does not read it
    ({"MESHD_LISTEN": "   "}, []),  # and this (the default)
    ({"MESHD_LOG_LEVEL": "loud"}, []),
    ({"MESHD_LOG": "loud"}, []),
    ({"MESHD_CONFIG": "/nowhere.toml"}, []),
    ({"MESHD_CONFIG": "BAD"}, []),
]


TAKEN: list[Any] = [
    ["--degree", "+6"],
    ["--degree", "6.0"],
    {"MESHD_AUTO_RENEW": "t"},
    {"MESHD_LISTEN": "   "},
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
    code, out, err, seen = left_to_typer("up", started, monkeypatch, capsys, tmp_path, env, args)
    if args and args[0] in ("--help", "-h") and code == 0:
        assert out.startswith("Usage: meshd up")
    elif args in TAKEN or env in TAKEN:
        assert code == 0  # typer's to read, and it reads it
        assert [step[0] for step in seen] == ["log", "daemon"]
    else:
        assert code != 0, err
        assert err.startswith("meshd: "), err
        assert not seen or seen[-1][0] != "daemon"


VALUES: dict[str, list[str]] = {
    "--listen": ["/ip4/127.0.0.1/tcp/1", "/ip6/::1/tcp/2", "10.0.0.1:7100"],
    "--wg-backend": ["none", "kernel", "bogus"],
    "--listen-port": ["1", "51820", "0", "+5", "65536", "x"],
    "--degree": ["3", "64", "65", "06", "6.0"],
    "--babel-hello-interval": ["0.05", "4", "2.5", "1e2", "0.01"],
    "--announce-interval": ["60s", "2h", "7h", "x"],
    "--announce-ttl": ["10m", "6h", "1d"],
    "--log-level": ["debug", "WARN", "loud"],
    "--log-format": ["json", "Text", "xml"],
    "--metrics": ["127.0.0.1:9101", "nowhere"],
    "--relay": ["on", "auto", "always"],
    "--public-addr": ["203.0.113.5", "0.0.0.0"],
    "--endpoint": ["192.0.2.1:51820", "nope"],
    "--interface": ["wg0", "a/b"],
    "--renew-window": ["7d", "0s"],
    "--state-dir": ["/tmp/meshd-q1", "/tmp/meshd-q2"],
    "--babel-originate": ["10.1.0.0/24", "10.1.0.1/24"],
}
_WORDS = st.one_of(
    st.sampled_from(sorted(VALUES)).flatmap(
        lambda flag: st.tuples(st.sampled_from(VALUES[flag]), st.booleans()).map(
            lambda pair: [f"{flag}={pair[0]}"] if pair[1] else [flag, pair[0]]
        )
    ),
    st.sampled_from([["--auto-renew"], ["--help"], ["--degre", "3"], ["extra"]]),
)
_ENV = st.dictionaries(
    st.sampled_from(["MESHD_DEGREE", "MESHD_LISTEN", "MESHD_AUTO_RENEW", "MESHD_LOG"]),
    st.sampled_from(["5", "x", "1", "no", "t", "/ip4/127.0.0.5/tcp/5", "DEBUG"]),
    max_size=2,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(_WORDS, max_size=6).map(lambda parts: [word for part in parts for word in part]), _ENV
)
def test_any_line_the_quick_path_takes_gives_the_same_config(
    words: list[str], env: dict[str, str]
) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        taken = recognise(["up", *words]) is not None
        event("taken by the quick path" if taken else "left to typer")
        if not taken:
            return
        quick = started(monkeypatch, words, quick=True)
        assert quick == started(monkeypatch, words, quick=False)
        assert [step[0] for step in quick] == ["log", "daemon"]


# --- the quick table says what the typer app says -------------------------------------------


def test_the_quick_table_says_what_the_typer_app_declares() -> None:
    """Flags, parameter names, types, repeatability, defaults, ranges, variables and the
    commands of each option: none may drift from the typer app's ``up`` and ``join``."""
    import typer.main

    from meshd.cli import daemon_cmds
    from meshd.cli.app import load_commands

    group = typer.main.get_command(load_commands())
    seen: dict[str, list[str]] = {}
    for command_name, function in (("up", daemon_cmds.up), ("join", daemon_cmds.join)):
        command = group.commands[command_name]  # type: ignore[attr-defined]
        assert command.context_settings == CONTEXT
        hints = typing.get_type_hints(function)
        defaults = inspect.signature(function).parameters
        for param in command.params:
            option = OPTIONS[param.name]
            seen.setdefault(param.name, []).append(command_name)
            assert param.param_type_name == "option", param.name
            assert param.opts == [option.flag], param.name
            assert not param.secondary_opts, param.name
            assert param.multiple == option.many, param.name
            assert param.nargs == 1, param.name
            assert param.is_flag == (option.kind is bool), param.name
            assert param.allow_from_autoenv, param.name
            assert param.envvar == option.envvar, param.name
            assert not param.required, param.name
            assert param.prompt is None, param.name
            assert param.callback is None, param.name
            assert (param.min, param.max) == (option.minimum, option.maximum), param.name
            assert defaults[param.name].default == option.default, param.name
            kinds = set(typing.get_args(hints[param.name])) - {type(None)} or {hints[param.name]}
            (kind,) = kinds
            if option.many:
                assert typing.get_origin(kind) is list, param.name
                assert typing.get_args(kind) == (option.kind,), param.name
            else:
                assert kind is option.kind, param.name
    assert {name: tuple(commands) for name, commands in seen.items()} == {
        name: option.commands for name, option in OPTIONS.items()
    }
    assert list(seen) == list(OPTIONS)


def test_the_quick_keys_are_the_config_files_keys() -> None:
    """The config file is checked with the same keys both ways (their help aside; a default
    that the help shows, such as --listen's, is not what the file's checks use)."""
    import dataclasses

    known = keys()
    typer_keys = {key.name: key for key in known}
    quick_keys = {key.name: key for key in file_keys()}
    assert list(quick_keys) == list(typer_keys)
    for name, key in typer_keys.items():
        quick = quick_keys[name]
        assert dataclasses.replace(quick, help=key.help, default=key.default) == key, name
        assert quick.default in ("", key.default), name
    for name in ("announce_interval", "announce_ttl"):  # the file's checks read these
        assert quick_keys[name].default == typer_keys[name].default


# --- one interpreter, without typer ----------------------------------------------------------

_PROBE = """
import sys
from meshd.daemon import reexec
def run_daemon(config, options=None):
    heavy = ("typer", "click", "pydantic", "pydantic_core", "rich")
    print(repr(config), file=sys.stderr)
    print("loaded:", ",".join(m for m in heavy if m in sys.modules), file=sys.stderr)
reexec.run_daemon = run_daemon
from meshd.cli import main
main(sys.argv[1:])
"""


def test_up_on_the_quick_path_imports_neither_typer_click_nor_pydantic(tmp_path: Path) -> None:
    config = tmp_path / "meshd.toml"
    config.write_text('degree = 5\nlog_format = "json"\n')
    args = ["up", "--wg-backend", "none", "--state-dir", str(tmp_path / "n0"),
            "--config", str(config), "--babel-key", KEY, "--metrics", "127.0.0.1:9101"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHD")}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
        env=env,
    )
    lines = done.stderr.splitlines()
    assert lines[-1] == "loaded: ", done.stderr
    assert "degree=5" in lines[-2]
    assert "metrics='127.0.0.1:9101'" in lines[-2]
