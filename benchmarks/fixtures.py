"""What the benchmarks share: the records they build their networks from, their common
options, how a result is stamped and written, and how a sample is summed up."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from meshd.records import Role, make_certificate
from meshd.trust.chain import Anchor
from meshd.trust.keys import SigningKey, WireGuardKey

T0 = 1_800_000_000  # the benchmarks' clock: every record is valid from here on


def member_certificate(root: SigningKey, anchor: Anchor, key: SigningKey, name: str) -> bytes:
    """A member certificate for ``key``, issued directly by the root, valid from T0 on."""
    return make_certificate(
        root,
        network_id=anchor.network_id,
        subject=key.public,
        role=Role.MEMBER,
        serial=os.urandom(16),
        not_before=T0,
        not_after=T0 + 10**7,
        name=name,
        wg_key=WireGuardKey.generate().public,
    ).raw


ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
IMG = ROOT / "docs" / "img"


def commit() -> str:
    """The commit measured (``git rev-parse --short HEAD``), or "unknown"."""
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def stamp(benchmark: str) -> dict[str, Any]:
    """The fields every result starts with: what, when, at which commit, on what machine."""
    return {
        "benchmark": benchmark,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "machine": f"{platform.machine()}, {os.cpu_count() or 0} cpus, "
        f"Python {platform.python_version()}",
    }


def write_result(path: Path, result: Mapping[str, Any], *, indent: int = 2) -> None:
    """Write ``result`` as JSON to ``path`` (its directory made if need be)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent) + "\n")


def simulator_options(parser: argparse.ArgumentParser, quick: str, plots: str) -> None:
    """``--quick`` and ``--plots``, with their help, for the simulator's benchmarks."""
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--plots", action="store_true", help=plots)


def daemon_options(parser: argparse.ArgumentParser, *, settle: float, output: Path) -> None:
    """The options of the benchmarks that run real daemons: sizes, how they join, what is
    kept, options for every daemon, and the result's path."""
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 48])
    parser.add_argument("--batch", type=int, default=4, help="members joining at once")
    parser.add_argument("--settle", type=float, default=settle, help="seconds after all admitted")
    parser.add_argument("--keep", action="store_true", help="keep the logs and state dirs")
    parser.add_argument(
        "--daemon-arg",
        action="append",
        default=[],
        help="an option for every daemon (repeat; e.g. --daemon-arg=--announce-interval=1h)",
    )
    parser.add_argument("--output", type=Path, default=output)


def pyplot() -> Any:
    """matplotlib's pyplot drawing to files only (Agg), with docs/img made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMG.mkdir(parents=True, exist_ok=True)
    return plt


def save_figure(fig: Any, name: str) -> None:
    """Lay ``fig`` out, write it to docs/img/``name`` and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(IMG / name, dpi=110)
    plt.close(fig)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "p90": percentile(values, 0.9),
        "min": min(values),
        "max": max(values),
    }


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the lab's teardown


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While a benchmark holds what it made (a lab, a namespace, daemons), SIGTERM (a job's
    time limit, ``timeout``) unwinds like Ctrl-C through its teardown: without it the
    daemons, their wireguard-go and the namespaces outlived a terminated run (they run in
    sessions of their own). Only where nothing else handles SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers are the main thread's
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield  # someone handles it already (an outer benchmark, the test run)
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
