"""What the quick-path tests of ``up`` and ``join`` share: a line the quick path leaves to
typer, run both ways through :func:`meshd.cli.main` (tests/cli/test_cli_quick_up.py,
tests/cli/test_cli_quick_join.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from meshd.cli.quick import recognise

Started = Callable[..., list[tuple[Any, ...]]]
"""``started(monkeypatch, args, quick=...)``: what the command would run, caught."""

Answer = tuple[int, str, str, list[tuple[Any, ...]]]
"""Exit status, stdout, stderr and what was started."""


def left_to_typer(
    command: str,
    started: Started,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    env: Mapping[str, str],
    args: list[str],
) -> Answer:
    """Set ``env`` (``BAD`` in a value names a config file with an unknown key), check the
    quick path does not take ``command ARGS``, and return typer's answer, the same through
    main's quick way (which passes the line on) and its typer way."""
    bad = tmp_path / "bad.toml"
    bad.write_text('wg_backend = "none"\ndegre = 3\n')
    for name, value in env.items():
        monkeypatch.setenv(name, value.replace("BAD", str(bad)))
    assert recognise([command, *args]) is None
    answers: list[Answer] = []
    for quick in (True, False):
        try:
            seen = started(monkeypatch, args, quick=quick)
            code = 0
        except SystemExit as exc:
            seen, code = [], int(exc.code or 0)
        out, err = capsys.readouterr()
        answers.append((code, out, err, seen))
    assert answers[0] == answers[1]
    return answers[0]
