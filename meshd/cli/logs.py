"""The daemon's log: one event per line on stderr, as text or as JSON.

``meshd up --log-level LEVEL --log-format text|json`` (or ``log_level``/``log_format`` in the
config file, ``MESHD_LOG_LEVEL``/``MESHD_LOG_FORMAT``). meshd's own loggers (``meshd.*``) log at
the chosen level; everything else (libp2p, multiaddr, trio, Python's warnings and its
"Exception ignored" reports) at WARNING, or at the chosen level if it is higher, and in the
same format.

One event is one line. A message's line breaks are folded; an exception attached to a record
is summarised at the end of its line (``(ValueError: what it said)``, an exception group as its
leaves), and only at ``debug`` is its traceback written in full: on the following lines,
indented, in text, and as the ``traceback`` field in JSON.

Text: ``2026-01-31T12:00:00.123Z INFO meshd.daemon.launch: message key=value``. Under systemd
(stderr is the journal, JOURNAL_STREAM) the time is left to the journal and each line starts
with its syslog priority (``<6>``), which journald reads as the entry's priority.
JSON: one object per line with ``time``, ``level``, ``logger``, ``message``, the record's
structured fields (``log.info("...", extra={"peer": ...})``) and ``error``/``traceback``.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Final, TextIO

LEVELS: Final = ("debug", "info", "warning", "error")
FORMATS: Final = ("text", "json")
THIRD_PARTY_LEVEL: Final = logging.WARNING
OUR_LOGGER: Final = "meshd"
MAX_SUMMARY: Final = 500

_STANDARD: Final = frozenset(
    {*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime", "taskName"}
)
_PRIORITY: Final = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def level_number(level: str) -> int:
    """``info`` -> logging.INFO; ValueError for a name not in :data:`LEVELS`."""
    name = level.strip().lower()
    if name not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of " + ", ".join(LEVELS))
    return int(getattr(logging, name.upper()))


def one_line(text: str) -> str:
    """``text`` with its line breaks folded into `` | ``."""
    return " | ".join(part.strip() for part in text.splitlines() if part.strip())


def summary(error: BaseException) -> str:
    """``Type: message`` on one line; an exception group as its leaves."""
    if isinstance(error, BaseExceptionGroup):
        leaves = [summary(inner) for inner in error.exceptions]
        text = f"{type(error).__name__} of {len(leaves)}: " + "; ".join(leaves)
    else:
        said = one_line(str(error))
        text = f"{type(error).__name__}: {said}" if said else type(error).__name__
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 3] + "..."


_JSON_TYPES: Final = frozenset({str, int, float, bool, type(None), list, tuple, dict})


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the record carries besides the standard attributes: its ``extra`` fields."""
    return {
        k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
    }


class LineFormatter(logging.Formatter):
    """One record, one line (see the module's docstring); ``debug`` adds tracebacks."""

    def __init__(self, form: str = "text", *, debug: bool = False, journal: bool = False) -> None:
        super().__init__()
        if form not in FORMATS:
            raise ValueError(f"log format {form!r} is not one of " + ", ".join(FORMATS))
        self.form = form
        self.debug = debug
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        error = record.exc_info[1] if record.exc_info else None
        trace = ""
        if self.debug and record.exc_info and error is not None:
            trace = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if self.debug and record.stack_info:
            trace = (trace + "\n" + record.stack_info).strip()
        if self.form == "json":
            return self._json(record, message, error, trace)
        return self._text(record, message, error, trace)

    def _json(
        self, record: logging.LogRecord, message: str, error: BaseException | None, trace: str
    ) -> str:
        event: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        for key, value in fields(record).items():
            # A field of any other type is its text (``default``), an int's subclass too (an
            # interned /128 is one: JSON would write its address as a number).
            event.setdefault(key, value if type(value) in _JSON_TYPES else str(value))
        if error is not None:
            event["error"] = summary(error)
        if trace:
            event["traceback"] = trace
        return json.dumps(event, default=str, ensure_ascii=False)

    def _text(
        self, record: logging.LogRecord, message: str, error: BaseException | None, trace: str
    ) -> str:
        words = [] if self.journal else [_time(record)]
        words += [record.levelname, f"{record.name}:", one_line(message)]
        words += [f"{k}={_word(v)}" for k, v in fields(record).items()]
        if error is not None:
            words.append(f"({summary(error)})")
        line = " ".join(w for w in words if w)
        if self.journal:
            line = f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        if trace:
            line += "\n" + "\n".join("    " + t for t in trace.splitlines())
        return line


class PlainFormatter(LineFormatter):
    """``meshd: message``: for a person at a terminal while ``meshd join`` talks to them."""

    def _text(
        self, record: logging.LogRecord, message: str, error: BaseException | None, trace: str
    ) -> str:
        line = f"meshd: {one_line(message)}"
        if error is not None:
            line += f" ({summary(error)})"
        return line + ("\n" + trace if trace else "")


def _time(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _word(value: Any) -> str:
    text = one_line(str(value))
    return json.dumps(text) if not text or any(c in text for c in ' "=') else text


def on_journal(stream: TextIO) -> bool:
    """Whether ``stream`` is systemd's journal (JOURNAL_STREAM names its device and inode)."""
    wanted = os.environ.get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return wanted == f"{info.st_dev}:{info.st_ino}"


def configure(
    level: str = "info",
    form: str = "text",
    *,
    quiet: bool = False,
    stream: TextIO | None = None,
    capture_warnings: bool = True,
    config_file: Path | None = None,
) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) in ``form``, meshd's at ``level``.

    ``quiet`` (``meshd join`` before it runs the daemon): warnings and worse only, and in text
    as ``meshd: message``. ``config_file``: the file the options were read from, logged first.
    Returns the handler installed on the root logger (replacing any).
    """
    ours = level_number(level)
    out = stream if stream is not None else sys.stderr
    if quiet:
        ours = max(ours, logging.WARNING)
    debug = ours <= logging.DEBUG
    formatter: LineFormatter
    if quiet and form == "text":
        formatter = PlainFormatter(form, debug=debug)
    else:
        formatter = LineFormatter(form, debug=debug, journal=on_journal(out))
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(max(THIRD_PARTY_LEVEL, ours))
    logging.getLogger(OUR_LOGGER).setLevel(ours)
    if capture_warnings:
        logging.captureWarnings(True)
        sys.unraisablehook = _log_unraisable
    if config_file is not None:
        logging.getLogger(f"{OUR_LOGGER}.config").info(
            "options from the config file %s", config_file, extra={"config": str(config_file)}
        )
    return handler


def _log_unraisable(unraisable: Any) -> None:
    """What Python would print as "Exception ignored in ...": one warning line instead."""
    error = unraisable.exc_value
    where = getattr(unraisable.object, "__qualname__", None) or repr(unraisable.object)
    what = unraisable.err_msg or "Exception ignored in"
    logging.getLogger("meshd.unraisable").warning(
        "%s %s",
        what,
        where,
        exc_info=(type(error), error, unraisable.exc_traceback) if error is not None else None,
    )
