"""The quick path of the command line: same answers as the typer app, without importing it.

meshd.cli.quick runs the commands that only ask the daemon without typer; anything it does not
fully understand goes to the typer app. These tests pin that the two ways give the same
output and exit status, that the quick table says what the typer app says, and that the
quick path imports neither typer nor libp2p nor trio, nor the store, the crypto or the cores.
"""

from __future__ import annotations

import difflib
import inspect
import json
import re
import subprocess
import sys
import typing
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from meshd.cli import main
from meshd.cli.quick import COMMANDS, recognise
from meshd.node.layout import STATE_DIR_ENV
from tests.daemon.support import ROOT, Daemon

MEMBERS = ("carol", "dave", "erin", "frank")


def run(
    capsys: pytest.CaptureFixture[str], args: list[str], *, quick: bool
) -> tuple[int, str, str]:
    """Run meshd in-process one way or the other; return (exit status, stdout, stderr)."""
    try:
        main(args, quick=quick)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def steady(answer: tuple[int, str, str]) -> tuple[int, str, str]:
    """An answer with the daemon's uptime, its task count, the seen column's ages and how
    long it has been isolated blanked: they move between two calls (the typer way imports
    for up to a second on a loaded machine; the last call's connection may still be
    closing)."""
    code, out, err = answer
    out = re.sub(r'"(uptime|tasks)": [0-9.]+', r'"\1": _', out)
    out = re.sub(r"\bconnected for [^(]+\(", "connected for _ (", out)
    return code, re.sub(r"\b[0-9]+[smhd] ago\b", "_ ago", out), err


def both_ways(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    return run(capsys, args, quick=True), run(capsys, args, quick=False)


def _admit(node: Daemon, name: str) -> None:
    """Put a member straight into the stopped node's store, as if it had joined."""
    from meshd.node.statedir import NodeDir, now
    from meshd.trust.invites import decode_token_untrusted, enroll
    from meshd.trust.keys import SigningKey, WireGuardKey

    invite = decode_token_untrusted(node.invite())
    key, wg = SigningKey.generate(), WireGuardKey.generate()
    enrollment = enroll(invite, node_key=key.public, wg_key=wg.public, name=name, now=now())
    local = NodeDir.open(node.state_dir)
    try:
        state = local.membership()
        admission = state.sponsor(local.node_key, enrollment, now())
        local.store.apply([state.ingest(admission, now())])
    finally:
        local.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One running daemon (no WireGuard) that knows a few members, stopped by PID at the end."""
    node = Daemon("quickfounder", tmp_path_factory.mktemp("quick") / "founder")
    node.init("quicknet")
    for name in MEMBERS:
        _admit(node, name)
    node.up()
    try:
        _settled(node)
        yield node
    finally:
        node.stop()


def _settled(node: Daemon, timeout: float = 20.0) -> None:
    """Wait until two ``status`` answers 0.3 s apart read the same but for the uptime: just
    after its start a daemon still settles (its relaying, its first announcement), and on a
    loaded machine the typer way's call comes up to a second after the quick one's, so a
    field that changed between them failed a comparison (1 run of many under load)."""
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        answer = node.ask("status")
        answer.pop("uptime", None)
        if answer == last:
            return
        last = answer
        time.sleep(0.3)
    raise AssertionError(f"the daemon's status did not settle within {timeout:g} s")


# --- what the quick path takes on ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["peers"], {}),
        (["peers", "--json", "--json"], {"json": True}),
        (["status", "--state-dir=/x"], {"state_dir": Path("/x")}),
        (["routes", "--state-dir", "/a", "--state-dir", "/b"], {"state_dir": Path("/b")}),
        (
            ["revoke", "--reason", "left", "carol", "--json"],
            {"reason": "left", "node_ref": "carol", "json": True},
        ),
        (
            ["revoke", "--invite", "ab12", "--root-key", "r.key"],
            {"invite_id": "ab12", "root_key": Path("r.key")},
        ),
    ],
)
def test_lines_the_quick_path_takes(args: list[str], expected: dict[str, Any]) -> None:
    command = recognise(args)
    assert isinstance(command, partial)
    assert command.func is COMMANDS[args[0]].action
    assert command.keywords == expected


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        ["--version"],
        ["peers", "--help"],
        ["peers", "-h"],
        ["peer"],
        ["PEERS"],
        ["up", "--help"],
        ["peers", "--jso"],
        ["peers", "one", "two"],
        ["peers", "--state-dir"],
        ["peers", "--state-dir", ""],
        ["peers", "--state-dir", "--json"],
        ["peers", "--json=yes"],
        ["peers", "--", "--json"],
        ["revoke", "a", "b"],
        ["revoke", "-"],
        ["revoke", "--reason", "-x", "a"],
    ],
)
def test_lines_left_to_typer(args: list[str]) -> None:
    assert recognise(args) is None


def test_the_quick_table_says_what_the_typer_app_says() -> None:
    """Option names, flags, positionals, types, defaults and env vars: none may drift."""
    import typer.main

    from meshd.cli.app import load_commands

    app = load_commands()
    group = typer.main.get_command(app)
    functions = {
        info.callback.__name__: info.callback
        for info in app.registered_commands
        if info.callback is not None
    }
    for name, quick in COMMANDS.items():
        command = group.commands[name]  # type: ignore[attr-defined]
        options = {
            opt: p for p in command.params if p.param_type_name == "option" for opt in p.opts
        }
        arguments = tuple(p.name for p in command.params if p.param_type_name == "argument")
        assert set(options) == set(quick.flags) | set(quick.options), name
        assert arguments == quick.arguments, name
        for param in command.params:
            assert not param.multiple, param.name
            assert param.nargs == 1, param.name
            assert not param.required, param.name
            assert not param.secondary_opts, param.name
            assert param.envvar in (None, STATE_DIR_ENV), param.name
            assert (param.envvar is not None) == (param.name == "state_dir"), param.name
        for opt, parameter in quick.flags.items():
            assert options[opt].is_flag, opt
            assert options[opt].name == parameter, opt
        function = functions[name]
        hints = typing.get_type_hints(function)
        for opt, (parameter, convert) in quick.options.items():
            assert not options[opt].is_flag, opt
            assert options[opt].name == parameter, opt
            expected = {Path | None: "_path", float: "_seconds"}.get(hints[parameter], "_text")
            assert convert.__name__ == expected, opt
        # The function both ways run takes the same parameters with the same defaults.
        typer_side = inspect.signature(function).parameters
        action_side = inspect.signature(quick.action).parameters
        assert list(typer_side) == list(action_side), name
        for parameter, spec in typer_side.items():
            assert spec.default == action_side[parameter].default, (name, parameter)


# --- same answers both ways ---------------------------------------------------------------


LINES = [
    ["peers"],
    ["peers", "--json"],
    ["peers", "erin"],
    ["peers", "erin", "--json"],
    ["status"],
    ["status", "--json"],
    ["routes"],
    ["routes", "--json"],
    ["netcheck"],
    ["netcheck", "--json"],
    ["revoke"],
    ["revoke", ""],
    ["revoke", "nobody"],
    ["revoke", "quickfounder", "--json"],
    ["revoke", "carol", "--invite", "ab12"],
    ["revoke", "carol", "--reason", "tab\there"],
]


@pytest.mark.parametrize("args", LINES)
def test_same_answer_both_ways_with_a_daemon(
    daemon: Daemon, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    line = [*args, "--state-dir", str(daemon.state_dir)]
    assert recognise(line) is not None
    quick, full = both_ways(capsys, line)
    one, other = steady(quick), steady(full)
    assert one == other, "\n".join(
        difflib.unified_diff(one[1].splitlines(), other[1].splitlines(), lineterm="")
    )
    if args[0] in ("peers", "status", "netcheck"):
        assert quick[0] == 0, quick[2]


def test_peers_of_one_member_by_any_of_its_names(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    """``meshd peers MEMBER``: the member named by its name, node id (or its first
    characters, any case), overlay or link-local address (with a zone), WireGuard or node
    key; one that names nobody is a one-line error, exit 1 (as ``meshd revoke nobody``),
    nothing printed, the same both ways."""
    where = ["--state-dir", str(daemon.state_dir)]
    code, out, err = run(capsys, ["peers", "--json", *where], quick=True)
    assert code == 0, err
    erin = next(r for r in json.loads(out) if r["name"] == "erin")
    refs = [
        "erin",
        erin["node_id"][:8],
        erin["node_id"][:12].upper(),
        erin["overlay_ip"],
        f"{erin['link_local']}%meshd0",
        erin["wg_public_key"],
        erin["node_key"],
    ]
    for ref in refs:
        code, out, err = run(capsys, ["peers", ref, "--json", *where], quick=True)
        assert code == 0, (ref, err)
        assert [r["node_id"] for r in json.loads(out)] == [erin["node_id"]], ref
    code, out, err = run(capsys, ["peers", erin["node_id"][:8], *where], quick=True)
    assert code == 0, err
    shown = dict(line.split(None, 1) for line in out.splitlines())
    assert shown["name"] == "erin"
    assert shown["wg_public_key"] == erin["wg_public_key"]
    assert shown["link_local"] == erin["link_local"]
    assert shown["node_id"] == erin["node_id"]
    for ref in ("nobody", "fd00::dead", "abc"):
        (code, out, err), full = both_ways(capsys, ["peers", ref, *where])
        assert (code, out, err) == full
        assert code == 1, (ref, err)
        assert out == ""
        assert f"no member matches {ref!r}" in err
        assert len(err.strip().splitlines()) == 1, err


def test_state_dir_from_the_environment_both_ways(
    daemon: Daemon, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(daemon.state_dir))
    quick, full = both_ways(capsys, ["peers", "--json"])
    assert quick == full
    assert quick[0] == 0
    assert sorted(p["name"] for p in json.loads(quick[1])) == sorted([*MEMBERS, "quickfounder"])


@pytest.mark.parametrize("as_json", [True, False])
def test_revoke_through_the_daemon_both_ways(
    daemon: Daemon, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    """Each way revokes its own member; the answers are the same but for who it was."""
    first, second = ("carol", "dave") if as_json else ("erin", "frank")
    extra = ["--json"] if as_json else []
    results = []
    for quick, target in ((True, first), (False, second)):
        line = ["revoke", target, "--reason", "left", *extra, "--state-dir", str(daemon.state_dir)]
        code, out, err = run(capsys, line, quick=quick)
        assert code == 0, err
        node_id = daemon.peers()[target]["node_id"]
        results.append((out.replace(target, "NAME").replace(node_id, "ID"), err))
        assert daemon.states()[target] == "revoked"
    (quick_out, quick_err), (full_out, full_err) = results
    assert quick_err == full_err
    if as_json:
        ids = ("revocation_id", "target_id")
        a, b = json.loads(quick_out), json.loads(full_out)
        assert {k: v for k, v in a.items() if k not in ids} == {
            k: v for k, v in b.items() if k not in ids
        }
        assert a["excluded"] == ["NAME"]
        assert a["new"] is True
    else:
        assert quick_out == full_out
        assert quick_err.strip() == "stored and flooded by the running daemon"


@pytest.mark.parametrize(
    "args",
    [
        ["peers"],
        ["status", "--json"],
        ["routes"],
        ["netcheck"],
        ["revoke", "carol"],
        ["peers", "--help"],
        ["peers", "--jso"],
        ["peer"],
    ],
)
def test_same_answer_both_ways_without_a_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    quick, full = both_ways(capsys, [*args, "--state-dir", str(tmp_path)])
    assert quick == full
    code, out, err = quick
    if args[-1] == "--help":
        assert code == 0
        assert out.startswith("Usage: meshd peers")
        return
    assert code != 0
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("meshd: "), err
    if args in (["peers"], ["status", "--json"], ["routes"], ["netcheck"]):
        assert code == 3  # no daemon runs (the README's exit statuses)
        assert "no meshd daemon is running" in err
        assert "`meshd up`" in err


# --- what the quick path imports ----------------------------------------------------------

_PROBE = """
import sys
from meshd.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
else:
    status = 0
heavy = (
    "typer", "click", "pydantic", "rich", "libp2p", "trio", "multiaddr", "meshd.daemon",
    "prometheus_client", "asyncio", "nacl", "cryptography", "sqlite3", "meshd.membership",
    "meshd.gossip", "meshd.records", "meshd.node.store", "meshd.wg", "meshd.mesh",
)
print(status, ",".join(m for m in heavy if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("args", "status"),
    # Without WireGuard the daemon runs no Babel: `routes` gets the daemon's refusal.
    [
        (["peers", "--json"], 0),
        (["status"], 0),
        (["routes"], 1),
        (["netcheck"], 0),
        (["revoke", "nobody"], 1),
    ],
)
def test_the_quick_path_imports_neither_typer_nor_libp2p_nor_trio(
    daemon: Daemon, args: list[str], status: int
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args, "--state-dir", str(daemon.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    assert done.stderr.splitlines()[-1] == f"{status} ", done.stderr
