"""The file of the endpoints our WireGuard last saw peers at (:mod:`meshd.mesh.remembered`).

``wg-endpoints`` in the state dir, mode 0600, replaced whole (written beside it, then
renamed), never followed through a symbolic link. It is a hint for the next start: a file
that is missing or unreadable gives nothing (logged at DEBUG), damaged lines are refused
(how many logged at WARNING, once per file, and the file written anew without them), and
the start goes on with the rest. Anything
there that is not a regular file (a FIFO, whose opening would wait for a writer, a device,
a directory) is opened without waiting, refused and logged at WARNING, once per file.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import stat
from pathlib import Path
from typing import Final

from meshd.mesh.paths import Path as PeerPath
from meshd.mesh.remembered import MAX_FILE, MAX_KEPT, decode_kept_untrusted, encode_kept

log = logging.getLogger(__name__)

FILENAME: Final = "wg-endpoints"
# O_NONBLOCK: opening a FIFO for reading would wait for a writer (a start that hangs).
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

# The files already warned about (device, inode, mtime, size): the daemon reads the file
# twice at start-up (the first round from the store, then the punching service).
_warned: set[tuple[int, int, int, int]] = set()


def _warn_once(st: os.stat_result, message: str, *args: object) -> None:
    identity = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    if identity not in _warned:
        _warned.add(identity)
        log.warning(message, *args)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return f"not a regular file (mode {mode:o})"


def load(root: Path, overlay: ipaddress.IPv6Network | None) -> dict[bytes, str]:
    """The kept endpoints by WireGuard key; empty if there is no usable file."""
    path = root / FILENAME
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        log.debug("no kept WireGuard endpoints (%s)", exc)
        return {}
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            _warn_once(
                st,
                "%s is %s, not a regular file: ignored, starting without kept WireGuard "
                "endpoints; remove it (the daemon writes it anew)",
                path,
                _kind(st.st_mode),
            )
            return {}
        data = os.read(fd, MAX_FILE)
    except OSError as exc:
        log.debug("kept WireGuard endpoints unreadable (%s)", exc)
        return {}
    finally:
        os.close(fd)
    kept = decode_kept_untrusted(data, overlay)
    if kept.refused:
        _warn_once(
            st,
            "%s: %d line%s refused (malformed, a key named twice, an endpoint no peer can be "
            "at, or past %d peers); %d kept endpoint%s used, the file is written anew "
            "without them",
            path,
            kept.refused,
            "" if kept.refused == 1 else "s",
            MAX_KEPT,
            len(kept),
            "" if len(kept) == 1 else "s",
        )
        # At once: written only when what is kept changes, a damaged line stayed (and was
        # warned about at every start) for as long as the peers' mappings held.
        save(root, encode_kept(kept))
    return dict(kept)


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
