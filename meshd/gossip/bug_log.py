"""Tracebacks of our own bugs that peers can set off, said without flooding the log (pure
but for the logger; the shell gives it its clock).

A catch-all that keeps the daemon up when a handler of untrusted input raises something
unexpected (the gossip validator, a stream handler) logged a full traceback every time: a
peer that found such a path could send it at the gossip rate and fill the disk with
tracebacks. :class:`BugLog` says each kind of failure (its exception type and the line
that raised it) in full once, then counts: one line at most every ``every`` s per kind
with how many more came, and at most ``kinds`` kinds remembered (the oldest forgotten,
said again in full if it comes back).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

EVERY: Final = 60.0
KINDS: Final = 64


class BugLog:
    """A logger's reports of unexpected exceptions, each kind in full once, then counted."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        clock: Callable[[], float],
        every: float = EVERY,
        kinds: int = KINDS,
    ) -> None:
        self.logger = logger
        self.what = what
        self.every = every
        self.kinds = kinds
        self.clock = clock
        # kind -> [when last said, how many since]
        self._seen: dict[tuple[str, str], list[float]] = {}

    def report(self, exc: BaseException, context: str = "") -> None:
        """Say ``exc`` (raised in a handler of ``what``; ``context``: which one), in full the
        first time its kind is seen, else counted."""
        kind = (type(exc).__qualname__, _where(exc))
        now = self.clock()
        seen = self._seen.get(kind)
        about = f"{self.what} {context}".strip()
        if seen is None:
            if len(self._seen) >= self.kinds:
                del self._seen[next(iter(self._seen))]
            self._seen[kind] = [now, 0]
            self.logger.error(
                "%s raised %s (a bug in meshd, please report it; the same again is counted, "
                "not shown)",
                about,
                type(exc).__name__,
                exc_info=exc,
            )
            return
        seen[1] += 1
        if now - seen[0] >= self.every:
            self.logger.error(
                "%s raised %s at %s %d more times in the last %.0f s",
                about,
                type(exc).__name__,
                kind[1],
                int(seen[1]),
                now - seen[0],
            )
            seen[0], seen[1] = now, 0


def _where(exc: BaseException) -> str:
    """The file and line that raised ``exc`` (its innermost frame)."""
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


class QuietLog:
    """Lines a peer's input sets off (a refused stream, a failed one), each kind said once
    every ``every`` s at most, the rest counted and said with the next: the log grows with
    time, not with what peers send (threat model §3.12: refusals are counted, not logged
    one by one). A kind is the line's format; ``kinds`` are remembered at most."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        clock: Callable[[], float],
        every: float = EVERY,
        kinds: int = KINDS,
    ) -> None:
        self.logger = logger
        self.clock = clock
        self.every = every
        self.kinds = kinds
        self._seen: dict[str, list[float]] = {}  # format -> [when last said, how many since]

    def log(self, level: int, fmt: str, *args: object) -> None:
        """Say ``fmt % args`` at ``level``, or count it if its kind was said within
        ``every`` s (the count comes with the next line of that kind said)."""
        now = self.clock()
        seen = self._seen.get(fmt)
        if seen is not None and now - seen[0] < self.every:
            seen[1] += 1
            return
        more = int(seen[1]) if seen is not None else 0
        if seen is None and len(self._seen) >= self.kinds:
            del self._seen[next(iter(self._seen))]
        self._seen[fmt] = [now, 0]
        if more:
            fmt += f" (and {more} more like it since the last such line)"
        self.logger.log(level, fmt, *args)
