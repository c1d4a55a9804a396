"""Removing every trace of a lab run by its run id: processes, namespaces, links, files.

:func:`destroy_run` is what ``Lab.close()`` ends with and what ``python -m meshd.lab down``
runs: the run id names everything a lab makes (meshd.lab.naming), so it works from any
process, for a lab whose owner crashed too. It never raises; what it cannot remove it logs
and returns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from meshd.lab import naming
from meshd.lab.commands import LabError, attempt, list_links, list_netns, netns_pids
from meshd.lab.state import lab_dir

log = logging.getLogger("meshd.lab")

WG_SOCKET_DIR = "/var/run/wireguard"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_strays(run_id: str, namespaces: Sequence[str], timeout: float) -> list[str]:
    """Stop processes left inside this run's namespaces (e.g. ones that daemonised)."""
    strays: list[int] = []
    for netns in namespaces:
        try:
            found = netns_pids(netns)
        except LabError as exc:
            log.warning("lab %s: %s", run_id, exc)
            continue
        for pid in found:
            log.warning("lab %s: stopping pid %d left in %s", run_id, pid, netns)
        strays += found
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while strays and time.monotonic() < deadline:
            strays = [pid for pid in strays if _pid_alive(pid)]
            if strays:
                time.sleep(0.02)
    return [f"process {pid}" for pid in strays]


def destroy_run(run_id: str, *, extra_wg_names: Sequence[str] | set[str] = ()) -> list[str]:
    """Remove every trace of a lab run, found by its run id; never raises.

    Works from any process (``python -m meshd.lab down RUNID``): the run id names all of it.
    Returns (and logs) what could not be removed.
    """
    naming.check_run_id(run_id)
    left: list[str] = []
    try:
        prefix = naming.netns_prefix(run_id)
        namespaces = [name for name in list_netns() if name.startswith(prefix)]
        left += _stop_strays(run_id, namespaces, 2.0)
        for netns in namespaces:
            if not attempt(["ip", "netns", "del", netns]):
                left.append(f"namespace {netns}")
        for ifname in list_links():
            if naming.owns_ifname(run_id, ifname) and not attempt(["ip", "link", "del", ifname]):
                left.append(f"interface {ifname}")
    except Exception as exc:  # teardown goes on whatever happens
        log.exception("lab %s: cleanup of namespaces failed", run_id)
        left.append(f"namespaces of {run_id} ({exc})")
    left += _remove_sockets(run_id, extra_wg_names)
    directory = lab_dir(run_id)
    try:
        shutil.rmtree(directory)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("lab %s: cannot remove %s: %s", run_id, directory, exc)
        left.append(f"directory {directory}")
    if left:
        log.warning("lab %s: could not remove: %s", run_id, ", ".join(left))
    return left


def _remove_sockets(run_id: str, names: Sequence[str] | set[str]) -> list[str]:
    """Remove wireguard-go sockets of this run (a killed wireguard-go leaves its socket)."""
    left = []
    socket_dir = Path(WG_SOCKET_DIR)
    try:
        found = {p.name for p in socket_dir.iterdir() if naming.owns_ifname(run_id, p.name)}
    except FileNotFoundError:
        found = set()
    except OSError as exc:
        log.warning("lab %s: cannot list %s: %s", run_id, socket_dir, exc)
        found = set()
    for name in sorted(found | {f"{n}.sock" for n in names}):
        try:
            (socket_dir / name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("lab %s: cannot remove %s: %s", run_id, socket_dir / name, exc)
            left.append(f"socket {socket_dir / name}")
    return left
