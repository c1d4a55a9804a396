"""CPU of idle meshd daemons: N daemons on loopback, nothing happening, per-daemon CPU.

For each size, in one run: a founder and members that join by invite (the mesh of
``benchmarks.revocation``: separate processes, ``--wg-backend none``, 127.0.0.1), then, once
every daemon lists every member as admitted and ``--settle`` seconds have passed, each
daemon's CPU time (user + system, ``/proc/PID/stat``) over ``--window`` seconds. A daemon's
figure is the share of one core it used; the mesh's is the sum, in cores (2 on the machine
this runs on: what is left for everything else).

    .venv/bin/python -m benchmarks.idle [--sizes 16 48] [--settle 20] [--window 30]

Results: benchmarks/results/idle.json (``--output``). With ``--profile SECONDS`` and py-spy
on the PATH (or ``--py-spy PATH``), one member is also sampled for that long after the
window, and its top functions (py-spy ``--format raw``, collapsed stacks) are saved beside.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.fixtures import RESULTS, commit, daemon_options, stamp, write_result
from benchmarks.revocation import (
    Processes,
    all_admitted,
    cpu_shares,
    start_mesh,
    stopping,
    wait_for,
)


def profile(pid: int, seconds: float, py_spy: str, out: Path) -> list[tuple[str, int]]:
    """py-spy record of ``pid``; the 25 functions most often on a sampled stack."""
    subprocess.run(
        [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
         "--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking"],
        check=True, capture_output=True,
    )  # fmt: skip
    counts: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        total += int(n)
        for frame in set(stack.split(";")):
            counts[frame] = counts.get(frame, 0) + int(n)
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:25]
    return [("(samples)", total), *top]


def bench(
    size: int, args: argparse.Namespace, workdir: Path, processes: Processes
) -> dict[str, Any]:
    mesh = start_mesh(size, workdir / f"idle-{size}", processes, args.batch, args.daemon_arg)
    try:
        wait_for(lambda: all_admitted(mesh), 300, "every daemon to list all as admitted", 1.0)
        print(f"  {size} daemons up, all admitted; settling {args.settle:g} s", flush=True)
        time.sleep(args.settle)
        pids = {n.name: n.process.pid for n in mesh.nodes if n.process is not None}
        load = os.getloadavg()
        shares = cpu_shares(pids, args.window)
        load_after = os.getloadavg()
        members = [v for k, v in shares.items() if k != mesh.founder.name]
        row: dict[str, Any] = {
            "daemons": size,
            "window_s": args.window,
            "settle_s": args.settle,
            "cpu_pct_per_daemon": {
                "median": statistics.median(members),
                "mean": round(statistics.fmean(members), 2),
                "max": max(members),
                "min": min(members),
            },
            "founder_cpu_pct": shares[mesh.founder.name],
            "total_cores": round(sum(shares.values()) / 100, 3),
            "load_1min_before": round(load[0], 2),
            "load_1min_after": round(load_after[0], 2),
            "per_daemon_cpu_pct": shares,
        }
        print(
            f"  {size} idle daemons over {args.window:g} s: per member median "
            f"{row['cpu_pct_per_daemon']['median']:.2f} % of a core (max "
            f"{row['cpu_pct_per_daemon']['max']:.2f} %), founder {row['founder_cpu_pct']:.2f} %, "
            f"all together {row['total_cores']:.2f} cores; load {load[0]:.1f} -> "
            f"{load_after[0]:.1f}",
            flush=True,
        )
        if args.profile:
            py_spy = args.py_spy or shutil.which("py-spy")
            if py_spy is None:
                print("  --profile: py-spy not found", flush=True)
            else:
                member = mesh.nodes[len(mesh.nodes) // 2]
                assert member.process is not None
                out = args.output.with_name(f"{args.output.stem}-{size}-profile.txt")
                row["profile_of"] = member.name
                row["profile_top"] = profile(member.process.pid, args.profile, py_spy, out)
                for frame, n in row["profile_top"][:15]:
                    print(f"    {n:>6}  {frame}")
        return row
    finally:
        processes.stop([n.process for n in mesh.nodes if n.process is not None])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    daemon_options(parser, settle=20.0, output=RESULTS / "idle.json")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--profile", type=float, default=0.0, help="py-spy one member (s)")
    parser.add_argument("--py-spy", default=None, help="path of py-spy")
    args = parser.parse_args()
    measured = commit()
    processes = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="meshd-bench-idle-"))
    rows: list[dict[str, Any]] = []
    try:
        with stopping(processes):
            for size in args.sizes:
                print(f"size {size}", flush=True)
                rows.append(bench(size, args, workdir, processes))
                save(args, measured, rows)
    finally:
        if args.keep:
            print(f"logs and state dirs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print("idle CPU, % of one core per daemon (members; the founder apart)")
    print(f"{'size':>5} {'median':>8} {'max':>8} {'founder':>8} {'all (cores)':>12} {'load':>6}")
    for row in rows:
        c = row["cpu_pct_per_daemon"]
        print(
            f"{row['daemons']:>5} {c['median']:>8.2f} {c['max']:>8.2f} "
            f"{row['founder_cpu_pct']:>8.2f} {row['total_cores']:>12.2f} "
            f"{row['load_1min_before']:>6.1f}"
        )


def save(args: argparse.Namespace, measured: str, rows: list[dict[str, Any]]) -> None:
    result = {
        **stamp("idle"),
        "commit": measured,  # at the start: the tree may move on during a long run
        "measure": "per daemon, CPU time (user + system) over the window / the window, "
        "in percent of one core; total_cores: every daemon together",
        "daemon_args": args.daemon_arg,
        "sizes": rows,
    }
    write_result(args.output, result)


if __name__ == "__main__":
    main()
