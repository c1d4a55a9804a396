"""A bug peers can set off is said in full once, then counted (meshd.bug_log): a hostile
peer that finds one cannot fill the disk with tracebacks."""

from __future__ import annotations

import logging

import pytest

from meshd.gossip.bug_log import BugLog


def _raise(kind: type[Exception], text: str = "boom") -> Exception:
    try:
        raise kind(text)
    except Exception as exc:  # noqa: BLE001 (the exception itself, with its traceback)
        return exc


def test_each_kind_in_full_once_then_counted_a_line_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    bugs = BugLog(logging.getLogger("t.bugs"), "the x handler", clock=lambda: now[0])
    caplog.set_level(logging.ERROR, logger="t.bugs")
    for n in range(10_000):  # 10,000 in 100 s, all of one kind
        now[0] = n / 100
        bugs.report(_raise(KeyError, f"secret-{n}"))
    lines = caplog.records
    assert 1 <= len(lines) <= 1 + 100 // 60 + 1
    assert lines[0].exc_info is not None  # the first: its traceback
    assert "a bug in meshd" in lines[0].getMessage()
    assert all(r.exc_info is None for r in lines[1:])  # then counts alone
    assert "5999 more times" in lines[1].getMessage() or "6000 more times" in lines[1].getMessage()
    assert not any("secret-1" in r.getMessage() for r in lines)  # values not repeated


def test_another_kind_is_said_in_full_and_the_kinds_remembered_are_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bugs = BugLog(logging.getLogger("t.bugs2"), "the y handler", clock=lambda: 0.0, kinds=4)
    caplog.set_level(logging.ERROR, logger="t.bugs2")
    kinds = [KeyError, ValueError, TypeError, IndexError, AttributeError]
    for kind in kinds:
        bugs.report(_raise(kind))
        bugs.report(_raise(kind))
    assert len(caplog.records) == 5  # each in full once
    assert len(bugs._seen) == 4  # the oldest forgotten
    bugs.report(_raise(KeyError))  # forgotten: said in full again
    assert len(caplog.records) == 6
