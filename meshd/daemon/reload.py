"""SIGHUP: the options read again, what can change at once applied, the rest named.

A network daemon is sent SIGHUP to take a changed configuration (``systemctl reload``,
BIRD's and nebula's way), and by habit or by a tool that rotates logs. Python's default for
it ends the process at once: meshd left its WireGuard interface, wireguard-go and its Babel
routes behind, without a goodbye or a word in the log. Now the running daemon reads its
options again as ``meshd up`` settled them at its start (its command line over the
environment over the config file, :mod:`meshd.cli.quick_up`):

* a file that cannot be read or holds a wrong value: one ERROR line saying why, and the
  daemon runs on with what it has;
* ``log_level`` and ``log_format``: applied at once;
* the options of :data:`meshd.daemon.live_config.LIVE` (Babel's site links, Hello
  interval, originated prefixes, filter and keys, ``endpoint``, ``relay``,
  ``public_addr``, ``metrics``, ``mtu``, ``listen_port``, ``degree``, ``announce_interval``,
  ``announce_ttl``, ``auto_renew`` and its terms):
  given to the running services (``apply_live``), which may refuse a value as a start
  would (one ERROR line; nothing of that SIGHUP applied);
* any other option changed: one WARNING line naming the keys (never their values: a Babel
  key is a secret), which take effect when meshd starts again (``systemctl restart``);
  each SIGHUP names them again until then.

SIGUSR1 and SIGUSR2, whose default also ends the process, are noted and ignored (unless a
handler of the embedding program's is installed for them already).

:func:`changed_keys` is pure; :class:`Reloader` reads files and sets up the log.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from meshd.daemon.live_config import LIVE

if TYPE_CHECKING:
    from meshd.daemon.config import DaemonConfig

log = logging.getLogger(__name__)

#: The options that a SIGHUP applies at once.
APPLIED: Final = ("log_level", "log_format")
#: What is not an option of the running daemon's (where the file is; re-read anyway).
NOT_COMPARED: Final = frozenset({"config_file"})


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The option names whose settled values differ, sorted (pure)."""
    names = (set(before) | set(after)) - NOT_COMPARED
    return sorted(n for n in names if before.get(n) != after.get(n))


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What one SIGHUP did: the keys applied, the keys waiting for a start, or why nothing
    was read (``error``, one line)."""

    applied: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    error: str = ""


class Reloader:
    """The options of ``meshd up WORDS`` as they stood at the start, read again on demand."""

    def __init__(
        self,
        words: Sequence[str] | None,
        environ: Mapping[str, str],
        options: Mapping[str, Any] | None,
        why_not: str = "",
    ) -> None:
        """``words``: what followed ``up`` on the command line, and ``options`` what ``up``
        settled from them at the start (:func:`meshd.cli.starting.prepare`); None when they
        cannot be read again (``why_not`` says why: then a SIGHUP says so)."""
        self.words = None if words is None else tuple(words)
        self.environ = dict(environ)
        self.current = None if options is None or words is None else dict(options)
        self.why_not = why_not or "this daemon's options cannot be read again"
        # What the SIGHUPs did, for meshd status and the metrics (:meth:`view`).
        self.succeeded = 0
        self.failed = 0
        self.last_at: float | None = None  # Unix time of the last SIGHUP
        self.last: Reloaded | None = None
        self.waiting: tuple[str, ...] = ()  # changed options a restart would take
        # The running services' taking of the LIVE options (the daemon's, once it runs:
        # meshd.daemon.launch): the keys taken; raises, having changed nothing, on a refusal.
        self.apply_live: Callable[[DaemonConfig, tuple[str, ...]], tuple[str, ...]] | None = None

    def view(self) -> dict[str, Any]:
        """What the SIGHUPs did so far (``meshd status``'s ``config``): how many read the
        options (``reloads``) and how many could not (``failed``), the last one's time,
        outcome and error, and the changed options waiting for a restart."""
        last = self.last
        return {
            "reloads": self.succeeded,
            "failed": self.failed,
            "last_at": self.last_at,
            "last_ok": None if last is None else not last.error,
            "last_error": "" if last is None else last.error,
            "waiting": list(self.waiting),
        }

    def reload_now(self, at: float) -> Reloaded:
        """:meth:`reload`, noted as the SIGHUP of Unix time ``at`` (:meth:`view`)."""
        outcome = self.reload()
        self.last_at, self.last = at, outcome
        if outcome.error:
            self.failed += 1
        else:
            self.succeeded += 1
            self.waiting = outcome.waiting
        return outcome

    @classmethod
    def of_this_process(cls, options: Mapping[str, Any] | None) -> Reloader:
        """For the daemon of this process: its command line, if it was started as ``meshd
        up`` with one the quick reader reads (:mod:`meshd.cli.quick_up`: the only one whose
        ``options`` reach here), and its environment."""
        from meshd.daemon.reexec import started_as_up

        if not started_as_up():
            return cls(None, os.environ, None, "this daemon was not started as `meshd up`")
        if options is None:
            why = "its command line is one only `meshd up`'s full parser reads"
            return cls(None, os.environ, None, why)
        return cls(sys.argv[2:], os.environ, options)

    def read(self) -> dict[str, Any]:
        """The settled options, checked as ``meshd up`` checks them (its errors raised)."""
        return self._read()[0]

    def _read(self) -> tuple[dict[str, Any], DaemonConfig]:
        """:meth:`read`, and the daemon's configuration made of them."""
        from meshd.cli import starting
        from meshd.cli.configfile.settling import settled
        from meshd.cli.quick_up import file_keys, read

        assert self.words is not None
        values, given = read(self.words, self.environ)
        out = settled("up", values, given, file_keys())
        up = starting.prepare(out)
        return out, starting.with_metrics(up.config, up.metrics)

    def reload(self) -> Reloaded:
        """Read the options again; apply what can be; say what waits (see the module)."""
        if self.current is None or self.words is None:
            return Reloaded(error=f"{self.why_not} (restart meshd to apply a change)")
        try:
            new, config = self._read()
            changed = changed_keys(self.current, new)
            live = tuple(k for k in changed if k in LIVE)
            taken = self.apply_live(config, live) if live and self.apply_live else ()
        except Exception as exc:  # noqa: BLE001 (a wrong file: one line, the daemon runs on)
            return Reloaded(error=_one_line(exc))
        applied = tuple(k for k in changed if k in APPLIED)
        if applied:
            from meshd.cli import logs

            # Said at whichever of the two levels shows it: after, unless it is quieter.
            said = "SIGHUP: applied " + ", ".join(f"{k} = {new[k]}" for k in applied)
            quieter = logs.level_number(new["log_level"]) > logging.INFO
            if quieter:
                log.info("%s", said)
            logs.configure(new["log_level"], new["log_format"])
            if not quieter:
                log.info("%s", said)
            for key in applied:
                self.current[key] = new[key]
        if taken:
            log.info("SIGHUP: the running daemon took %s", ", ".join(taken))
            for key in taken:
                self.current[key] = new[key]
        waiting = tuple(k for k in changed if k not in APPLIED and k not in taken)
        return Reloaded(tuple(k for k in changed if k in applied or k in taken), waiting)


def _one_line(exc: BaseException) -> str:
    from meshd.errors import MeshdError

    if isinstance(exc, MeshdError):
        return exc.one_line()
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def report(outcome: Reloaded) -> None:
    """Log what a SIGHUP did beside what it applied (:meth:`Reloader.reload` says that):
    one line, key names only, never their values."""
    if outcome.error:
        log.error("SIGHUP: configuration not reloaded: %s; meshd runs on as it was", outcome.error)
        return
    if outcome.waiting:
        log.warning(
            "SIGHUP: %s changed; %s effect when meshd starts again (systemctl restart meshd)",
            ", ".join(outcome.waiting),
            "it takes" if len(outcome.waiting) == 1 else "they take",
        )
    if not outcome.applied and not outcome.waiting:
        log.info("SIGHUP: configuration read again: nothing changed")
