"""What a config file's values mean: one check per key, with the parsers the command uses.

:data:`MEANING` maps a key to a function that raises UsageError (or ValueError) for a value
the command would refuse: a multiaddr, a backend, an interface name, a duration, ... Each
imports its parser only when called, so that reading a file imports no more than it checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from meshd.errors import UsageError


def _listen(text: str) -> None:
    from meshd.gossip.config import parse_multiaddr

    try:
        parsed = parse_multiaddr(text)
    except ValueError:
        raise UsageError(
            f"--listen {text!r} is not a multiaddr", hint="write it like /ip4/10.0.0.1/tcp/7100"
        ) from None
    protocols = [p.name for p in parsed.protocols()]
    if "tcp" not in protocols or protocols[0] not in ("ip4", "ip6"):
        raise UsageError(
            f"--listen {text!r} is not a TCP address",
            hint="write it like /ip4/10.0.0.1/tcp/7100 or /ip6/::/tcp/7100",
        )


def _endpoint(text: str) -> None:
    from meshd.daemon.config import refuse_host_name
    from meshd.wg.model import parse_endpoint

    try:
        parse_endpoint(text)
    except ValueError:
        refuse_host_name(text)  # a name: said why, as on the command line
        raise


def _choice(flag: str, choices: Callable[[], Iterable[str]]) -> Callable[[str], None]:
    def check(text: str) -> None:
        allowed = tuple(choices())
        if text not in allowed:
            raise UsageError(f"{flag} {text!r} is not one of " + ", ".join(allowed))

    return check


def _backends() -> Iterable[str]:
    from meshd.daemon.config import WG_BACKENDS

    return WG_BACKENDS


def _levels() -> Iterable[str]:
    from meshd.cli.logs import LEVELS

    return LEVELS


def _formats() -> Iterable[str]:
    from meshd.cli.logs import FORMATS

    return FORMATS


def _interface(flag: str) -> Callable[[str], None]:
    def check(text: str) -> None:
        from meshd.wg.backend import MAX_IFNAME

        if not 0 < len(text) <= MAX_IFNAME or not all(c.isalnum() or c in "-_." for c in text):
            raise UsageError(
                f"{flag} {text!r} is not a usable interface name",
                hint=f"use 1 to {MAX_IFNAME} of [A-Za-z0-9._-]",
            )

    return check


def _duration(flag: str) -> Callable[[str], None]:
    def check(text: str) -> None:
        from meshd.cli.parse import duration

        duration(text, option=flag)

    return check


def _babel(parser: str) -> Callable[[str], None]:
    def check(text: str) -> None:
        from meshd.babel import options

        getattr(options, parser)(text)

    return check


def _metrics(text: str) -> None:
    from meshd.metrics.http import parse_address

    parse_address(text)


def _relay_modes() -> Iterable[str]:
    from meshd.daemon.config import RELAY_MODES

    return RELAY_MODES


def _public_addr(text: str) -> None:
    from meshd.daemon.bootstrap import check_public_addr

    check_public_addr(text, 7100)


def _bootstrap(text: str) -> None:
    from meshd.daemon.bootstrap import check_bootstrap

    check_bootstrap(text)


def _not_empty(text: str) -> None:
    if not text.strip():
        raise UsageError("must not be empty")


DURATIONS: Final = frozenset({"announce_interval", "announce_ttl", "renew_window", "renew_for"})
MEANING: Final[dict[str, Callable[[Any], None]]] = {
    "listen": _listen,
    "endpoint": _endpoint,
    "wg_backend": _choice("--wg-backend", _backends),
    "interface": _interface("--interface"),
    "announce_interval": _duration("--announce-interval"),
    "announce_ttl": _duration("--announce-ttl"),
    "renew_window": _duration("--renew-window"),
    "renew_for": _duration("--renew-for"),
    "babel_interface": _interface("--babel-interface"),
    "babel_originate": _babel("parse_origin"),
    "babel_key": _babel("parse_key"),
    "babel_redistribute": _babel("parse_redistribute"),
    "log_level": _choice("--log-level", _levels),
    "log_format": _choice("--log-format", _formats),
    "metrics": _metrics,
    "invite": _not_empty,
    "relay": _choice("--relay", _relay_modes),
    "public_addr": _public_addr,
    "bootstrap": _bootstrap,
}
