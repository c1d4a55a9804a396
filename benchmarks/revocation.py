"""Revocation propagation in a loopback mesh of meshd daemons, against HashiCorp Serf.

For each mesh size, in one run:

- Serf (the reference): a cluster of that many ``serf agent`` processes on 127.0.0.1. Each
  round sends one user event (``serf event -coalesce=false``) through the first agent and
  takes the time from that command returning to the last agent's event handler running (a
  bash script that appends ``$EPOCHREALTIME`` to a file, no fork).
- meshd: a founder (``meshd init`` + ``meshd up``) and members that join by invite
  (``meshd join``, in parallel batches), each a separate process with ``--wg-backend none``
  on 127.0.0.1. Once every daemon lists every member as admitted, and after a settling pause,
  each round revokes a different member at the founder (``meshd revoke NAME``) and takes the
  time from that command returning to the revocation being durable and applied on every
  other daemon (the revoked member aside). Two observers, both recorded:

  * ``applied``: the time each daemon logs the membership event ``member NAME (...) is
    Revoked``. The daemon emits it after the store transaction that holds the revocation
    has committed, so it marks "durable and applied"; reading log files costs the mesh
    nothing.
  * ``polled``: the first time each daemon's control socket (``status``, its ``revoked``
    count) shows the revocation, polled in a tight loop over the daemons that do not show it
    yet, one request at a time, from this process. An upper bound, perturbed by the polling.

Every process is stopped by its PID at the end, also on failure or Ctrl-C. Results go to
benchmarks/results/revocation.json.

    .venv/bin/python -m benchmarks.revocation [--sizes 16 48] [--rounds 10]

Target (issue 3): meshd no slower than Serf at the same size, in the same run.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.fixtures import RESULTS, ROOT, daemon_options, stamp, summary, write_result
from benchmarks.loopback_mesh import (
    POLL_PAUSE,
    Mesh,
    Processes,
    all_admitted,
    cpu_shares,
    log_time,
    meshd,
    revoked_count,
    start_mesh,
    stopping,
    wait_for,
)
from benchmarks.serf_cluster import bench_serf, serf
from meshd.errors import MeshdError


@dataclass(frozen=True)
class MeshdRound:
    target: str
    cli_s: float  # how long `meshd revoke` ran
    applied_max: float  # `meshd revoke` returned -> the last daemon's Revoked event
    keystroke_max: float  # `meshd revoke` started -> the last daemon's Revoked event
    from_origin_max: float  # the founder's Revoked event -> the last daemon's
    polled_max: float  # `meshd revoke` returned -> the last control socket showing it
    load: float  # the 1-minute load average as the round started
    applied: dict[str, float]
    polled: dict[str, float]


def revoke_round(
    mesh: Mesh, target: str, excluded: set[str], baseline: int, timeout: float = 60.0
) -> MeshdRound:
    """Revoke ``target``; watch every daemon but the founder, the target and ``excluded``
    (members revoked earlier, which are disconnected and hear nothing more)."""
    watched = [n for n in mesh.nodes[1:] if n.name != target and n.name not in excluded]
    load = os.getloadavg()[0]  # the machine's load (other work runs on it too)
    called = time.time()
    meshd("revoke", target, "--reason", "benchmark", "--state-dir", str(mesh.founder.state_dir))
    returned = time.time()
    polled: dict[str, float] = {}
    pending = list(watched)
    while pending:
        if time.time() - returned > timeout:
            missing = ", ".join(n.name for n in pending)
            raise RuntimeError(f"revocation of {target} not seen within {timeout:g} s on {missing}")
        for node in list(pending):
            try:
                count = revoked_count(node)
            except MeshdError:
                continue
            if count > baseline:
                polled[node.name] = time.time() - returned
                pending.remove(node)
        # A pause between sweeps: asking every daemon back to back keeps the cores busy
        # with status answers while the revocation propagates (the figures are the logs').
        time.sleep(POLL_PAUSE)
    # The log line follows the event by at most a scheduling step; give it a moment.
    stamps: dict[str, float] = {}
    deadline = time.monotonic() + 5.0
    for node in [mesh.founder, *watched]:
        while (at := log_time(node, target)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} never logged the revocation of {target}")
            time.sleep(0.05)
        stamps[node.name] = at
    origin = stamps.pop(mesh.founder.name)
    # Negative: applied before the CLI had returned (it asks the daemon for the member list
    # once more and exits after the daemon's publish).
    applied = {name: at - returned for name, at in stamps.items()}
    return MeshdRound(
        target,
        cli_s=returned - called,
        applied_max=max(0.0, *applied.values()),
        keystroke_max=max(stamps.values()) - called,
        from_origin_max=max(stamps.values()) - origin,
        polled_max=max(polled.values()),
        load=load,
        applied=applied,
        polled=polled,
    )


def bench_meshd(
    size: int,
    rounds: int,
    workdir: Path,
    processes: Processes,
    batch: int,
    settle: float,
    flags: Sequence[str] = (),
) -> dict[str, Any]:
    start = time.monotonic()
    mesh = start_mesh(size, workdir, processes, batch, flags)
    try:
        took = wait_for(
            lambda: all_admitted(mesh), 300, "every daemon to list all as admitted", 1.0
        )
        ready = time.monotonic() - start
        print(f"  meshd: {size} daemons up, all admitted everywhere after {ready:.0f} s "
              f"(last check {took:.0f} s); settling {settle:g} s", flush=True)  # fmt: skip
        # The settling pause doubles as the idle figure: every daemon's CPU over its last
        # two thirds (the first third lets the last joins' syncs end).
        time.sleep(settle / 3)
        pids = {n.name: n.process.pid for n in mesh.nodes if n.process is not None}
        idle = cpu_shares(pids, settle * 2 / 3)
        idle_members = [v for k, v in idle.items() if k != mesh.founder.name]
        print(f"  idle: a member's CPU median {statistics.median(idle_members):.2f} % of a core "
              f"(max {max(idle_members):.2f} %), all {size} daemons {sum(idle.values()) / 100:.2f} "
              f"cores; load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        results: list[MeshdRound] = []
        for r in range(rounds):
            target = mesh.nodes[1 + r].name
            result = revoke_round(mesh, target, {n.name for n in mesh.nodes[1 : 1 + r]}, r)
            results.append(result)
            print(
                f"  meshd round {r + 1}: revoked {target}: applied everywhere after "
                f"{result.applied_max:.3f} s (from the keystroke: {result.keystroke_max:.3f} s; "
                f"control-socket poll: {result.polled_max:.3f} s; "
                f"from the founder's commit: {result.from_origin_max:.3f} s; "
                f"the CLI ran {result.cli_s:.2f} s; load {result.load:.1f})",
                flush=True,
            )
            time.sleep(1.0)
        # A revoked member's daemon stops (it is told it is revoked): ask the others.
        status = []
        for node in mesh.nodes:
            with suppress(MeshdError):
                status.append(node.ask("status"))
        rss = [_rss_mib(n.process.pid) for n in mesh.nodes if n.process is not None]
    finally:
        processes.stop([n.process for n in mesh.nodes if n.process is not None])
    applied = [r.applied_max for r in results]
    polled = [r.polled_max for r in results]
    from_origin = [r.from_origin_max for r in results]
    cli = [r.cli_s for r in results]
    keystroke = [r.keystroke_max for r in results]
    return {
        "daemons": size,
        "startup_s": ready,
        "applied_s": applied,
        "polled_s": polled,
        "from_origin_s": from_origin,
        "revoke_cli_s": cli,
        "keystroke_s": keystroke,
        "applied": summary(applied),
        "polled": summary(polled),
        "from_origin": summary(from_origin),
        "revoke_cli": summary(cli),
        "keystroke": summary(keystroke),
        "load_1min": [round(r.load, 2) for r in results],
        "per_daemon_applied_s": [r.applied for r in results],
        "targets": [r.target for r in results],
        "rejected_at_end": _sum_counters(s.get("rejected", {}) for s in status),
        "rss_mib_median": statistics.median(rss) if rss else None,
        "idle_cpu_pct": {
            "window_s": round(settle * 2 / 3, 1),
            "member_median": statistics.median(idle_members),
            "member_max": max(idle_members),
            "founder": idle[mesh.founder.name],
            "all_cores": round(sum(idle.values()) / 100, 3),
        },
    }


def _sum_counters(counters: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for counter in counters:
        for key, value in counter.items():
            total[key] = total.get(key, 0) + int(value)
    return total


def _rss_mib(pid: int) -> float:
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    daemon_options(parser, settle=5.0, output=RESULTS / "revocation.json")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("serf") is None:
        sys.exit("serf is not installed (Debian package serf)")
    if any(size - 1 < args.rounds for size in args.sizes):
        sys.exit("each size needs more members than rounds (one revoked per round)")
    # meshd compiled to bytecode first, as installing it does: with PYTHONDONTWRITEBYTECODE
    # set, every `meshd revoke` would otherwise compile the modules changed since their
    # cached bytecode.
    compileall.compile_dir(ROOT / "meshd", quiet=1)
    processes = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="meshd-bench-revocation-"))
    rows: list[dict[str, Any]] = []
    try:
        with stopping(processes):
            for size in args.sizes:
                row: dict[str, Any] = {"size": size}
                rows.append(row)
                print(f"size {size}: serf", flush=True)
                row["serf"] = bench_serf(size, args.rounds, workdir / f"serf-{size}", processes)
                print(f"size {size}: meshd", flush=True)
                try:
                    row["meshd"] = bench_meshd(
                        size,
                        args.rounds,
                        workdir / f"meshd-{size}",
                        processes,
                        args.batch,
                        args.settle,
                        args.daemon_arg,
                    )
                except RuntimeError as exc:
                    row["meshd"] = {"daemons": size, "failed": str(exc)}
                    print(f"  meshd at {size} failed: {exc}", flush=True)
                save(args, rows)
    finally:
        complete = all("applied" in r.get("meshd", {}) for r in rows)
        if args.keep or not complete or len(rows) < len(args.sizes):
            print(f"logs and state dirs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print("seconds; meshd: `meshd revoke` returned -> applied on every other daemon")
    print("keystroke: the command starting (`meshd revoke`, `serf event`) -> the last node")
    print(
        f"{'size':>5} {'meshd median':>13} {'meshd p90':>10} {'serf median':>12} {'serf p90':>9}"
        f" {'meshd from commit med/p90':>26} {'meshd polled med/p90':>21}"
    )
    for row in rows:
        s = row["serf"]["delivered"]
        if "applied" not in row["meshd"]:
            print(f"{row['size']:>5} {'failed':>13} {'':>10} {s['median']:>12.3f} {s['p90']:>9.3f}")
            continue
        m, o, p = row["meshd"]["applied"], row["meshd"]["from_origin"], row["meshd"]["polled"]
        k, sk = row["meshd"]["keystroke"], row["serf"]["keystroke"]
        print(
            f"{row['size']:>5} {m['median']:>13.3f} {m['p90']:>10.3f} {s['median']:>12.3f}"
            f" {s['p90']:>9.3f} {o['median']:>19.3f}/{o['p90']:.3f}"
            f" {p['median']:>14.3f}/{p['p90']:.3f}"
            f" {k['median']:>18.3f}/{sk['median']:.3f} {k['max']:>6.3f}/{sk['max']:.3f}"
        )


def save(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    result = {
        **stamp("revocation"),
        "serf_version": serf("version").splitlines()[0],
        "rounds": args.rounds,
        "daemon_args": args.daemon_arg,
        "settle_s": args.settle,
        "meshd_measure": "meshd revoke returning -> Revoked event (after the store commit) "
        "on every other daemon, max over daemons; polled_s: first seen through each "
        "control socket; from_origin_s: the founder's own Revoked event -> the last daemon's",
        "serf_measure": "serf event returning -> event handler ran on every agent",
        "keystroke_measure": "the command (meshd revoke, serf event) starting -> applied on "
        "every other daemon / handler ran on every agent; the figure a user lives",
        "target": "meshd median <= serf median at the same size",
        "sizes": rows,
    }
    write_result(args.output, result)


if __name__ == "__main__":
    main()
