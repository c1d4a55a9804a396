"""The benchmarks' synthetic stores (benchmarks/synthetic_store.py): the members it builds
all stand, certified by the root or joined under invites, and the daemon's load sees them."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.memory import median_run, per_member
from benchmarks.synthetic_store import INVITE_USES, build_store
from meshd.membership import Membership
from meshd.node.statedir import NodeDir
from meshd.records import Kind


@pytest.mark.parametrize("joined", ["certified", "invited"])
def test_a_synthetic_store_holds_that_many_standing_members(tmp_path: Path, joined: str) -> None:
    members = INVITE_USES + 5  # two invites' worth when invited
    build_store(tmp_path / "n", members, joined=joined)
    node = NodeDir.open(tmp_path / "n")
    try:
        state = Membership(node.anchor)
        now = int(time.time())
        node.store.load_into(state, now)
        assert len(state.members(now)) == members
        admissions = sum(1 for _ in node.store.rows([Kind.ADMISSION]))
        assert admissions == (members - 1 if joined == "invited" else 0)
    finally:
        node.store.close()


def _sqlite_memory_used() -> int:
    """What SQLite has allocated in this process (its own counter; every connection's page
    cache is in it)."""
    lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


def test_loading_a_store_leaves_no_copy_of_it_in_sqlite_memory(tmp_path: Path) -> None:
    # The daemon holds every record decoded: SQLite's page cache filled by the load at
    # start-up (up to 2 MB by default, ~0.8 KiB a member at 1,000) was a second copy in RSS.
    build_store(tmp_path / "n", 2000)
    size = sum(p.stat().st_size for p in (tmp_path / "n").rglob("*.db*"))
    assert size > 1024 * 1024  # the default cache would have held more than a MiB of it
    before = _sqlite_memory_used()
    node = NodeDir.open(tmp_path / "n")
    try:
        state = Membership(node.anchor)
        node.store.load_into(state, int(time.time()))
        assert len(state.members(int(time.time()))) == 2000
        held = _sqlite_memory_used() - before
    finally:
        node.store.close()
    # Nor the pages the load read into the 128 KiB it is left (~125 KiB of them, whatever
    # the size): given back once the load is done.
    assert held < 64 * 1024, f"SQLite holds {held} bytes after the load"


def test_repeated_runs_keep_the_one_of_median_rss() -> None:
    runs = [
        {"members": 1000, "rss_mib": 66.0, "run": 0},
        {"members": 1000, "rss_mib": 65.2, "run": 1},
        {"members": 1000, "rss_mib": 65.6, "run": 2},
    ]
    chosen = median_run(runs)
    assert chosen["run"] == 2
    assert chosen["rss_runs_mib"] == [66.0, 65.2, 65.6]
    assert median_run(runs[:2])["run"] == 1  # of two, the lower
    assert "rss_runs_mib" not in median_run(runs[:1])
    sizes = [median_run([{"members": 1, "rss_mib": 62.0}]), chosen]
    per_member(sizes)
    assert sizes[1]["per_member_kib"] == round(3.6 * 1024 / 999, 2)


def test_a_load_holds_no_object_per_row_beside_the_records_it_makes(tmp_path: Path) -> None:
    # What a load holds for a moment and frees is left as holes in Python's pools: every
    # row's id was an object in a list, and every kept record's id one in a set, for the
    # whole load, and every decoded certificate to its end (~1,170 bytes a member above
    # what it keeps at 1,000; ~885 with the ids packed; ~540 with each record let go once
    # merged; ~560 with the records' bytes kept elided; ~490 with each row read, decoded and
    # merged in turn, and what is stored naming the bytes' holder, not a copy of them; ~420
    # with the announcements read and merged in turn once the rest is judged, not all held
    # decoded until then; ~120 with no record handed back to be stored, the rows being the
    # store's own: one named tuple, and the id it names, a record).
    import gc
    import tracemalloc

    build_store(tmp_path / "n", 1000)
    node = NodeDir.open(tmp_path / "n")
    try:
        state = Membership(node.anchor)
        gc.collect()
        tracemalloc.start()
        try:
            node.store.load_into(state, int(time.time()))
            gc.collect()
            held, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(state.members(int(time.time()))) == 1000
    finally:
        node.store.close()
    assert (peak - held) / 1000 < 200


def test_the_blocks_summary_finds_the_starts_peak_and_when() -> None:
    from benchmarks.measured_daemon import blocks_summary

    spawned = 1000.0
    rows = [[spawned + i * 0.005, 100 + (500 if 200 <= i < 300 else i // 100)] for i in range(600)]
    summary = blocks_summary(rows, spawned, up=spawned + 0.5)
    assert summary["peak"] == 600
    assert summary["peak_after_spawn_s"] == 1.0
    assert summary["at_up"] == 101  # the first count at or after `meshd up`
    assert summary["last"] == 105
    assert [t for t, _ in summary["series"]][:3] == [0.0, 0.25, 0.5]
    assert summary["steady"] == 104  # the median once up
    assert summary["tops_once_up"][0] == {
        "after_spawn_s": 1.0,
        "blocks": 600,
        "above_steady": 496,
        "running": "",
    }


def test_the_blocks_summary_names_what_ran_at_the_highest_moments_once_up() -> None:
    from benchmarks.measured_daemon import blocks_summary

    spawned = 1000.0
    rows: list[list[object]] = []
    for i in range(800):  # 4 s: up at 0.5 s; a read at 1.5 s, a round at 3 s (higher)
        n = 100 + (300 if 300 <= i < 320 else 0) + (500 if 600 <= i < 610 else 0)
        running = (
            "wg/uapi.py:179" if 300 <= i < 320 else "daemon/wireguard.py:298" * (600 <= i < 610)
        )
        rows.append([spawned + i * 0.005, n, running])
    tops = blocks_summary(rows, spawned, up=spawned + 0.5, tops=2)["tops_once_up"]
    assert tops == [
        {"after_spawn_s": 1.5, "blocks": 400, "above_steady": 300, "running": "wg/uapi.py:179"},
        {
            "after_spawn_s": 3.0,
            "blocks": 600,
            "above_steady": 500,
            "running": "daemon/wireguard.py:298",
        },
    ]


def test_counting_the_blocks_adds_none_a_count(tmp_path: Path) -> None:
    """The daemon's block counter (--blocks) keeps its counts in arrays: it kept a row of
    three objects a count, and the count it measured grew by ~600 blocks a second at 5 ms
    (at 1 ms, ~3,000), which made the last moments of a run its highest. An interpreter
    that allocates nothing else, counted every millisecond for 0.4 s, counts the same
    blocks from its first count to its last, within what its own start leaves."""
    from benchmarks.measured_daemon import SITECUSTOMIZE

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = tmp_path / "blocks"
    env = dict(os.environ, PYTHONPATH=str(site), MESHD_MEMORY_BLOCKS=f"{out},0.4,0.001")
    script = f"import os, time\nwhile not os.path.exists({str(out)!r}): time.sleep(0.01)\n"
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=30)
    rows = json.loads(out.read_text())
    assert len(rows) > 100  # ~1 ms apart (sleep's own rounding aside)
    settled = [n for t, n, _ in rows if t >= rows[0][0] + 0.1]
    assert max(settled) - min(settled) < 50


def test_the_start_up_steps_benchmark_runs_on_this_tree(tmp_path: Path) -> None:
    """benchmarks.startup_steps runs its script in a fresh interpreter of each tree: it
    failed on every tree once a function it calls took one more argument, and nothing ran it.
    Twenty members, this tree alone: the steps it times, the operations it plans."""
    from benchmarks.startup_steps import ROOT, run_steps

    build_store(tmp_path / "store", 20)
    row = run_steps(ROOT, tmp_path / "store")
    assert row["operations"] == 19  # every member but this node: one peer each
    assert set(row["steps"]) >= {"load_tick_snapshot", "desired", "plan", "uapi_text", "total"}
    assert all(seconds >= 0 for seconds in row["steps"].values())


def test_a_load_keeps_nothing_it_shared_between_the_members_of_an_invite(
    tmp_path: Path,
) -> None:
    # Members under invites of one use each (what `meshd invite` makes): the tables that
    # share an invite's decoded certificate, its checked mark, and its members' issuers
    # and terms between the members of the invite kept an entry a member once the load had
    # ended, for no other member to share (~0.19 KiB a member at 1,000: 2,119 against
    # 1,925 bytes held a member).
    import gc
    import tracemalloc

    import meshd.records.decode as decode_module

    members = 300
    build_store(tmp_path / "n", members, joined="single-use")
    node = NodeDir.open(tmp_path / "n")
    try:
        state = Membership(node.anchor)
        decode_module._INVITES.clear()
        gc.collect()
        tracemalloc.start()
        try:
            node.store.load_into(state, int(time.time()))
            gc.collect()
            held = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert len(state.members(int(time.time()))) == members
        verifier = state.verifier
        assert not decode_module._INVITES
        assert not verifier._invites
        assert not verifier._terms._kept
        assert not verifier._issuers._kept
    finally:
        node.store.close()
    assert held / members < 1965  # 2,039 before, 1,894 after, at 300
