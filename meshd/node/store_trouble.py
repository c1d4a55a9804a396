"""What to tell a user whose store SQLite refused to open or write (the rule pure; the look
at the file system a thin shell).

SQLite's words alone mislead: a store on a full disk does not open with "database or disk is
full" but with "disk I/O error" (the WAL's shared-memory file cannot be made), and the hint
given for every failed open was to check permissions "or move the damaged file away", which
would have a user set aside a sound store, and with it the records a node keeps. So the hint
is chosen from what SQLite said and from the file system that holds the store
(:func:`disk_of`): full (or out of inodes), read-only, not writable by us, the store itself
damaged (SQLite says so in its own words), another program holding it; else the disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, NamedTuple

from meshd.errors import StoreError, StoreNotWritable

FULL_BELOW: Final = 64 * 1024
"""Bytes free under which the file system counts as full: SQLite needs its WAL's 32 KiB
shared-memory file and a page or more of log to open and write."""

_DAMAGED: Final = ("not a database", "malformed", "corrupt")
_NOT_WRITABLE: Final = ("make ", "free space", "let the user")  # the hints that say so
_HELD: Final = ("locked", "busy")


class Disk(NamedTuple):
    """What the file system holding a directory allows now."""

    free_bytes: int  # for the user meshd runs as
    free_inodes: int
    read_only: bool
    writable: bool  # by the user meshd runs as
    unwritable_file: Path | None = None
    """A file of the store (the database, its WAL or shared-memory file) that is there and
    that the user meshd runs as may not write, in a directory it may write."""


STORE_SIDE_FILES: Final = ("-wal", "-shm")
"""What SQLite keeps beside a store in WAL mode: the store's name with these after it."""


def disk_of(directory: Path, store: Path | None = None) -> Disk | None:
    """The file system holding ``directory`` as it is now, or None if it cannot be looked at;
    with ``store``, the first of its files that is there and not writable by us."""
    try:
        info = os.statvfs(directory)
        writable = os.access(directory, os.W_OK)
    except OSError:
        return None
    disk = disk_from(info, writable=writable, privileged=os.geteuid() == 0)
    if store is None:
        return disk
    for path in (store, *(store.with_name(store.name + end) for end in STORE_SIDE_FILES)):
        if path.exists() and not os.access(path, os.W_OK):
            return disk._replace(unwritable_file=path)
    return disk


def disk_from(info: os.statvfs_result, *, writable: bool, privileged: bool) -> Disk:
    """What ``info`` (statvfs) leaves to a user that may (``privileged``: root, as meshd
    runs under systemd) or may not write into the blocks and inodes a file system keeps for
    root (ext4 keeps 5 %): a disk full for users is not full for root, and SQLite refusing
    root there is not for want of space."""
    blocks, inodes = (info.f_bfree, info.f_ffree) if privileged else (info.f_bavail, info.f_favail)
    return Disk(
        free_bytes=blocks * info.f_frsize,
        free_inodes=inodes,
        read_only=bool(info.f_flag & os.ST_RDONLY),
        writable=writable,
    )


def store_error(
    message: str, said: str, directory: Path, disk: Disk | None, opening: bool
) -> StoreError:
    """The error for a store SQLite refused (:func:`store_hint`): a :class:`StoreNotWritable`
    (exit status 5) where its file system is full or read-only or not ours to write."""
    hint = store_hint(said, directory, disk, opening)
    cls = StoreNotWritable if hint.startswith(_NOT_WRITABLE) else StoreError
    return cls(message, hint=hint)


def store_hint(said: str, directory: Path, disk: Disk | None, opening: bool) -> str:
    """What to do about a store in ``directory`` that SQLite refused to open (``opening``) or
    to write, having said ``said``, on a file system that is ``disk`` now."""
    words = said.lower()
    if any(word in words for word in _HELD):
        return "another program holds the store: stop it, or wait and try again"
    if disk is not None and not disk.read_only and disk.unwritable_file is not None:
        return (
            f"let the user meshd runs as write {disk.unwritable_file} "
            "(`chmod u+w`, or run meshd as its owner)"
        )
    if (disk is not None and disk.read_only) or "readonly" in words or "read-only" in words:
        return f"make {directory} writable (its file system may be mounted read-only)"
    full = disk is not None and (disk.free_bytes < FULL_BELOW or disk.free_inodes == 0)
    if full or "full" in words:
        free = f" ({_free_text(disk)} free)" if full and disk is not None else ""
        return f"free space on the file system of {directory}{free}; the store is not damaged"
    if disk is not None and not disk.writable:
        return f"let the user meshd runs as write in {directory} (or run meshd as its owner)"
    if opening and any(word in words for word in _DAMAGED):
        return (
            "the store file is damaged: keep a copy of it, then restore the state dir from a "
            "backup, or make this machine a node again in a new state dir (`meshd join`)"
        )
    if opening:
        return f"check the disk of {directory} (the kernel's log says more) and its permissions"
    return "check the state dir's disk and permissions"


def _free_text(disk: Disk) -> str:
    if disk.free_inodes == 0 and disk.free_bytes >= FULL_BELOW:
        return "no inode"
    return f"{disk.free_bytes // 1024} KiB"
