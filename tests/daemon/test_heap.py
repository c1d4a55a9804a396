"""The daemon's C heap gives back what large buffers leave behind (meshd.daemon.heap)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from meshd.daemon.heap import _on_glibc

pytestmark = pytest.mark.skipif(not _on_glibc(), reason="glibc's malloc only")

# A large buffer comes and goes (the store's rows at start-up), then a round's large buffers
# come and go between small blocks that live on: how much RSS stays behind, in KiB.
PROBE = textwrap.dedent(
    """
    import sys

    def rss_kib():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

    if sys.argv[1] == "lean":
        from meshd.daemon.heap import keep_heap_lean

        print(",".join(keep_heap_lean()))
    else:
        print("")
    big = bytes(4 << 20)
    del big
    base = rss_kib()
    kept, buffers = [], []
    for _ in range(64):
        buffers.append(bytearray(256 << 10))
        kept.append(bytearray(2048))
    del buffers
    print(rss_kib() - base)
    """
)


def probe(mode: str, script: str = PROBE, **env: str) -> tuple[list[str], int]:
    """Run ``script`` (``lean``: after keep_heap_lean) without the caller's malloc settings:
    the names keep_heap_lean set, and the number the script printed."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    out = subprocess.run(
        [sys.executable, "-c", script, mode],
        env={**environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split("\n")
    return [name for name in out[0].split(",") if name], int(out[1])


def test_large_buffers_freed_leave_nothing_in_rss() -> None:
    _, plain = probe("plain")
    assert plain > 8 * 1024  # glibc's own threshold, raised by the first large buffer
    names, lean = probe("lean")
    assert names == ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX"]
    assert lean < 1024, f"{lean} KiB stayed behind"


def test_an_operators_own_setting_wins() -> None:
    names, left = probe("lean", MALLOC_MMAP_THRESHOLD_="33554432")
    assert names == ["MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX"]
    assert left > 8 * 1024  # their threshold, not ours
    names, _ = probe("lean", GLIBC_TUNABLES="glibc.malloc.trim_threshold=1048576")
    assert names == ["MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX"]
    names, arenas = probe("lean", ARENAS, MALLOC_ARENA_MAX="4")
    assert "MALLOC_ARENA_MAX" not in names
    assert arenas > 1


# Threads that allocate (the daemon's workers): how many malloc arenas (heaps) glibc made.
ARENAS = textwrap.dedent(
    """
    import ctypes, os, sys, tempfile, threading

    if sys.argv[1] == "lean":
        from meshd.daemon.heap import keep_heap_lean

        print(",".join(keep_heap_lean()))
    else:
        print("")
    held = []
    barrier = threading.Barrier(4)

    def work():
        barrier.wait()
        held.append([bytearray(4096) for _ in range(64)])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    path = os.path.join(tempfile.mkdtemp(), "info.xml")
    stream = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(open(path).read().count("<heap nr="))
    """
)


def test_worker_threads_allocate_in_the_one_heap() -> None:
    _, plain = probe("plain", ARENAS)
    assert plain > 1  # an arena for each thread that allocated
    names, lean = probe("lean", ARENAS)
    assert "MALLOC_ARENA_MAX" in names
    assert lean == 1


class _Stop(Exception):
    pass


def test_the_daemon_starts_lean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from meshd.daemon import heap, reexec
    from meshd.node.statedir import NodeDir

    calls: list[str] = []

    def opened(path: Path) -> NodeDir:
        calls.append("state dir")
        raise _Stop

    def lean() -> list[str]:
        calls.append("heap")
        return []

    monkeypatch.setattr(heap, "keep_heap_lean", lean)
    monkeypatch.setattr(NodeDir, "open", staticmethod(opened))
    with pytest.raises(_Stop):
        reexec.run_daemon(SimpleNamespace(state_dir=tmp_path))  # type: ignore[arg-type]
    assert calls == ["heap", "state dir"]
