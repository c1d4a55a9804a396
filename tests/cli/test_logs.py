"""The daemon's log lines: one event per line, text or JSON, third-party loggers folded in."""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from meshd.cli.logs import configure, level_number, summary


def _boom() -> BaseException:
    try:
        raise ValueError("bad thing\nsecond line")
    except ValueError as exc:
        return exc


def log_lines(level: str, form: str) -> tuple[io.StringIO, list[str]]:
    out = io.StringIO()
    configure(level, form, stream=out, capture_warnings=False)
    return out, []


def test_text_is_one_line_per_event_with_fields_and_the_error_summarised() -> None:
    out, _ = log_lines("info", "text")
    log = logging.getLogger("meshd.daemon.test")
    log.info("peer %s connected\nand more", "alice", extra={"peer": "12D3", "note": "a b"})
    log.debug("not shown at info")
    error = _boom()
    log.warning("dial failed", exc_info=(type(error), error, error.__traceback__))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    first, second = lines
    assert first.endswith(
        'INFO meshd.daemon.test: peer alice connected | and more peer=12D3 note="a b"'
    )
    assert first[:4].isdigit()
    assert first[23] == "Z"
    assert second.endswith(
        "WARNING meshd.daemon.test: dial failed (ValueError: bad thing | second line)"
    )
    assert "Traceback" not in out.getvalue()


def test_json_is_one_object_per_line() -> None:
    out, _ = log_lines("info", "json")
    log = logging.getLogger("meshd.daemon.test")
    log.info("admitted %s", "bob", extra={"member": "bob", "count": 3})
    error = _boom()
    log.error("sync failed", exc_info=(type(error), error, error.__traceback__))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(events) == 2
    assert events[0]["level"] == "info"
    assert events[0]["logger"] == "meshd.daemon.test"
    assert events[0]["message"] == "admitted bob"
    assert (events[0]["member"], events[0]["count"]) == ("bob", 3)
    assert events[0]["time"].endswith("Z")
    assert events[1]["error"] == "ValueError: bad thing | second line"
    assert "traceback" not in events[1]


def test_json_writes_an_address_field_as_its_text_also_an_interned_one() -> None:
    """An interned /128 is also an int (meshd.addressing): a field holding one is its text,
    as a standard network's is, not a number."""
    from meshd.addressing import host_prefix_of

    out, _ = log_lines("info", "json")
    value = int(ipaddress.IPv6Address("fd00::7"))
    log = logging.getLogger("meshd.daemon.test")
    extra = {"interned": host_prefix_of(value), "standard": ipaddress.ip_network("fd00::7/128")}
    log.info("routes", extra={**extra, "pair": (1, 2), "n": 3})
    [event] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert event["interned"] == event["standard"] == "fd00::7/128"
    assert (event["pair"], event["n"]) == ([1, 2], 3)


def test_tracebacks_only_at_debug() -> None:
    error = _boom()
    for form in ("text", "json"):
        out, _ = log_lines("debug", form)
        logging.getLogger("meshd.x").error(
            "failed", exc_info=(type(error), error, error.__traceback__)
        )
        logging.getLogger("meshd.x").debug("detail")
        text = out.getvalue()
        assert "Traceback" in text
        assert "detail" in text
        if form == "json":
            assert all(json.loads(line) for line in text.splitlines())


def test_third_party_loggers_stay_at_warning_in_our_format() -> None:
    out, _ = log_lines("debug", "json")
    other = logging.getLogger("multiaddr.codecs")
    other.info("chatter")
    other.debug("more chatter")
    error = _boom()
    other.warning("careful", exc_info=(type(error), error, error.__traceback__))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    # debug: the traceback is there, but it is still one line, and the chatter is not.
    assert [e["message"] for e in events] == ["careful"]
    assert events[0]["logger"] == "multiaddr.codecs"


def test_libp2p_errors_arrive_as_one_line_each() -> None:
    from meshd.gossip.libp2p_workarounds.logs import LIBP2P_LOGGER, Libp2pLogBridge

    out, _ = log_lines("info", "text")
    bridge = Libp2pLogBridge.attach()
    try:
        libp2p = logging.getLogger(LIBP2P_LOGGER + ".pubsub.gossipsub")
        libp2p.info("libp2p chatter")
        inner = ExceptionGroup[Exception](
            "two", [OSError(111, "Connection refused"), ValueError("bad thing")]
        )
        try:
            raise inner
        except ExceptionGroup:
            libp2p.exception("failed to open stream")
    finally:
        bridge.detach()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "ERROR libp2p.pubsub.gossipsub: failed to open stream (ExceptionGroup of 2: " in lines[0]
    assert "ConnectionRefusedError: [Errno 111] Connection refused; ValueError: bad" in lines[0]


def test_on_the_journal_lines_carry_their_priority_and_no_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "journal").open("w+") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        configure("info", "text", stream=stream, capture_warnings=False)
        logging.getLogger("meshd.y").warning("watch out")
        logging.getLogger("meshd.y").info("fine")
        stream.seek(0)
        assert stream.read().splitlines() == [
            "<4>WARNING meshd.y: watch out",
            "<6>INFO meshd.y: fine",
        ]


def test_quiet_text_speaks_to_a_person() -> None:
    out = io.StringIO()
    configure("info", "text", quiet=True, stream=out, capture_warnings=False)
    logging.getLogger("meshd.daemon.join").info("not shown")
    logging.getLogger("meshd.daemon.join").warning("bootstrap %s unreachable", "/ip4/1.2.3.4")
    assert out.getvalue() == "meshd: bootstrap /ip4/1.2.3.4 unreachable\n"


def test_levels_and_summaries() -> None:
    assert level_number("WARNING") == logging.WARNING
    with pytest.raises(ValueError, match="not one of"):
        level_number("loud")
    assert summary(KeyError()) == "KeyError"
    assert len(summary(ValueError("x" * 10_000))) == 500


def test_warnings_and_ignored_exceptions_become_one_line_each() -> None:
    out = io.StringIO()
    configure("info", "json", stream=out)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old thing\nused", DeprecationWarning, stacklevel=1)
    error = _boom()
    sys.unraisablehook(
        SimpleNamespace(
            exc_type=ValueError,
            exc_value=error,
            exc_traceback=error.__traceback__,
            err_msg="Exception ignored in",
            object=_boom,
        )
    )
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["logger"] for e in events] == ["py.warnings", "meshd.unraisable"]
    assert "DeprecationWarning: old thing" in events[0]["message"]
    assert events[1]["message"] == "Exception ignored in _boom"
    assert events[1]["error"] == "ValueError: bad thing | second line"


def test_the_config_file_is_named_first() -> None:
    out = io.StringIO()
    configure("info", "json", stream=out, capture_warnings=False, config_file=Path("/etc/m.toml"))
    [event] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert event["message"] == "options from the config file /etc/m.toml"
    assert event["config"] == "/etc/m.toml"
    assert event["logger"] == "meshd.config"
