"""Secret key files: written 0600 atomically, refused when others can read them.

A key file holds one 32-byte key as standard base64 and a newline, the format ``wg genkey``
writes, so WireGuard's own tools read meshd's WireGuard key as it is.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from meshd.errors import KeyFileError, UnsafePermissions
from meshd.node.permissions import check_owner

KEY_LEN = 32


def write_secret(path: Path, secret: bytes) -> None:
    """Write a secret key file with mode 0600; never replaces an existing key."""
    if len(secret) != KEY_LEN:
        raise ValueError("a key is 32 bytes")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, base64.b64encode(secret) + b"\n")
        os.fsync(fd)
    except BaseException:  # a full disk, Ctrl-C: no half-written file left behind
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.link(tmp, path)  # fails if the key exists: a key is never silently replaced
    except FileExistsError:
        raise KeyFileError(
            f"{path} already exists", hint="move it away first if you mean to replace it"
        ) from None
    finally:
        tmp.unlink()


def replace_secret(path: Path, secret: bytes) -> None:
    """Replace a secret key file atomically: a 0600 temporary file, fsynced, renamed over
    it, then the directory fsynced. A reader sees the old key or the new one, never a part."""
    if len(secret) != KEY_LEN:
        raise ValueError("a key is 32 bytes")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, base64.b64encode(secret) + b"\n")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink()
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_secret(path: Path) -> bytes:
    """Read a secret key file, refusing one that is group- or world-accessible."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise KeyFileError(
            f"the key file {path} does not exist",
            hint="check the --state-dir (or the path given), or restore the file from a backup",
        ) from None
    except PermissionError:
        raise UnsafePermissions(
            f"no permission to read the key file {path}",
            hint=f"run meshd as its owner (or root), or: chmod 600 {path}",
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot open the key file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path} is not a regular file")
        check_owner(path, info, "the key file")
        if info.st_mode & 0o077:
            raise UnsafePermissions(
                f"the key file {path} is readable by others "
                f"(mode {stat.S_IMODE(info.st_mode):04o})",
                hint=f"run: chmod 600 {path}",
            )
        data = os.read(fd, 256)
    finally:
        os.close(fd)
    return decode_secret(data, path)


#: What to do about a key file that is damaged: a key cannot be made again under the same
#: identity, so it comes back from a backup (or the node starts afresh).
_DAMAGED = "restore it from a backup of the state dir (a key cannot be made again as it was)"


def decode_secret(data: bytes, path: Path) -> bytes:
    try:
        secret = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(
            f"the key file {path} does not hold a base64 key", hint=_DAMAGED
        ) from None
    if len(secret) != KEY_LEN:
        held = "nothing" if not data.strip() else f"{len(secret)} bytes"
        raise KeyFileError(
            f"the key file {path} does not hold a 32-byte key (it holds {held})", hint=_DAMAGED
        )
    return secret
