"""The file of the endpoints our WireGuard last saw peers at (:mod:`meshd.mesh.remembered`).

``wg-endpoints`` in the state dir, mode 0600, replaced whole (written beside it, then
renamed), never followed through a symbolic link. It is a hint for the next start: a file
that is missing, unreadable or damaged gives nothing (logged at DEBUG), and the start goes
on as without it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from pathlib import Path
from typing import Final

from meshd.mesh.paths import Path as PeerPath
from meshd.mesh.remembered import MAX_FILE, decode_kept_untrusted

log = logging.getLogger(__name__)

FILENAME: Final = "wg-endpoints"


def load(root: Path, overlay: ipaddress.IPv6Network | None) -> dict[bytes, str]:
    """The kept endpoints by WireGuard key; empty if there is no usable file."""
    try:
        fd = os.open(root / FILENAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        log.debug("no kept WireGuard endpoints (%s)", exc)
        return {}
    try:
        data = os.read(fd, MAX_FILE)
    except OSError as exc:
        log.debug("kept WireGuard endpoints unreadable (%s)", exc)
        return {}
    finally:
        os.close(fd)
    return decode_kept_untrusted(data, overlay)


def save(root: Path, data: bytes) -> None:
    """Replace the file with ``data`` (mode 0600); a failure is logged, never raised."""
    path = root / FILENAME
    tmp = root / f".{FILENAME}.{os.getpid()}.new"
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not keep WireGuard endpoints in %s: %s", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink()


def first_paths(
    root: Path, overlay: ipaddress.IPv6Network | None, keepalive: int | None
) -> dict[bytes, PeerPath]:
    """The kept endpoints as the reconcile loop's per-peer paths, for the first round from
    the store (before the punching service runs)."""
    return {key: (endpoint, keepalive, None) for key, endpoint in load(root, overlay).items()}
