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

``--store MEMBERS`` measures one daemon with a large store instead (root and wireguard-go):
a store of that many members (:func:`benchmarks.synthetic_store.build_store`: every member announces
an unreachable endpoint, so every path is tried, fails and waits for its next round), and a
real ``meshd up`` on a copy of it in a network namespace of its own with the userspace
backend, every member a WireGuard peer; from this tree and, with ``--reference DIR``, from
another checkout too (its ``.venv`` linked), in turns. Per start: the log lines from spawning
to the end of ``--settle`` s after WireGuard is programmed (all, and the punching service's),
the CPU of the daemon and of its wireguard-go over ``--window`` s, and the time from SIGTERM
to the daemon's exit; then a second start stopped ``--stop-after`` s after WireGuard is
programmed (while every path starts its first round). With ``--profile SECONDS`` (and
py-spy), the idle daemon is sampled after its window, before it is stopped.

    sudo .venv/bin/python -m benchmarks.idle --store 10000 --reference /tmp/ref \
        [--settle 30] [--window 60] [--output benchmarks/results/idle-store-10000.json]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.fixtures import RESULTS, commit, daemon_options, stamp, write_result
from benchmarks.loopback_mesh import (
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


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def store_start(
    tree: Path, store: Path, workdir: Path, tag: str, args: argparse.Namespace, idle: bool
) -> dict[str, Any]:
    """One ``meshd up`` from ``tree`` on a copy of ``store``: log lines, CPU over the window
    (``idle``) or none, and the time SIGTERM takes to stop it."""
    from benchmarks.measured_daemon import daemon_pid, namespace, up_command, wireguard_go_pids

    state_dir = workdir / f"state-{tag}"
    shutil.copytree(store, state_dir)
    ifname = f"mi{tag}"[:15]
    log_path = workdir / f"{tag}.log"
    python = tree / ".venv" / "bin" / "python"
    with namespace(f"meshd-idle-{tag}") as netns:
        command = up_command(python, netns, state_dir, "userspace", ifname, 51820)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                command, cwd=tree, stdout=log_file, stderr=subprocess.STDOUT, env=env
            )
        row: dict[str, Any] = {}
        try:
            deadline = time.monotonic() + args.timeout
            while "programmed from the store" not in log_path.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"meshd up not programmed: {log_path}")
                time.sleep(0.05)
            pid = daemon_pid(process.pid)
            helpers = wireguard_go_pids(ifname)
            if idle:
                time.sleep(args.settle)
                lines = log_path.read_text(errors="replace").splitlines()
                row["log_lines_at_start"] = len(lines)
                row["punching_lines_at_start"] = sum("meshd.daemon.punching:" in x for x in lines)
                cpu = {"daemon": cpu_seconds(pid)}
                cpu.update({f"wireguard-go {h}": cpu_seconds(h) for h in helpers})
                started = time.monotonic()
                time.sleep(args.window)
                took = time.monotonic() - started
                shares = {k: (cpu_seconds(int(k.split()[-1]) if " " in k else pid) - v) / took
                          for k, v in cpu.items()}  # fmt: skip
                row["window_s"] = round(took, 1)
                row["cpu_pct_daemon"] = round(100 * shares.pop("daemon"), 2)
                row["cpu_pct_wireguard_go"] = round(100 * sum(shares.values()), 2)
                lines = log_path.read_text(errors="replace").splitlines()
                row["log_lines_in_window"] = len(lines) - row["log_lines_at_start"]
                py_spy = args.py_spy or shutil.which("py-spy")
                if args.profile and py_spy is not None:  # after the window: py-spy costs CPU
                    out = workdir / f"{tag}-profile.txt"
                    row["profile_top"] = profile(pid, args.profile, py_spy, out)[:20]
            else:
                time.sleep(args.stop_after)
            stopping_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
                row["stop_s"] = round(time.monotonic() - stopping_at, 2)
            except subprocess.TimeoutExpired:
                row["stop_s"] = None  # killed
            return row
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            for helper in wireguard_go_pids(ifname):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(helper, signal.SIGTERM)
            shutil.rmtree(state_dir, ignore_errors=True)


def store_main(args: argparse.Namespace) -> None:
    from benchmarks.measured_daemon import have_userspace
    from benchmarks.synthetic_store import build_store, commit_of

    if not have_userspace():
        raise SystemExit("--store needs root and wireguard-go")
    trees = {"this": Path(__file__).resolve().parent.parent}
    if args.reference is not None:
        trees = {"reference": args.reference.resolve(), **trees}
    workdir = Path(tempfile.mkdtemp(prefix="meshd-bench-idle-store-"))
    result: dict[str, Any] = {
        **stamp("idle-store"),
        "members": args.store,
        "commits": {name: commit_of(tree) for name, tree in trees.items()},
        "settle_s": args.settle,
        "stop_after_s": args.stop_after,
        "runs": [],
    }
    try:
        for tree in trees.values():  # no run pays for compiling the bytecode
            subprocess.run([str(tree / ".venv" / "bin" / "python"), "-m", "compileall", "-q",
                            "meshd"], cwd=tree, check=True)  # fmt: skip
        store = workdir / "store"
        result["store"] = build_store(store, args.store)
        n = 0
        for round_ in range(args.rounds):
            for name, tree in trees.items():
                for idle in (True, False):
                    n += 1
                    tag = f"{os.getpid() % 1000}{n}"
                    row = {"tree": name, "round": round_, "idle": idle,
                           "load_1min": round(os.getloadavg()[0], 2)}  # fmt: skip
                    row.update(store_start(tree, store, workdir, tag, args, idle))
                    print(row, flush=True)
                    result["runs"].append(row)
                    write_result(args.output, result)
    finally:
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    daemon_options(parser, settle=20.0, output=RESULTS / "idle.json")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--profile", type=float, default=0.0, help="py-spy one member (s)")
    parser.add_argument("--py-spy", default=None, help="path of py-spy")
    parser.add_argument("--store", type=int, default=0, help="one daemon, a store this large")
    parser.add_argument("--reference", type=Path, default=None, help="--store: another tree")
    parser.add_argument("--rounds", type=int, default=1, help="--store: starts per tree")
    parser.add_argument("--stop-after", type=float, default=2.0, help="--store: s, 2nd start")
    parser.add_argument("--timeout", type=float, default=240.0, help="--store: s to program")
    args = parser.parse_args()
    if args.store:
        store_main(args)
        return
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
