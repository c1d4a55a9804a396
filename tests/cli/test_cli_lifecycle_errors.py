"""The one-line refusals of ``renew``, ``leave``, ``root rollover`` and ``admin renew`` end
with the exit status the README's table gives them: 2 for a missing, conflicting or malformed
argument, 3 when the command needs a daemon and none runs, 1 for what cannot be done as asked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from meshd.cli.failures import COMMAND_LINE, FAILED, NOT_RUNNING
from tests.cli.test_cli import one_line_error, run


@pytest.fixture
def founder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    state = tmp_path / "a"
    code, _, err = run(
        capsys, "init", "--network", "barnet", "--name", "alpha", "--state-dir", str(state)
    )
    assert code == 0, err
    return state


def _admin(founder: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    folder = founder.parent / "admin"
    code, _, err = run(capsys, "admin", "create", "--out", str(folder), "--state-dir", str(founder))
    assert code == 0, err
    return folder


def _outside_root_key(founder: Path) -> Path:
    kept = founder.parent / "offline-root.key"
    kept.write_bytes((founder / "root.key").read_bytes())
    kept.chmod(0o600)
    return kept


Argv = Callable[[Path, pytest.CaptureFixture[str]], list[str]]

CASES: list[tuple[str, Argv, int, str]] = [
    ("renew-neither-node-nor-all", lambda s, c: ["renew"], COMMAND_LINE, "--all"),
    ("renew-both-node-and-all", lambda s, c: ["renew", "alpha", "--all"], COMMAND_LINE, "--all"),
    ("renew-malformed-length", lambda s, c: ["renew", "--all", "--for", "4x"], COMMAND_LINE, "4x"),
    ("renew-unknown-member", lambda s, c: ["renew", "nobody"], FAILED, "no member matches"),
    (
        "leave-unprintable-reason",
        lambda s, c: ["leave", "--reason", "a\x07b"],
        COMMAND_LINE,
        "--reason",
    ),
    ("leave-reason-too-long", lambda s, c: ["leave", "--reason", "x" * 257], COMMAND_LINE, "256"),
    ("leave-without-a-daemon", lambda s, c: ["leave"], NOT_RUNNING, "no daemon runs"),
    (
        "rollover-root-key-outside-without-a-new-path",
        lambda s, c: ["root", "rollover", "--root-key", str(_outside_root_key(s))],
        COMMAND_LINE,
        "--new-root-key",
    ),
    (
        "rollover-malformed-overlap",
        lambda s, c: ["root", "rollover", "--overlap", "soon"],
        COMMAND_LINE,
        "--overlap",
    ),
    (
        "admin-renew-out-without-cert",
        lambda s, c: ["admin", "renew", "--admin-dir", str(_admin(s, c)), "--out", "x.cert"],
        COMMAND_LINE,
        "--out needs --cert",
    ),
    (
        "admin-renew-cert-whose-key-is-not-here-without-out",
        lambda s, c: ["admin", "renew", "--cert", str(_admin(s, c) / "admin.cert")],
        COMMAND_LINE,
        "--out",
    ),
    (
        "admin-rotate-without-an-admin-here",
        lambda s, c: ["admin", "rotate"],
        FAILED,
        "no admin key here",
    ),
]


@pytest.mark.parametrize(
    ("argv", "status", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_refusals_are_one_line_with_their_documented_status(
    founder: Path, capsys: pytest.CaptureFixture[str], argv: Argv, status: int, says: str
) -> None:
    args = argv(founder, capsys)
    code, _, err = run(capsys, *args, "--state-dir", str(founder))
    one_line_error(code, err)
    assert code == status, err
    assert says in err
    # Refused before anything changed: the root key is where it was, no new one was written.
    assert (founder / "root.key").exists()
    assert not (founder.parent / "x.cert").exists()


def test_rotate_node_of_a_membership_that_ended_is_refused_and_leaves_no_key_behind(
    founder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eleven years on, the founder's ten-year certificate has ended (and is pruned from the
    store as it loads): `rotate node` says so in one line (exit 1) before it writes any key,
    so no node.key.next is left for a later try to call a rotation cut short. (What the store
    prunes as expired is said at INFO, so it does not join the error line.)"""
    import meshd.node.statedir

    later = meshd.node.statedir.now() + 11 * 365 * 86400
    monkeypatch.setattr(meshd.node.statedir, "now", lambda: later)
    for _ in range(2):
        code, _, err = run(capsys, "rotate", "node", "--state-dir", str(founder))
        one_line_error(code, err)
        assert code == FAILED
        assert "not a standing member" in err
        assert not (founder / "node.key.next").exists()
