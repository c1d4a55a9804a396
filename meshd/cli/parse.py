"""Parsing of command-line values (pure): durations and prefixes."""

from __future__ import annotations

import ipaddress
import re
import sys

from meshd.addressing import Prefix
from meshd.errors import CommandLineError, UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)([smhdw])")


def duration(text: str, *, option: str) -> int:
    """Parse ``90s``, ``30m``, ``24h``, ``7d``, ``2w`` or combinations such as ``1d12h``."""
    value = text.strip().lower()
    parts = _DURATION.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise CommandLineError(
            f"{option} {text!r} is not a duration", hint="write it like 30m, 24h or 7d"
        )
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise CommandLineError(f"{option} must be longer than zero")
    if seconds > 100 * 365 * 86400:
        raise CommandLineError(f"{option} {text!r} is longer than a hundred years")
    return seconds


def prefix(text: str) -> Prefix:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise CommandLineError(
            f"{text!r} is not a prefix ({exc})", hint="write it like fd00:1::/64 or 10.1.0.0/24"
        ) from None


MAX_SECRET_TEXT = 64 * 1024  # a token is at most 12,000 characters


def read_secret_argument(value: str, option: str) -> str:
    """A secret given as itself, as ``-`` (read stdin) or as ``@FILE`` (read that file); at
    most :data:`MAX_SECRET_TEXT` read of either (``@/dev/zero`` read until memory ran out)."""
    if value == "-":
        text = sys.stdin.readline(MAX_SECRET_TEXT + 1)
    elif value.startswith("@"):
        try:
            with open(value[1:], "rb") as source:
                text = source.read(MAX_SECRET_TEXT + 1).decode("utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(
                f"cannot read {option} from {value[1:]}: {exc.strerror}",
                hint="give the path of a file that holds the token, or '-' to read stdin",
            ) from None
    else:
        return value.strip()
    if len(text) > MAX_SECRET_TEXT:
        raise CommandLineError(
            f"{option}: more than {MAX_SECRET_TEXT} bytes to read: that is no token",
            hint="give the token as `meshd invite` printed it",
        )
    text = text.strip()
    if not text:
        raise CommandLineError(f"{option}: nothing to read", hint="give the token, '-' or '@FILE'")
    return text
