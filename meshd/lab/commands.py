"""Running the tools a lab is built with (``ip``, ``sysctl``, ``nft``...) as subprocesses."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence

from meshd.errors import MeshdError

log = logging.getLogger("meshd.lab")

#: No single ``ip`` or ``nft`` call should take anywhere near this long.
COMMAND_TIMEOUT = 20.0


class LabError(MeshdError):
    """The lab could not be built or changed as asked."""


def run(argv: Sequence[str], *, input: str | None = None) -> str:
    """Run a command to completion and return its standard output; raise ``LabError``."""
    try:
        done = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]} is not installed", hint="see docs/lab.md") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv)} took more than {COMMAND_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        detail = done.stderr.strip() or f"exit status {done.returncode}"
        raise LabError(f"{' '.join(argv)}: {detail}")
    return done.stdout


def attempt(argv: Sequence[str], *, input: str | None = None) -> bool:
    """Run a command for cleanup: log a failure instead of raising it."""
    try:
        run(argv, input=input)
    except LabError as exc:
        log.warning("lab cleanup: %s", exc)
        return False
    return True


def ip(*args: str, netns: str | None = None) -> str:
    """``ip [-n NETNS] ARGS...``."""
    return run(["ip", *(["-n", netns] if netns else []), *args])


def ip_batch(lines: Sequence[str], *, netns: str | None = None) -> None:
    """Several ``ip`` commands in one process (``ip -batch -``); stops at the first error."""
    run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], input="\n".join(lines) + "\n")


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside a named network namespace.

    ``ip netns exec`` execs the command after entering the namespace, so the PID of the
    process it starts is the command's own.
    """
    return ["ip", "netns", "exec", netns, *argv]


def sysctl(netns: str, settings: dict[str, str]) -> None:
    """Set kernel parameters inside a namespace (``net.*`` ones are per namespace)."""
    run(in_netns(netns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())]))


def list_netns() -> list[str]:
    """The named network namespaces (``ip netns list`` prints ``NAME [(id: N)]``)."""
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def list_links(netns: str | None = None) -> list[str]:
    """Interface names in a namespace (None: ours), without the ``@peer`` suffix."""
    names = []
    for line in ip("-o", "link", "show", netns=netns).splitlines():
        # "7: mlab12h1@if6: <BROADCAST,...> ..."
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


def netns_pids(netns: str) -> list[int]:
    """The PIDs of the processes that live in a named namespace."""
    return [int(pid) for pid in ip("netns", "pids", netns).split()]
