"""A store SQLite refuses: the hint follows the file system, not SQLite's words alone.

On a full disk a store does not open with "disk is full" but with "disk I/O error", and the
hint was to check permissions "or move the damaged file away": a user would have set a sound
store aside. The rule is pure (:func:`store_hint`); the tests as root fill a real file system
(a tmpfs of their own, unmounted at the end) and run the commands a user would."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.errors import StoreError
from meshd.node.store import Store
from meshd.node.store_trouble import FULL_BELOW, Disk, disk_from, disk_of, store_hint
from tests.daemon.support import meshd

ROOMY = Disk(free_bytes=10 * 2**30, free_inodes=100_000, read_only=False, writable=True)
HERE = Path("/srv/meshd")
DAMAGED = (
    "the store file is damaged: keep a copy of it, then restore the state dir from a backup, "
    "or make this machine a node again in a new state dir (`meshd join`)"
)


@pytest.mark.parametrize(
    ("said", "disk", "opening", "hint"),
    [
        # A full disk: SQLite says "disk I/O error" at the open; the file system says why.
        (
            "disk I/O error",
            ROOMY._replace(free_bytes=0),
            True,
            "free space on the file system of /srv/meshd (0 KiB free); the store is not damaged",
        ),
        (
            "disk I/O error",
            ROOMY._replace(free_inodes=0),
            True,
            "free space on the file system of /srv/meshd (no inode free); the store is not damaged",
        ),
        (
            "database or disk is full",
            ROOMY._replace(free_bytes=FULL_BELOW - 1),
            False,
            "free space on the file system of /srv/meshd (63 KiB free); the store is not damaged",
        ),
        # SQLite full while the disk is not (its own page limit): no figure that misleads.
        (
            "database or disk is full",
            ROOMY,
            False,
            "free space on the file system of /srv/meshd; the store is not damaged",
        ),
        (
            "database or disk is full",
            None,
            False,
            "free space on the file system of /srv/meshd; the store is not damaged",
        ),
        (
            "unable to open database file",
            ROOMY._replace(read_only=True),
            True,
            "make /srv/meshd writable (its file system may be mounted read-only)",
        ),
        (
            "attempt to write a readonly database",
            ROOMY,
            False,
            "make /srv/meshd writable (its file system may be mounted read-only)",
        ),
        (
            "unable to open database file",
            ROOMY._replace(writable=False),
            True,
            "let the user meshd runs as write in /srv/meshd (or run meshd as its owner)",
        ),
        # The store file read-only in a directory we may write: the file, not the directory
        # (the hint was "make /srv/meshd writable", which it was).
        (
            "attempt to write a readonly database",
            ROOMY._replace(unwritable_file=HERE / "meshd.db"),
            False,
            "let the user meshd runs as write /srv/meshd/meshd.db (`chmod u+w`, or run meshd "
            "as its owner)",
        ),
        (
            "attempt to write a readonly database",
            ROOMY._replace(read_only=True, unwritable_file=HERE / "meshd.db"),
            False,
            "make /srv/meshd writable (its file system may be mounted read-only)",
        ),
        ("file is not a database", ROOMY, True, DAMAGED),
        (
            "database disk image is malformed",
            ROOMY,
            True,
            DAMAGED,
        ),
        (
            "database is locked",
            ROOMY._replace(free_bytes=0),
            False,
            "another program holds the store: stop it, or wait and try again",
        ),
        (
            "disk I/O error",
            ROOMY,
            True,
            "check the disk of /srv/meshd (the kernel's log says more) and its permissions",
        ),
        ("disk I/O error", None, False, "check the state dir's disk and permissions"),
    ],
)
def test_the_hint_follows_the_file_system(
    said: str, disk: Disk | None, opening: bool, hint: str
) -> None:
    assert store_hint(said, HERE, disk, opening) == hint


def test_a_sound_store_is_never_called_damaged_unless_sqlite_says_so() -> None:
    for said in ("disk I/O error", "unable to open database file", "database or disk is full"):
        for disk in (None, ROOMY, ROOMY._replace(free_bytes=0), ROOMY._replace(writable=False)):
            for opening in (True, False):
                assert "damaged:" not in store_hint(said, HERE, disk, opening)


def test_root_counts_the_room_a_file_system_keeps_for_root() -> None:
    # (f_bsize, f_frsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree, f_favail, f_flag,
    # f_namemax): 5 % of the blocks kept for root, all of them left.
    info = os.statvfs_result((4096, 4096, 1000, 50, 0, 100, 10, 0, 0, 255))
    user = disk_from(info, writable=True, privileged=False)
    root = disk_from(info, writable=True, privileged=True)
    assert (user.free_bytes, user.free_inodes) == (0, 0)
    assert (root.free_bytes, root.free_inodes) == (50 * 4096, 10)
    said = "disk I/O error"
    assert store_hint(said, HERE, user, True).startswith("free space on the file system")
    assert store_hint(said, HERE, root, True).startswith("check the disk of /srv/meshd")
    mounted_ro = os.statvfs_result((4096, 4096, 1000, 50, 0, 100, 10, 0, os.ST_RDONLY, 255))
    assert disk_from(mounted_ro, writable=False, privileged=True).read_only


def test_the_file_system_is_read_as_it_is(tmp_path: Path) -> None:
    disk = disk_of(tmp_path)
    assert disk is not None
    assert disk.writable
    assert not disk.read_only
    assert disk.free_bytes > 0
    assert disk_of(tmp_path / "gone") is None


# --- a real full file system (root: a tmpfs of its own) ---------------------------------------


@contextlib.contextmanager
def small_file_system(where: Path, size: str = "2m") -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("needs root to mount a tmpfs (CI runs as root)")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(mount: Path) -> None:
    with open(mount / "filler", "wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()


def the_line(err: str) -> str:
    """The one line a user reads (``meshd up``'s log lines before it aside)."""
    lines = [line for line in err.splitlines() if line.strip() and not line[:4].isdigit()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.root
def test_a_store_on_a_full_disk_is_said_to_be_on_a_full_disk(tmp_path: Path) -> None:
    with small_file_system(tmp_path / "fs") as mount:
        state = mount / "n"
        state.mkdir()
        Store(state / "meshd.db").close()
        fill(mount)
        with pytest.raises(StoreError) as refused:
            Store(state / "meshd.db")
        assert refused.value.hint.startswith(f"free space on the file system of {state} (")
        assert "damaged:" not in refused.value.hint


@pytest.mark.root
def test_the_commands_on_a_full_disk_say_it_in_one_line(tmp_path: Path) -> None:
    with small_file_system(tmp_path / "fs") as mount:
        node = mount / "n"
        assert meshd("init", "--network", "full", "--state-dir", str(node)).returncode == 0
        fill(mount)
        for argv in (
            ["up", "--wg-backend", "none", "--listen", "/ip4/127.0.0.1/tcp/0"],
            ["invite", "--name", "x"],
        ):
            done = meshd(*argv, "--state-dir", str(node))
            assert done.returncode == 5, done.stderr  # a state dir that cannot be written
            line = the_line(done.stderr)
            assert line.startswith(f"meshd: cannot open the store {node / 'meshd.db'}: "), line
            assert f"free space on the file system of {node} (" in line, line
            assert "damaged:" not in line
        done = meshd("init", "--network", "other", "--state-dir", str(mount / "m"))
        assert done.returncode == 5
        assert the_line(done.stderr) == (
            f"meshd: the file system of the state dir {mount / 'm'} is full; free space there, "
            "or use a --state-dir on another file system"
        )


def test_a_damaged_store_is_said_damaged_with_what_to_do(tmp_path: Path) -> None:
    node = tmp_path / "n"
    assert meshd("init", "--network", "damaged", "--state-dir", str(node)).returncode == 0
    (node / "meshd.db").write_bytes(b"not a database, whatever it was" * 200)
    done = meshd("invite", "--name", "x", "--state-dir", str(node))
    assert done.returncode == 1
    assert the_line(done.stderr) == (
        f"meshd: cannot open the store {node / 'meshd.db'}: file is not a database; {DAMAGED}"
    )


def test_a_store_file_we_may_not_write_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root every mode bit gives way, so the look at the files is made to say no for the
    shared-memory file alone: that file is named, the others pass."""
    store = tmp_path / "meshd.db"
    for name in ("meshd.db", "meshd.db-wal", "meshd.db-shm"):
        (tmp_path / name).write_bytes(b"")
    real = os.access

    def access(path: object, mode: int) -> bool:
        return not str(path).endswith("-shm") and real(path, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    disk = disk_of(tmp_path, store)
    assert disk is not None
    assert disk.unwritable_file == tmp_path / "meshd.db-shm"
    without = disk_of(tmp_path)  # the directory alone: no file looked at
    assert without is not None
    assert without.unwritable_file is None
    (tmp_path / "meshd.db-shm").unlink()
    disk = disk_of(tmp_path, store)
    assert disk is not None
    assert disk.unwritable_file is None
