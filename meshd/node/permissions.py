"""Refusing a state dir or key file that others can read or change, as ssh does.

A state dir holds this node's secret keys: it must belong to the user meshd runs as, and
neither group nor others may write to it, nor others enter it (0700, or 0750 for a group
that uses the control socket). A key file must belong to that user too (its mode is checked
by :func:`meshd.trust.keyfiles.read_secret`). Nothing is repaired silently: the error names the
command that fixes it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from meshd.errors import NotPermitted, UnsafePermissions

UNSAFE_DIR_BITS = 0o027
"""Group write, and anything for others."""


def check_owner(path: Path, info: os.stat_result, what: str) -> None:
    """Refuse ``path`` unless the user we run as owns it."""
    uid = os.geteuid()
    if info.st_uid != uid:
        raise UnsafePermissions(
            f"{what} {path} belongs to uid {info.st_uid}, not to this user (uid {uid})",
            hint=f"run meshd as its owner, or: chown -R {uid} {path}",
        )


def check_private_dir(path: Path) -> None:
    """Refuse a state dir that is not ours or that others may enter or group may write."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        return
    check_owner(path, info, "the state dir")
    mode = stat.S_IMODE(info.st_mode)
    if mode & UNSAFE_DIR_BITS:
        raise UnsafePermissions(
            f"the state dir {path} is open to others (mode {mode:04o})",
            hint=f"run: chmod 700 {path}",
        )


def state_dir_error(root: Path, exc: OSError) -> NotPermitted:
    """The one-line error for a state dir that cannot be created or written."""
    if exc.errno == errno.EROFS:
        return NotPermitted(
            f"the state dir {root} is on a read-only file system",
            hint="use a --state-dir on a writable file system",
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NotPermitted(
            f"the file system of the state dir {root} is full",
            hint="free space there, or use a --state-dir on another file system",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return NotPermitted(
            f"no permission to write in the state dir {root}",
            hint="run as root, or as the user that owns it, or use another --state-dir",
        )
    return NotPermitted(
        f"cannot write in the state dir {root}: {exc.strerror or exc}",
        hint="check the disk and the path, or use another --state-dir",
    )
