"""The figures of the churn soak (benchmarks/soak.py): what is read of each daemon process
in /proc, the least-squares slope of each metric after warm-up, and the printed table."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STABLE = ("h1", "h2")  # the long-lived daemons: the founder and the first to join
METRICS = ("rss_mib", "fds", "threads", "tasks", "wg_rss_mib", "wg_fds")
MIB = 1024 * 1024


# --- /proc -----------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def rss_mib(status: dict[str, str]) -> float:
    return int(status["VmRSS"].split()[0]) * 1024 / MIB  # "VmRSS:  12345 kB"


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wireguard_go_of(pid: int) -> int | None:
    """The PID of the wireguard-go that a meshd daemon started, if it runs."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except FileNotFoundError:
            continue
        for child in children:
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == "wireguard-go":
                    return int(child)
            except FileNotFoundError:
                continue
    return None


# --- fitting ---------------------------------------------------------------------------------


def read_process(pid: int, tasks: int) -> dict[str, float]:
    """One sample of a daemon (its RSS, fds, threads, and ``tasks``: the trio tasks its
    ``meshd status`` counts) and of its wireguard-go; raises OSError once it is gone."""
    status = proc_status(pid)
    row: dict[str, float] = {
        "rss_mib": round(rss_mib(status), 2),
        "fds": open_fds(pid),
        "threads": int(status["Threads"]),
        "tasks": tasks,
    }
    wg = wireguard_go_of(pid)
    if wg is not None:
        row["wg_rss_mib"] = round(rss_mib(proc_status(wg)), 2)
        row["wg_fds"] = open_fds(wg)
    return row


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in value per minute."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60.0


@dataclass
class Process:
    """One daemon process: what it is and what was sampled from it."""

    host: str
    name: str
    pid: int
    started: float  # seconds since the run's start
    samples: list[dict[str, float]] = field(default_factory=list)


def fit(process: Process, warmup: float, min_span: float = 60.0) -> dict[str, Any]:
    """Slopes (per minute) of one process's metrics after its warm-up, and its figures."""
    after = [s for s in process.samples if s["t"] >= process.started + warmup]
    row: dict[str, Any] = {
        "host": process.host,
        "name": process.name,
        "pid": process.pid,
        "started_s": round(process.started, 1),
        "samples": len(process.samples),
        "samples_after_warmup": len(after),
    }
    if process.samples:
        row["first"] = process.samples[0]
        row["last"] = process.samples[-1]
    if after:
        row["after_warmup"] = after[0]
    span = after[-1]["t"] - after[0]["t"] if len(after) >= 2 else 0.0
    row["fitted_span_s"] = round(span, 1)
    if len(after) >= 3 and span >= min_span:
        row["slope_per_min"] = {
            m: round(slope_per_minute([(s["t"], s[m]) for s in after if m in s]), 4)
            for m in METRICS
            if sum(m in s for s in after) >= 3
        }
    return row


def print_table(result: dict[str, Any]) -> None:
    print(f"\nchanges: {result['actions']}; failed steps: {len(result['failures'])}")
    print(
        f"settled after the churn: {result['settled_s']} s; digests identical: "
        f"{result['digests_identical']}; stuck WireGuard peers: {result['stuck'] or 'none'}"
    )
    span = result["setup"]["min_fitted_span_s"]
    print(f"\nslopes per minute after warm-up (daemons sampled for {span:g} s or more):")
    head = f"{'daemon':<12} {'span':>6} " + " ".join(f"{m:>11}" for m in METRICS)
    print(head)
    for row in result["daemons"]:
        slopes = row.get("slope_per_min")
        if not slopes:
            continue
        cells = " ".join(f"{slopes.get(m, float('nan')):>+11.3f}" for m in METRICS)
        print(f"{row['host'] + ':' + row['name']:<12} {row['fitted_span_s']:>5.0f}s {cells}")
    print("\nfirst and last sample of each long-lived daemon (rss MiB, fds, threads, tasks):")
    for row in result["daemons"]:
        if row["host"] in STABLE and "first" in row:
            a, b = row.get("after_warmup", row["first"]), row["last"]
            print(
                f"  {row['host']}: after warm-up {a['rss_mib']:.1f} {a['fds']:.0f} "
                f"{a['threads']:.0f} {a['tasks']:.0f}; end {b['rss_mib']:.1f} {b['fds']:.0f} "
                f"{b['threads']:.0f} {b['tasks']:.0f}"
            )
    others = [r for r in result["daemons"] if not r.get("slope_per_min")]
    print(f"{len(others)} shorter-lived daemon processes were sampled but not fitted")


def progress(processes: Mapping[int, Process]) -> str:
    """The long-lived daemons' last sample, for the report every minute."""
    return ", ".join(
        f"{p.host} rss {p.samples[-1]['rss_mib']:.1f} MiB fds "
        f"{p.samples[-1]['fds']:.0f} tasks {p.samples[-1]['tasks']:.0f}"
        for p in processes.values()
        if p.host in STABLE and p.samples
    )


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
