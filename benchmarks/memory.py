"""Memory and start-up of a real ``meshd up``, and WireGuard programming through the UAPI.

(a) RSS: ``python -c pass`` and a bare trio process (``trio.run(trio.sleep, ...)``) as the
    floor, then a real ``meshd up`` (``python -m meshd up``, a separate process) on a state
    dir of 1 member (idle), 1,000 and 10,000 members. The stores are synthetic but real: the
    root of a network made by ``init_network`` signs every member's certificate
    (``meshd.records.make_certificate``) and each member signs an announcement with an
    endpoint and a listen address (``make_announcement``), merged by the membership core and
    written by the store, as a sync would. The daemon's RSS is read from /proc once it has
    logged ``meshd up`` and ``--settle`` seconds have passed (``VmRSS``; the peak ``VmHWM``
    beside it). Per member: (RSS_N - RSS_idle) / (N - 1).
(b) Start-up: from spawning ``meshd up`` to the daemon's log line saying WireGuard is
    programmed from the store (every member a peer), with the userspace backend
    (wireguard-go) in a network namespace of its own; and to the store loaded.
(c) UAPI (``--uapi``): a wireguard-go in a namespace, 1,000 peers planned
    (:func:`meshd.wg.reconcile.plan`) and programmed in one ``set``, timed with the ``get``
    before it; then one member's endpoint changes and the plan is one operation on that peer.

Needs root and wireguard-go for the userspace backend (``--backend none`` otherwise: no
start-up figure). Every process is stopped by PID and every namespace deleted at the end.

    .venv/bin/python -m benchmarks.memory [--sizes 1000 10000] [--settle 5] [--uapi 1000]
    .venv/bin/python -m benchmarks.memory --sizes 1000 --uapi 0 --trace   # where it goes
    .venv/bin/python -m benchmarks.memory --sizes 10000 --uapi 0 --allocators   # and beyond
    .venv/bin/python -m benchmarks.memory --reference /tmp/ref   # beside another commit
    .venv/bin/python -m benchmarks.memory --repeat 3 --reference /tmp/ref   # median of 3 runs

(d) ``--trace``: the daemons run with tracemalloc on (8 frames; RSS figures then include
    tracemalloc's own overhead, so they are not comparable with a run without it). After
    ``--settle`` s the daemon is sent SIGUSR1 and writes a snapshot of its Python heap; the
    run prints, per member, what each module holds (an allocation counted in the innermost
    frame inside ``meshd/``, ``<- file`` naming the library file that allocated it), the
    idle daemon's subtracted.

(e) ``--reference DIR``: the same daemons run from another checkout too (a clone of an
    earlier commit, its ``.venv`` linked), in the same run, each size right after this
    tree's; its store is built by its own code. Both tables are printed and saved.

(f) ``--allocators``: after ``--settle`` s each daemon is sent SIGUSR1 and writes its
    allocators' own counts (``sys._debugmallocstats``: bytes in Python's blocks handed out,
    free blocks in its pools in use, unused pools in its arenas; ``mallinfo2``: the C heap
    in use, in mmapped chunks, free; its anonymous RSS, and that RSS by mapping from
    ``/proc/self/smaps``: ``anon_heap`` the C heap, ``anon_mappings`` Python's arenas and
    mmapped blocks, ``anon_thread_stacks``, ``anon_stack``, ``anon_files`` written pages of
    mapped files); the run prints their growth a member over the idle daemon: where RSS goes
    beyond the traced heap. Then (RSS read) a full collection: the cyclic garbage it finds,
    the blocks it frees (CPython's free lists with it) and the anonymous RSS after it.

(g) ``--timeline 1 3 5 10 20``: each daemon's RSS and allocators' counts (as ``--allocators``)
    also that many seconds after it logged ``meshd up``: what the start holds for a moment
    (Python's blocks in use) and what it leaves behind once freed (free blocks, unused pools).

(h) ``--blocks 25``: each daemon counts Python's blocks in use (``sys.getallocatedblocks``)
    every 5 ms (``--blocks-every``) for 25 s from its start: the start's peak, when it comes
    (seconds after spawning, beside the log's lines), the count at ``meshd up`` and at the
    end, the median once up. A peak held for a moment is left as free blocks and unused
    pools once it is freed. Once up, the five highest moments are printed with how far
    above the median they go and what the daemon ran then (the main thread's innermost
    meshd frames at that count). The counts are kept in arrays: the counting adds no block
    a count (its RSS does include them, ~24 bytes a count).

Results: printed, and saved to benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.measured_daemon import have_userspace, measure_size, namespace, rss_of
from benchmarks.synthetic_store import commit_of

RESULTS = Path(__file__).parent / "results" / "memory.json"
PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"idle_mib": 64.0, "per_member_kib": 2.0, "startup_10000_s": 2.0, "uapi_1000_s": 1.0}


def peak_of_command(argv: list[str]) -> float:
    """The peak RSS (MiB) of a command that exits by itself."""
    process = subprocess.Popen(argv, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{argv} exited with {process.returncode}")
    return round(usage.ru_maxrss / 1024, 1)


def baselines() -> dict[str, Any]:
    """``python -c pass`` (peak) and a bare trio process sleeping (RSS while it sleeps)."""
    bare = subprocess.Popen([PYTHON, "-c", "import trio; trio.run(trio.sleep, 4)"], cwd=ROOT)
    try:
        time.sleep(2.5)
        trio_rss = rss_of(bare.pid)
    finally:
        bare.wait()
    return {
        "python_c_pass_peak_mib": peak_of_command([PYTHON, "-c", "pass"]),
        "python_import_trio_peak_mib": peak_of_command([PYTHON, "-c", "import trio"]),
        "bare_trio_sleeping": trio_rss,
    }


# --- UAPI ---------------------------------------------------------------------------------------


def uapi_figures(peers: int, tag: str) -> dict[str, Any]:
    """Program ``peers`` peers into a real wireguard-go, then change one member."""
    import ipaddress

    import trio

    from meshd.trust.keys import WgKey, WireGuardKey
    from meshd.wg.backend import InterfaceConfig
    from meshd.wg.backend_userspace import UserspaceBackend
    from meshd.wg.model import PeerConfig, UpdatePeer
    from meshd.wg.reconcile import plan
    from meshd.wg.uapi_request import encode_set_request

    prefix = ipaddress.IPv6Network("fd00:6d65:6d6f::/48")

    def peer(i: int, port: int = 51820) -> PeerConfig:
        key = bytes([i % 251 + 1]) + i.to_bytes(4, "big") + bytes(27)
        return PeerConfig(
            key,
            endpoint=f"198.18.{i >> 8 & 255}.{i & 255}:{port}",
            allowed_ips=(ipaddress.IPv6Network((prefix.network_address + i + 1, 128)),),
            persistent_keepalive=25,
        )

    async def main(netns: str) -> dict[str, Any]:
        config = InterfaceConfig(
            ifname=f"mu{tag}"[:15],
            private_key=WireGuardKey.generate().secret,
            listen_port=0,
            overlay_address=prefix.network_address + 1,
            netns=netns,
        )
        backend = await UserspaceBackend.start(config)
        try:
            desired = {WgKey(p.public_key): p for p in (peer(i) for i in range(peers))}
            started = time.perf_counter()
            actual = await backend.get()
            ops = plan(desired, actual, None)
            planned = time.perf_counter()
            await backend.set(ops)
            programmed = time.perf_counter()
            after = await backend.get()
            read = time.perf_counter()
            if len(after.peers) != peers:
                raise RuntimeError(f"the device holds {len(after.peers)} peers, not {peers}")
            # One member moves: its endpoint changes; nothing else does.
            moved = peer(7, port=51999)
            changed = dict(desired)
            changed[WgKey(moved.public_key)] = moved
            again = time.perf_counter()
            actual = await backend.get()
            one = plan(changed, actual, desired)
            await backend.set(one)
            done = time.perf_counter()
            request = encode_set_request(one)
            touched = [op.public_key for op in one]
            if touched != [moved.public_key] or not isinstance(one[0], UpdatePeer):
                raise RuntimeError(f"one member's change planned {one!r}")
            return {
                "peers": peers,
                "get_and_plan_s": round(planned - started, 4),
                "set_s": round(programmed - planned, 4),
                "program_s": round(programmed - started, 4),
                "set_request_bytes": len(encode_set_request(ops)),
                "get_after_s": round(read - programmed, 4),
                "one_change_ops": len(one),
                "one_change_request_bytes": len(request),
                "one_change_s": round(done - again, 4),
            }
        finally:
            await backend.aclose()

    with namespace(f"meshd-uapi-{tag}") as netns:
        return trio.run(main, netns)


def heap_per_member(idle: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """What each place holds per member over the idle daemon, largest first (>= 8 bytes)."""
    n = row["members"] - 1
    found: dict[str, Any] = {"members": row["members"]}
    found["total"] = round((row["heap"]["total"]["bytes"] - idle["heap"]["total"]["bytes"]) / n)
    for key in ("by_place", "by_line"):
        before, after = idle["heap"][key], row["heap"][key]
        per = {p: (after.get(p, 0) - before.get(p, 0)) / n for p in set(before) | set(after)}
        kept = sorted(((round(v), p) for p, v in per.items() if abs(v) >= 8), reverse=True)
        found[key] = {p: v for v, p in kept[:40]}
    return found


# --- main ---------------------------------------------------------------------------------------


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Of one size's runs (``--repeat``), the one of median RSS (the lower of the two middle
    ones), with every run's RSS beside it: the idle daemon's RSS moves ~0.3 MiB from run to
    run, ~0.3 KiB a member at 1,000."""
    chosen = dict(sorted(runs, key=lambda row: row["rss_mib"])[(len(runs) - 1) // 2])
    if len(runs) > 1:
        chosen["rss_runs_mib"] = [row["rss_mib"] for row in runs]
    return chosen


def per_member(sizes: list[dict[str, Any]]) -> None:
    """Each size's RSS over the idle daemon's (the first row), per member beyond the first."""
    idle = sizes[0]["rss_mib"]
    for row in sizes[1:]:
        row["per_member_kib"] = round((row["rss_mib"] - idle) * 1024 / (row["members"] - 1), 2)
        if "rss_trimmed_mib" in row:
            gained = row["rss_trimmed_mib"] - sizes[0]["rss_trimmed_mib"]
            row["per_member_trimmed_kib"] = round(gained * 1024 / (row["members"] - 1), 2)


def allocators_per_member(idle: dict[str, Any], row: dict[str, Any]) -> dict[str, int]:
    """Each allocator count's growth over the idle daemon's, in bytes a member."""
    n = row["members"] - 1
    before, after = idle["allocators"], row["allocators"]
    return {
        key: round((after[key] - before.get(key, 0)) / n)
        for key in after
        if key not in ("arenas", "garbage_objects", "garbage_blocks", "rss_anon_collected")
    }


def print_moment(tree: str, members: int, moment: dict[str, Any]) -> None:
    """One moment of ``--timeline``: RSS, and where it is, in MiB."""
    counts = moment["allocators"]
    mib = {key: value / 2**20 for key, value in counts.items()}
    print(
        f"{members} members ({tree}), {moment['at']:g} s after up: RSS {moment['rss_mib']:.1f}, "
        f"Python's blocks {mib['allocated_blocks']:.1f} + free {mib['available_blocks']:.1f} "
        f"+ unused pools {mib['unused_pools']:.1f}, C heap {mib['malloc_in_use']:.1f} "
        f"+ mmapped {mib['malloc_mmapped']:.1f} + free {mib['malloc_free']:.1f}"
    )


def print_table(title: str, sizes: list[dict[str, Any]]) -> None:
    print(title)
    print("members   RSS MiB  peak MiB  KiB/member  up s  loaded s  programmed s  trimmed")
    for row in sizes:
        print(
            f"{row['members']:7d}  {row['rss_mib']:8.1f}  {row['peak_mib']:8.1f}  "
            f"{row.get('per_member_kib', 0.0):10.2f}  {row['up_s']:4.2f}  "
            f"{row.get('loaded_s', float('nan')):8.2f}  "
            f"{row.get('programmed_s', float('nan')):12.2f}  "
            f"{row.get('rss_trimmed_mib', float('nan')):.1f} MiB "
            f"{row.get('per_member_trimmed_kib', 0.0):.2f} KiB/member"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--backend", choices=["userspace", "none"], default=None)
    parser.add_argument("--uapi", type=int, default=1000, help="peers to program (0: skip)")
    parser.add_argument("--label", default="", help="a name for this run in the JSON")
    parser.add_argument("--timeout", type=float, default=300.0, help="s until meshd is up")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="daemons run at each size and tree, alternated; the run of median RSS is kept",
    )
    parser.add_argument(
        "--trace", action="store_true", help="tracemalloc in the daemons: the heap per member"
    )
    parser.add_argument(
        "--trim", action="store_true", help="then malloc_trim(0) in the daemon, RSS again"
    )
    parser.add_argument(
        "--timeline",
        type=float,
        nargs="*",
        default=[],
        help="seconds after `meshd up` at which each daemon's RSS and allocators' counts are "
        "also read (what the start holds for a moment and leaves behind)",
    )
    parser.add_argument(
        "--allocators",
        action="store_true",
        help="the daemons' allocators' counts (Python's, the C heap's, RSS) per member: "
        "where RSS goes beyond the heap (not with --trace, whose own allocations would count)",
    )
    parser.add_argument(
        "--joined",
        choices=["certified", "invited", "single-use"],
        default="certified",
        help="members certified by the root, or joined under invites and admitted (a real "
        "network's members): 100 to an invite (invited), or one each (single-use, as `meshd "
        "invite` makes them; a tree from before builds them by its invites' uses set to 1); "
        "a tree from before this option builds certified ones only",
    )
    parser.add_argument(
        "--blocks",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="Python's blocks in use in each daemon every --blocks-every s for that many "
        "seconds from its start: the start's peak, when it comes, and how far above what stays",
    )
    parser.add_argument(
        "--blocks-every",
        type=float,
        default=0.005,
        metavar="SECONDS",
        help="with --blocks: seconds between two counts (0.001: the moments a round holds)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="another checkout whose daemons run too, each size right after this tree's",
    )
    args = parser.parse_args()
    if (args.allocators or args.timeline) and args.trace:
        parser.error("--allocators and --trace measure different daemons: choose one")
    backend = args.backend or ("userspace" if have_userspace() else "none")
    tag = f"{os.getpid() % 10000}"

    results: dict[str, Any] = {
        "label": args.label,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "python": platform.python_version(),
        "backend": backend,
        "commit": commit_of(ROOT),
        "settle_s": args.settle,
        "repeat": args.repeat,
        "joined": args.joined,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "targets": TARGETS,
        "baselines": baselines(),
    }
    print(json.dumps(results["baselines"]))
    trees = [ROOT] if args.reference is None else [ROOT, args.reference.resolve()]
    for root in trees:  # no daemon compiles its bytecode as it starts (nor keeps its garbage)
        subprocess.run([PYTHON, "-m", "compileall", "-q", "meshd"], cwd=root, check=True)
    rows: dict[Path, list[dict[str, Any]]] = {root: [] for root in trees}
    if args.repeat < 1:
        parser.error("--repeat is at least 1")
    if args.blocks_every <= 0:
        parser.error("--blocks-every is a number of seconds above 0")
    for members in [1, *args.sizes]:
        runs: dict[Path, list[dict[str, Any]]] = {root: [] for root in trees}
        for _ in range(args.repeat):
            for root in trees:
                row = measure_size(
                    root,
                    members,
                    backend,
                    args.settle,
                    tag,
                    args.timeout,
                    args.trace,
                    args.trim,
                    args.joined,
                    args.allocators,
                    args.timeline,
                    args.blocks,
                    args.blocks_every,
                )
                runs[root].append(row)
                shown = {k: v for k, v in row.items() if k != "heap"}
                print(json.dumps({"tree": str(root), **shown}))
        for root in trees:
            rows[root].append(median_run(runs[root]))
    for sizes in rows.values():
        per_member(sizes)
    sizes = rows[ROOT]
    results["daemon"] = sizes
    if args.trace:
        results["heap_per_member"] = [heap_per_member(sizes[0], row) for row in sizes[1:]]
    for tree_rows in rows.values():
        if args.allocators:
            for row in tree_rows[1:]:
                row["allocators_per_member"] = allocators_per_member(tree_rows[0], row)
    if args.reference is not None:
        reference = rows[trees[1]]
        results["reference"] = {
            "root": str(trees[1]),
            "commit": commit_of(trees[1]),
            "daemon": reference,
        }
        if args.trace:
            results["reference"]["heap_per_member"] = [
                heap_per_member(reference[0], row) for row in reference[1:]
            ]
    if args.uapi and backend == "userspace":
        results["uapi"] = uapi_figures(args.uapi, tag)
        print(json.dumps(results["uapi"]))

    print()
    base = results["baselines"]
    print(f"python -c pass (peak)          {base['python_c_pass_peak_mib']:7.1f} MiB")
    print(f"bare trio, sleeping            {base['bare_trio_sleeping']['rss_mib']:7.1f} MiB")
    print_table(f"this tree ({results['commit']})", sizes)
    if "reference" in results:
        ref = results["reference"]
        print_table(f"reference ({ref['commit']}, {ref['root']})", ref["daemon"])
    if "uapi" in results:
        u = results["uapi"]
        print(
            f"UAPI: {u['peers']} peers programmed in {u['program_s']:.3f} s "
            f"(get+plan {u['get_and_plan_s']:.3f}, set {u['set_s']:.3f}); one member's change: "
            f"{u['one_change_ops']} operation, {u['one_change_request_bytes']} bytes, "
            f"{u['one_change_s']:.4f} s"
        )
    for root, tree_rows in rows.items():
        for row in tree_rows[1:]:
            for moment in row.get("timeline", ()):
                print_moment(root.name, row["members"], moment)
            if "blocks" in row:
                b = row["blocks"]
                print(
                    f"{row['members']} members ({root.name}): Python's blocks in use: peak "
                    f"{b['peak']:,} at {b['peak_after_spawn_s']:.2f} s after spawning, "
                    f"{b['at_up']:,} at `meshd up`, "
                    f"{b['last']:,} at {b['last_after_spawn_s']:.0f} s, "
                    f"median once up {b.get('steady', 0):,}"
                )
                for top in b.get("tops_once_up", ()):
                    print(
                        f"    {top['blocks']:,} (+{top.get('above_steady', 0):,}) at "
                        f"{top['after_spawn_s']:.2f} s: {top['running'] or 'waiting'}"
                    )
            if "allocators_per_member" in row:
                parts = ", ".join(f"{k} {v}" for k, v in row["allocators_per_member"].items())
                print(f"allocators at {row['members']} ({root.name}), bytes a member: {parts}")
            if "garbage_objects" in row.get("allocators", {}):
                counts = row["allocators"]
                print(
                    f"cyclic garbage at {row['members']} ({root.name}): "
                    f"{counts['garbage_objects']:,} objects, {counts['garbage_blocks']:,} blocks "
                    f"freed with the free lists; anonymous RSS {counts['rss_anon'] / 2**20:.2f} "
                    f"-> {counts['rss_anon_collected'] / 2**20:.2f} MiB"
                )
    heaps = [("", h) for h in results.get("heap_per_member", [])]
    heaps += [(" (reference)", h) for h in results.get("reference", {}).get("heap_per_member", [])]
    for which, heap in heaps:
        print(f"\nPython heap per member at {heap['members']} members{which}, bytes:")
        print(f"{heap['total']:8.0f}  in all")
        for place, size in heap["by_place"].items():
            print(f"{size:8.0f}  {place}")
        print("by line:")
        for place, size in heap["by_line"].items():
            print(f"{size:8.0f}  {place}")
    for tree_rows in rows.values():  # per member above; each place's bytes not kept
        for row in tree_rows:
            if "heap" in row:
                row["heap"] = {"total": row["heap"]["total"]}
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
