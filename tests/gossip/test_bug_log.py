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


def test_a_quiet_log_says_each_kind_once_a_minute_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A line a peer's input sets off (a refused or failed stream) was logged every time:
    1,000 empty NAT streams from a stranger made 1,000 INFO lines."""
    from meshd.gossip.bug_log import QuietLog

    now = [0.0]
    quiet = QuietLog(logging.getLogger("t.quiet"), clock=lambda: now[0], kinds=2)
    with caplog.at_level(logging.INFO, logger="t.quiet"):
        for n in range(1000):
            now[0] = n * 0.01
            quiet.log(logging.INFO, "refused sync from %s: %s", f"peer{n}", "session-rate")
        assert len(caplog.records) == 1
        now[0] = 70.0
        quiet.log(logging.INFO, "refused sync from %s: %s", "peer", "session-rate")
        assert len(caplog.records) == 2
        assert "and 999 more like it" in caplog.records[-1].getMessage()
        quiet.log(logging.INFO, "another kind %s", 1)  # a kind of its own: said at once
        assert len(caplog.records) == 3
        quiet.log(logging.INFO, "a third kind %s", 1)  # the oldest kind forgotten
        quiet.log(logging.INFO, "refused sync from %s: %s", "peer", "session-rate")
        assert len(caplog.records) == 5


def test_streams_that_fail_again_and_again_are_one_line_not_one_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import trio

    from meshd.errors import DecodeError
    from meshd.gossip.streams import serve_framed

    class Stream:
        class muxed_conn:
            peer_id = "12D3KooWStranger"

        async def reset(self) -> None:
            pass

        async def close(self) -> None:
            pass

    async def handler(stream: object) -> None:
        raise DecodeError("nat message: empty")

    serve = serve_framed("/meshd/nat/1.0.0", handler, max_frame_size=256, timeout=1.0)

    async def main() -> None:
        for _ in range(200):
            await serve(Stream())  # type: ignore[arg-type]

    with caplog.at_level(logging.DEBUG, logger="meshd.gossip"):
        trio.run(main)
    said = [r for r in caplog.records if "stream from" in r.getMessage()]
    assert len(said) == 1, len(said)
