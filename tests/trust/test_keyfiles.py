"""Secret key files: private on creation, refused when exposed or malformed, never replaced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from meshd.errors import KeyFileError
from meshd.trust.keyfiles import read_secret, write_secret


def test_written_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "node.key"
    write_secret(path, bytes(range(32)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_secret(path) == bytes(range(32))
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def test_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_secret(path, bytes(32))
    with pytest.raises(KeyFileError):
        write_secret(path, bytes(range(32)))
    assert read_secret(path) == bytes(32)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_exposed_key_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    write_secret(path, bytes(32))
    os.chmod(path, mode)
    with pytest.raises(KeyFileError) as info:
        read_secret(path)
    assert f"chmod 600 {path}" in info.value.one_line()


@pytest.mark.parametrize(
    "content", [b"", b"not base64!\n", b"AAAA\n", b"\x00\xff" * 40, b"A" * 200]
)
def test_malformed_key_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "node.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(KeyFileError) as info:
        read_secret(path)
    line = info.value.one_line()
    assert str(path) in line
    assert "restore it from a backup of the state dir" in line  # and what to do


def test_a_key_file_of_the_wrong_size_says_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    for content, held in ((b"\n", "nothing"), (b"AAAA\n", "3 bytes")):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, content)
        os.close(fd)
        with pytest.raises(
            KeyFileError, match=f"does not hold a 32-byte key \\(it holds {held}\\)"
        ):
            read_secret(path)


def test_symlink_and_missing_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "real.key"
    write_secret(target, bytes(32))
    link = tmp_path / "node.key"
    link.symlink_to(target)
    with pytest.raises(KeyFileError):
        read_secret(link)
    with pytest.raises(KeyFileError):
        read_secret(tmp_path / "absent.key")
