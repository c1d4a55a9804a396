"""The config file of up and join: its keys, its checks with line numbers, precedence.

The keys are read from the commands' signatures: these tests pin that every option of ``up``
and ``join`` is a key spelt as typer spells its flag, that docs/config.md holds the table
``meshd config keys --markdown`` prints, that each kind of mistake is reported on its line,
and (properties) that no content of a file gives anything but a config or line-numbered
problems.
"""

from __future__ import annotations

import json
import os
import re
import string
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
import typer.main
from hypothesis import given
from hypothesis import strategies as st

from meshd.cli import main
from meshd.cli.app import load_commands
from meshd.cli.configfile import settling
from meshd.cli.configfile.checking import MAX_PROBLEMS, MAX_SIZE, Checked, check_bytes, check_text
from meshd.cli.configfile.keys import COMMANDS, NOT_KEYS, keys
from meshd.cli.configfile.settling import settle

ROOT = Path(__file__).resolve().parents[2]
GOOD_LISTEN = "/ip4/127.0.0.1/tcp/7100"


def problems(text: str) -> list[tuple[int, str]]:
    return [(p.line, p.message) for p in check_text(text, keys()).problems]


def lines_of(text: str) -> int:
    return text.count("\n") + 1


# -- the keys ----------------------------------------------------------------------------------


def test_every_option_of_up_and_join_is_a_key_spelt_as_its_flag() -> None:
    group = typer.main.get_command(load_commands())
    by_name = {key.name: key for key in keys()}
    for command in COMMANDS:
        click_command = group.commands[command]  # type: ignore[attr-defined]
        options = [p for p in click_command.params if p.name not in NOT_KEYS]
        assert options, command
        for option in options:
            key = by_name[option.name]
            assert key.flag == option.opts[0], option.name
            assert command in key.commands
            assert key.many == bool(option.multiple), option.name


def test_the_docs_hold_the_generated_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, printed, _ = run(capsys, ["config", "keys", "--markdown"])
    assert code == 0
    docs = (ROOT / "docs" / "config.md").read_text()
    found = re.search(r"<!-- keys: begin[^\n]*-->\n(.*?)<!-- keys: end -->", docs, re.S)
    assert found, "docs/config.md lost its keys markers"
    assert found.group(1) == printed, (
        "docs/config.md's table is not what `meshd config keys --markdown` prints: "
        "run `.venv/bin/python scripts/config_keys.py`"
    )


# -- what a file may hold ----------------------------------------------------------------------


def test_a_good_file_gives_its_values_converted() -> None:
    checked = check_text(
        f'state_dir = "/srv/meshd"\nwg_backend = "none"\nlisten = ["{GOOD_LISTEN}"]\n'
        "listen_port = 51821\nannounce_interval = 45\nbabel_hello_interval = 2\n",
        keys(),
    )
    assert checked.problems == []
    assert checked.values == {
        "state_dir": Path("/srv/meshd"),
        "wg_backend": "none",
        "listen": [GOOD_LISTEN],
        "listen_port": 51821,
        "announce_interval": "45s",
        "babel_hello_interval": 2.0,
    }


def test_dashes_are_accepted_but_not_both_spellings() -> None:
    assert check_text('wg-backend = "none"\n', keys()).values == {"wg_backend": "none"}
    assert problems('wg_backend = "none"\nwg-backend = "none"\n') == [
        (2, "wg-backend and wg_backend are the same key; keep one")
    ]


def test_a_single_string_is_a_list_of_one() -> None:
    assert check_text(f'listen = "{GOOD_LISTEN}"\n', keys()).values == {"listen": [GOOD_LISTEN]}


def test_an_unknown_key_is_named_on_its_line_with_a_suggestion() -> None:
    assert problems('wg_backend = "none"\n\nwg_bakend = "none"\n') == [
        (3, "unknown key 'wg_bakend'; did you mean wg_backend?")
    ]
    assert problems("zzz = 1\n") == [(1, "unknown key 'zzz'; `meshd config keys` lists them")]


def test_a_wrong_type_is_named_on_its_line() -> None:
    assert problems('\nlisten_port = "51820"\n') == [
        (2, "listen_port must be an integer, not a string ('51820')")
    ]
    assert problems("degree = true\n") == [(1, "degree must be an integer, not a boolean")]
    assert problems("listen = [1]\n") == [
        (1, "listen must be a string or a list of them, not an integer (1)")
    ]
    assert problems("listen_port = 70000\n") == [
        (1, "listen_port 70000 is out of range (1 to 65535)")
    ]
    assert problems("mtu = 1000\n") == [(1, "mtu 1000 is out of range (1280 to 65535)")]


def test_a_bad_multiaddr_is_named_on_the_line_of_the_item() -> None:
    text = f'listen = [\n  "{GOOD_LISTEN}",\n  "10.231.0.2:7102",\n]\n'
    [(line, message)] = problems(text)
    assert line == 3
    assert message.startswith("listen '10.231.0.2:7102' is not a multiaddr")
    [(_, message)] = problems('listen = ["/ip4/10.0.0.1/udp/7100"]\n')
    assert "is not a TCP address" in message


def test_bad_values_are_named_with_what_to_write() -> None:
    cases = {
        'wg_backend = "wireguard"': "wg_backend 'wireguard' is not one of none, auto, kernel",
        'interface = "a very long interface name"': "interface 'a very long interface name' is not",
        'endpoint = ["nowhere"]': "endpoint: endpoint 'nowhere' has no port",
        'endpoint = ["mesh.example.org:51820"]': "endpoint 'mesh.example.org:51820': a host name",
        'announce_interval = "soon"': "announce_interval 'soon' is not a duration",
        'babel_originate = ["10.0.0.0/33"]': "babel_originate '10.0.0.0/33'",
        'babel_key = ["k1:md5:00"]': "babel_key",
        'babel_redistribute = ["10.0.0.0/8 maybe"]': "babel_redistribute '10.0.0.0/8 maybe'",
        'log_level = "loud"': "log_level 'loud' is not one of debug, info, warning, error",
        'log_format = "xml"': "log_format 'xml' is not one of text, json",
        'state_dir = ""': "state_dir '' is not an absolute path",
        'state_dir = "var/lib/meshd"': "state_dir 'var/lib/meshd' is not an absolute path",
    }
    for text, expected in cases.items():
        found = problems("# a comment\n" + text + "\n")
        assert len(found) == 1, (text, found)
        assert found[0][0] == 2, (text, found)
        assert found[0][1].startswith(expected), (text, found)


def test_the_announce_ttl_must_outlast_the_interval() -> None:
    assert problems('announce_ttl = "30m"\n') == [
        (
            1,
            "announce_ttl (1800 s) must be longer than announce_interval (7200 s): "
            "members would expire between two of their announcements",
        )
    ]
    assert problems('announce_interval = "5m"\nannounce_ttl = "20m"\n') == []


def test_a_toml_syntax_error_gives_its_line() -> None:
    assert problems('wg_backend = "none"\nlisten = [\n') == [(2, "TOML syntax: Invalid value")]
    assert problems('a = 1\nb = "x\nc = 2\n')[0][0] == 2
    assert problems("x = 1\nx = 2\n")[0][0] == 2
    assert problems("[babel]\nkey = 1\n") == [(1, "unknown key 'babel'; did you mean babel_key?")]
    [(line, message)] = problems("\n\nlisten = " + "[" * 5000 + "\n")
    assert (line, message) == (3, "values nested too deeply")


def test_bytes_that_are_not_utf8_are_named_on_their_line() -> None:
    checked = check_bytes(b'wg_backend = "none"\nname = "\xff"\n', keys())
    assert [(p.line, p.message) for p in checked.problems] == [
        (2, "not UTF-8 text (TOML files are UTF-8)")
    ]


def test_a_byte_order_mark_first_is_named_with_what_to_do() -> None:
    # What some editors write first: before, "TOML syntax: Invalid statement" on line 1.
    checked = check_bytes(b'\xef\xbb\xbfwg_backend = "none"\r\n', keys())
    assert [(p.line, p.message) for p in checked.problems] == [
        (1, "the file starts with a byte order mark; save it as UTF-8 without one")
    ]
    assert not check_bytes(b'wg_backend = "none"\r\n', keys()).problems  # CRLF is fine


# -- properties: any content gives a config or line-numbered problems ---------------------------


def assert_well_formed(checked: Checked, text_lines: int) -> None:
    for problem in checked.problems:
        assert 1 <= problem.line <= text_lines, problem
        assert problem.message
        assert "\n" not in problem.message
    if not checked.problems:
        names = {key.name for key in keys()}
        assert set(checked.values) <= names


@given(st.text())
def test_any_text_gives_a_config_or_numbered_problems(text: str) -> None:
    assert_well_formed(check_text(text, keys()), lines_of(text))


@given(st.binary(max_size=2000))
def test_any_bytes_give_a_config_or_numbered_problems(data: bytes) -> None:
    assert_well_formed(check_bytes(data, keys()), data.count(b"\n") + 1)


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(string.printable, max_size=30)
    | st.sampled_from(
        [GOOD_LISTEN, "none", "30s", "10.0.0.0/8 le 24 allow", "10.1.0.0/16", "1.2.3.4:5"]
    ),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=8,
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "{}"
    return repr(value)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([k.name for k in keys()] + [k.flag[2:] for k in keys()] + ["x"]),
            _VALUES,
        ),
        max_size=8,
    )
)
def test_any_keys_with_any_values_give_a_config_or_numbered_problems(
    pairs: list[tuple[str, Any]],
) -> None:
    text = "".join(f"{name} = {_toml_value(value)}\n" for name, value in pairs)
    checked = check_text(text, keys())
    assert_well_formed(checked, lines_of(text))
    if len({name.replace("-", "_") for name, _ in pairs}) == len(pairs):
        # No duplicate: a syntax error is impossible, so each problem names a key on its line.
        for problem in checked.problems:
            assert problem.key, problem


# -- precedence: flags > environment > file > defaults ------------------------------------------


class _Source:
    def __init__(self, name: str) -> None:
        self.name = name


def _ctx(sources: dict[str, str]) -> SimpleNamespace:
    return SimpleNamespace(get_parameter_source=lambda name: _Source(sources.get(name, "DEFAULT")))


def test_settle_takes_the_file_only_where_nothing_else_gave_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESHD_LOG", raising=False)
    path = tmp_path / "meshd.toml"
    path.write_text(
        'wg_backend = "none"\ninterface = "fromfile"\nlog_level = "debug"\ndegree = 9\n'
    )
    given = {
        "ctx": None,
        "config_file": path,
        "wg_backend": "kernel",  # on the command line
        "interface": "fromenv",  # in the environment
        "degree": 6,  # the default
        "log_level": "info",
        "log_format": "text",
    }
    sources = {
        "wg_backend": "COMMANDLINE",
        "interface": "ENVIRONMENT",
        "config_file": "COMMANDLINE",
    }
    out = settle("up", _ctx(sources), given)
    assert out["wg_backend"] == "kernel"
    assert out["interface"] == "fromenv"
    assert out["degree"] == 9
    assert out["log_level"] == "debug"
    monkeypatch.setenv("MESHD_LOG", "WARNING")  # the deprecated variable: above the file
    assert settle("up", _ctx(sources), given)["log_level"] == "warning"


def test_up_refuses_a_bad_file_in_one_line_before_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "meshd.toml"
    path.write_text('wg_backend = "none"\nlisten = ["10.231.0.2:7102"]\ndegre = 3\n')
    with pytest.raises(SystemExit) as exit_:
        main(["up", "--config", str(path), "--state-dir", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{path}:2: listen '10.231.0.2:7102' is not a multiaddr" in err
    assert "(and 1 more)" in err
    assert f"meshd config check {path}" in err
    assert exit_.value.code == settling.EXIT_STATUS
    assert not (tmp_path / "nothing").exists()


def test_a_missing_config_file_is_an_error_but_a_missing_default_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["up", "--config", str(tmp_path / "absent.toml")])
    assert exit_.value.code == settling.EXIT_STATUS
    assert "cannot read config file" in capsys.readouterr().err
    monkeypatch.setattr(settling, "DEFAULT_PATH", tmp_path / "absent.toml")
    monkeypatch.delenv(settling.CONFIG_ENV, raising=False)
    assert settling.chosen_path(None) is None
    monkeypatch.setenv(settling.CONFIG_ENV, str(tmp_path / "other.toml"))
    assert settling.chosen_path(None) == tmp_path / "other.toml"


def test_join_takes_its_invite_from_the_file_or_says_it_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(SystemExit) as exit_:
        main(["join", "--config", str(empty)])
    assert exit_.value.code == 2
    assert "missing; give --invite (or MESHD_INVITE, or invite in the config file)" in (
        capsys.readouterr().err
    )
    out = settle(
        "join",
        _ctx({}),
        {"ctx": None, "config_file": _write(tmp_path, 'invite = "@/tmp/token"\n'), "invite": ""},
    )
    assert out["invite"] == "@/tmp/token"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "f.toml"
    path.write_text(text)
    return path


# -- meshd config check ------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_config_check_prints_each_problem_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _write(tmp_path, f'wg_backend = "none"\nlisten = ["{GOOD_LISTEN}"]\n')
    assert run(capsys, ["config", "check", str(good)]) == (0, f"{good}: ok (2 keys set)\n", "")
    bad = tmp_path / "bad.toml"
    bad.write_text('wg_backend = "nonee"\ndegre = 3\n')
    code, out, err = run(capsys, ["config", "check", str(bad)])
    assert code == settling.EXIT_STATUS
    assert out.splitlines() == [
        f"{bad}:1: wg_backend 'nonee' is not one of none, auto, kernel, userspace",
        f"{bad}:2: unknown key 'degre'; did you mean degree?",
    ]
    assert err == f"meshd: 2 problems in {bad}\n"
    code, out, _ = run(capsys, ["config", "check", "--json", str(bad)])
    assert code == settling.EXIT_STATUS
    assert '"line": 2' in out


def test_config_check_takes_meshd_config_without_a_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, "listen = [\n")
    monkeypatch.setenv(settling.CONFIG_ENV, str(path))
    code, out, _ = run(capsys, ["config", "check"])
    assert (code, out) == (settling.EXIT_STATUS, f"{path}:1: TOML syntax: Invalid value\n")
    assert os.environ[settling.CONFIG_ENV] == str(path)


def test_typer_accepts_the_wrapped_commands() -> None:
    # The wrapper keeps the signature typer reads (ctx first, --config last).
    group = typer.main.get_command(load_commands())
    names = [p.name for p in group.commands["up"].params]  # type: ignore[attr-defined]
    assert "config_file" in names
    assert "log_format" in names


def test_config_show_says_where_each_value_comes_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("MESHD_"):
            monkeypatch.delenv(name)
    path = _write(tmp_path, f'wg_backend = "none"\ndegree = 3\nlisten = ["{GOOD_LISTEN}"]\n')
    monkeypatch.setenv("MESHD_DEGREE", "8")
    monkeypatch.setenv("MESHD_INVITE", "the-secret-token")
    code, out, _ = run(capsys, ["config", "show", str(path)])
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"# config file: {path}"
    assert f'wg_backend = "none"                       # {path}:1' in lines
    assert "degree = 8                                # env MESHD_DEGREE" in lines
    assert f'listen = ["{GOOD_LISTEN}"]' in out
    assert "# interface: meshd0 (default)" in lines
    assert "the-secret-token" not in out
    assert 'invite = "(secret)"' in out
    code, out, _ = run(capsys, ["config", "show", "--json", str(path)])
    shown = json.loads(out)["values"]
    assert shown["degree"] == {
        "value": 8,
        "default": "6",
        "source": "env MESHD_DEGREE",
        "commands": ["up", "join"],
    }
    assert shown["wg_backend"]["source"] == f"{path}:1"
    assert shown["interface"]["value"] is None
    bad = _write(tmp_path, "degre = 3\n")
    code, _, err = run(capsys, ["config", "show", str(bad)])
    assert code == settling.EXIT_STATUS
    assert f"{bad}:1: unknown key 'degre'" in err


def test_a_huge_file_is_refused_and_problems_stop_at_a_hundred() -> None:
    huge = check_bytes(b"# " + b"x" * MAX_SIZE + b"\n", keys())
    assert [(p.line, p.message) for p in huge.problems] == [
        (1, f"the file is too large ({MAX_SIZE + 3} bytes)")
    ]
    many = problems("".join(f"k{i} = {i}\n" for i in range(1000)))
    assert len(many) == MAX_PROBLEMS + 1
    assert many[-1] == (101, "more problems from here on; fix these first")
