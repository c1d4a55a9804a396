"""How a failed command ends: one line on stderr and a documented exit status.

Exit statuses (the README's "Exit status" table is this one):

====  ===========================================================================
0     success
1     what was asked cannot be done as asked (not a node, a refused token, ...)
2     the command line is wrong (a missing, conflicting or malformed argument)
3     no daemon runs for this state dir
4     already running: another daemon holds this state dir, interface or route
5     permission: not root / no CAP_NET_ADMIN, an unwritable or unsafe state dir
6     an address or port does not bind (in use, or not an address of this host)
7     WireGuard is unavailable (no kernel module, no wireguard-go, it failed)
10    this node is revoked (the daemon stops)
70    internal error: a bug in meshd (rerun with MESHD_DEBUG=1 and report it)
78    the config file is wrong (``meshd config check`` says where; meshd.cli.configfile)
130   interrupted (Ctrl-C)
====  ===========================================================================

trio wraps what a task raised in exception groups, one per nursery it crossed: the groups
are unwrapped here to the error inside, so that nobody ever reads an ExceptionGroup.
Imported only when a command fails: it must stay cheap (no trio, no typer).
"""

from __future__ import annotations

import errno
import os
import re
import sys
from typing import Final

from meshd.errors import MeshdError

OK: Final = 0
FAILED: Final = 1
COMMAND_LINE: Final = 2
NOT_RUNNING: Final = 3
ALREADY_RUNNING: Final = 4
NOT_PERMITTED: Final = 5
ADDRESS: Final = 6
WIREGUARD: Final = 7
REVOKED: Final = 10
INTERNAL: Final = 70
RESTART: Final = 75
CONFIG: Final = 78
INTERRUPTED: Final = 130

EXIT_STATUSES: Final = (
    (OK, "success"),
    (FAILED, "what was asked cannot be done as asked (not a node, a refused token, ...)"),
    (COMMAND_LINE, "the command line is wrong: a missing, conflicting or malformed argument"),
    (NOT_RUNNING, "no daemon runs for this state dir"),
    (ALREADY_RUNNING, "another daemon holds this state dir, interface or route"),
    (NOT_PERMITTED, "no permission (root or CAP_NET_ADMIN), or an unwritable or unsafe state dir"),
    (ADDRESS, "an address or port does not bind: in use, or not an address of this host"),
    (WIREGUARD, "WireGuard is unavailable: no kernel module, no wireguard-go, or it failed"),
    (REVOKED, "this node is revoked (the daemon stops)"),
    (INTERNAL, "internal error: a bug in meshd; rerun with MESHD_DEBUG=1 and report it"),
    (
        RESTART,
        "the daemon stopped to start again: this node's key was handed over "
        "(`meshd rotate node`); systemd restarts it",
    ),
    (CONFIG, "the config file is wrong: `meshd config check FILE` says where"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
)


# What a line a user sees must not carry: an invite token (its text holds the invite's
# secret key), whole or cut, under any spelling of its prefix, and any other long opaque run
# of base64 text (a token pasted where something else was expected). Keys (44 characters),
# record ids (64 hex digits) and peer ids (52) stay readable: they are no secrets.
_TOKENISH: Final = re.compile(r"[A-Za-z0-9]*meshd\d[A-Za-z0-9_-]{40,}", re.IGNORECASE)
_OPAQUE: Final = re.compile(r"[A-Za-z0-9_-]{100,}")


def redact(line: str) -> str:
    """``line`` without any invite token or long opaque run of base64 text it holds."""
    line = _TOKENISH.sub("<an invite token, not shown>", line)
    return _OPAQUE.sub(lambda m: f"<{len(m.group())} characters, not shown>", line)


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside ``error``'s groups (``error`` itself if it is no group)."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def _cancelled(error: BaseException) -> bool:
    return type(error).__name__ == "Cancelled" and type(error).__module__.startswith("trio")


def decisive(error: BaseException) -> BaseException:
    """The one exception that says why a command failed: an interrupt first, then a meshd
    error (what the user can act on), then anything else; trio's cancellations never."""
    found = [leaf for leaf in leaves(error) if not _cancelled(leaf)] or leaves(error)
    for kind in (KeyboardInterrupt, MeshdError, OSError):
        for leaf in found:
            if isinstance(leaf, kind):
                return leaf
    return found[0]


def from_os_error(exc: OSError) -> tuple[str, int]:
    """An OSError that reached the command line: what happened to which file, and a status."""
    where = f"{exc.filename}: " if exc.filename else ""
    text = f"{where}{exc.strerror or exc}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        fix = f"fix the permissions of {exc.filename}" if exc.filename else "fix the permissions"
        return f"{text}; run as root, or {fix}", NOT_PERMITTED
    if exc.errno == errno.EROFS:
        return f"{text}; use a --state-dir on a writable file system", NOT_PERMITTED
    if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
        return f"{text}; choose another address or port", ADDRESS
    return text, FAILED


def report(error: BaseException) -> int:
    """Print the one line for ``error`` on stderr; return the exit status."""
    leaf = decisive(error)
    if isinstance(leaf, KeyboardInterrupt):
        line, status = "interrupted", INTERRUPTED
    elif isinstance(leaf, MeshdError):
        line, status = leaf.one_line(), leaf.exit_status
    elif isinstance(leaf, OSError):
        line, status = from_os_error(leaf)
    elif isinstance(leaf, UnicodeEncodeError) and "surrogate" in leaf.reason:
        # Bytes that are no UTF-8 in an argument (a name, a reason, an address), which
        # Python hands over as surrogates: a user's input, not our bug.
        line = "an argument holds bytes that are not UTF-8 text; give names and other text in UTF-8"
        status = COMMAND_LINE
    else:
        # A bug, not a user error: still one line, unless asked for the whole story.
        if os.environ.get("MESHD_DEBUG"):
            raise error
        line = (
            f"internal error ({type(leaf).__name__}: {leaf}); "
            "rerun with MESHD_DEBUG=1 for details and report it"
        )
        status = INTERNAL
    print(f"meshd: {redact(' '.join(line.split()))}", file=sys.stderr)
    return status
