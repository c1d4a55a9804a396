"""Fuzz every decoder of untrusted bytes for a budget, and report what it found.

    .venv/bin/python -m benchmarks.fuzz [--seconds 180] [--examples N] [--targets NAME ...]
                                        [--engine atheris|mutate] [--budget 1.0] [--keep DIR]

Targets, seeds, mutations and the oracle are those of ``tests/fuzz`` (the test suite runs
the same targets briefly: tests/fuzz/test_fuzz_decoders.py). Each target runs in its own process,
one after the other, at low priority (nice 10):

- ``atheris`` (the default when it is installed): libFuzzer's coverage-guided loop over the
  meshd modules instrumented by atheris, with the msgpack-, Babel-, token-, JSON- and
  UAPI-aware mutations of ``tests/fuzz/mutate.py`` as its custom mutator half of the time
  and libFuzzer's own byte mutations the other half. New coverage grows the corpus.
- ``mutate``: the same mutations without coverage feedback (inputs that decode join the
  corpus), for machines without atheris.

Per target it prints executions, executions per second, the corpus size at the end, line
coverage of the decoder's modules (lines hit by replaying the seeds, then the whole final
corpus, out of the executable lines of the functions in those modules; measured with
sys.settrace in this process) and the findings: an exception other than the target's
typed ones (leak), a round trip that does not hold, or an input over its CPU-time budget
(hang). Saves benchmarks/results/fuzz.json and exits with status 1 on any finding.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# No meshd import at module level: the atheris worker must import meshd under its
# instrumentation hook, after this module is loaded.

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def _engine_default() -> str:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "mutate"
    return "atheris"


# --- worker side ---------------------------------------------------------------------------


def _load_world(work: Path) -> Any:
    import msgpack

    return msgpack.unpackb((work / "world.msgpack").read_bytes(), raw=False)


def _read_corpus(directory: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()]


class _Recorder:
    """Writes each new finding (by target, kind, error and place) as one JSON line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: set[tuple[str, str, str, str]] = set()
        self.count = 0

    def add(self, finding: Any) -> None:
        self.count += 1
        if finding.signature in self.seen:
            return
        self.seen.add(finding.signature)
        row = {
            "kind": finding.kind,
            "error": finding.error,
            "where": finding.where,
            "message": finding.message,
            "input_hex": finding.data[:4096].hex(),
            "input_len": len(finding.data),
        }
        with self.path.open("a") as out:
            out.write(json.dumps(row) + "\n")


def _worker(args: argparse.Namespace) -> None:
    work = Path(args.work)
    tdir = work / args.worker
    if args.engine == "atheris":
        import atheris

        with atheris.instrument_imports(include=["meshd"]):
            from tests.fuzz import mutate, targets
    else:
        from tests.fuzz import mutate, targets
    target = targets.BY_NAME[args.worker]
    decoder = target.setup(_load_world(work))
    seeds = _read_corpus(tdir / "corpus")
    recorder = _Recorder(tdir / "findings.jsonl")

    accepted = [False]

    def tracked(data: bytes) -> object:
        accepted[0] = False
        value = decoder(data)
        accepted[0] = True
        return value

    def one(data: bytes) -> bool:
        """Run the oracle; True if the input decoded (an input worth mutating further)."""
        finding = targets.run_one(target, tracked, data, args.budget)
        if finding is not None:
            recorder.add(finding)
            return False
        return accepted[0]

    with targets.cpu_budget(args.budget):
        if args.engine == "atheris":
            _run_atheris(args, target, seeds, one, mutate.mutate, tdir)
        else:
            _run_mutate(args, target, seeds, one, mutate.mutate, tdir)


def _run_atheris(
    args: argparse.Namespace,
    target: Any,
    seeds: list[bytes],
    one: Callable[[bytes], bool],
    mutate: Callable[..., bytes],
    tdir: Path,
) -> None:
    import atheris

    def test_one_input(data: bytes) -> None:
        one(data)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            return bytes(atheris.Mutate(data, max_size))
        try:
            return mutate(data, target.shape, rng, seeds, 1)[:max_size]
        except Exception:  # noqa: BLE001 (a mutator bug must not stop the run)
            return bytes(atheris.Mutate(data, max_size))

    argv = [
        sys.argv[0],
        str(tdir / "corpus"),
        f"-max_len={target.max_len}",
        f"-timeout={max(10, int(args.budget * 10))}",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={tdir}/",
    ]
    if args.seconds:
        argv.append(f"-max_total_time={max(1, round(args.seconds))}")
    if args.examples:
        argv.append(f"-runs={args.examples}")
    atheris.Setup(argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


def _run_mutate(
    args: argparse.Namespace,
    target: Any,
    seeds: list[bytes],
    one: Callable[[bytes], bool],
    mutate: Callable[..., bytes],
    tdir: Path,
) -> None:
    rng = random.Random(args.seed)
    pool = list(seeds)
    kept = 0
    execs = 0
    start = time.monotonic()
    while True:
        if args.examples and execs >= args.examples:
            break
        if args.seconds and execs % 64 == 0 and time.monotonic() - start >= args.seconds:
            break
        data = mutate(rng.choice(pool), target.shape, rng, pool, rng.randint(1, 4))
        data = data[: target.max_len]
        execs += 1
        # Inputs that decode are the ones worth mutating further; keep a bounded number.
        if one(data) and kept < 2000 and rng.random() < 0.05:
            (tdir / "corpus" / f"kept-{kept:05d}").write_bytes(data)
            pool.append(data)
            kept += 1
    elapsed = time.monotonic() - start
    print(f"stat::number_of_executed_units: {execs}", file=sys.stderr)
    print(f"stat::average_exec_per_sec:     {int(execs / max(elapsed, 1e-9))}", file=sys.stderr)


# --- coverage --------------------------------------------------------------------------------


def _function_lines(path: str) -> set[int]:
    """Executable lines of the functions defined in ``path`` (not the module's or a class's
    body, which run once at import)."""
    source = Path(path).read_text()
    module = compile(source, path, "exec")
    lines: set[int] = set()
    pending = [c for c in module.co_consts if isinstance(c, types.CodeType)]
    while pending:
        code = pending.pop()
        if code.co_flags & inspect.CO_OPTIMIZED:
            first = code.co_firstlineno
            lines.update(n for _, _, n in code.co_lines() if n is not None and n != first)
        pending.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return lines


def _coverage(
    files: list[str], run: Callable[[bytes], object], inputs: Iterable[bytes]
) -> set[tuple[str, int]]:
    wanted = set(files)
    hits: set[tuple[str, int]] = set()

    def local(frame: types.FrameType, event: str, arg: object) -> Any:
        if event == "line":
            hits.add((frame.f_code.co_filename, frame.f_lineno))
        return local

    def global_trace(frame: types.FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_filename in wanted:
            hits.add((frame.f_code.co_filename, frame.f_lineno))
            return local
        return None

    sys.settrace(global_trace)
    try:
        for data in inputs:
            run(data)
    finally:
        sys.settrace(None)
    return hits


def _measure_coverage(target: Any, world: Any, seeds: list[bytes], corpus: list[bytes]) -> Any:
    import importlib

    from tests.fuzz import targets

    files = [str(Path(importlib.import_module(m).__file__ or "")) for m in target.modules]
    total = {(f, line) for f in files for line in _function_lines(f)}

    def runner() -> Callable[[bytes], object]:
        decoder = target.setup(world)  # fresh: some targets keep state (a link's senders)
        return lambda data: targets.run_one(target, decoder, data, 10.0)

    with targets.cpu_budget(10.0):
        seed_hits = _coverage(files, runner(), seeds) & total
        all_hits = seed_hits | (_coverage(files, runner(), corpus) & total)
    per_module = {
        m: {
            "hit": len({h for h in all_hits if h[0] == f}),
            "lines": len({t for t in total if t[0] == f}),
        }
        for m, f in zip(target.modules, files, strict=True)
    }
    return {
        "lines": len(total),
        "hit_by_seeds": len(seed_hits),
        "hit": len(all_hits),
        "percent_seeds": round(100 * len(seed_hits) / max(1, len(total)), 1),
        "percent": round(100 * len(all_hits) / max(1, len(total)), 1),
        "modules": per_module,
    }


# --- parent side -----------------------------------------------------------------------------


def _stat(text: str, name: str) -> int:
    match = re.search(rf"stat::{name}:\s+(\d+)", text)
    return int(match.group(1)) if match else 0


def _run_target(
    args: argparse.Namespace, work: Path, target: Any, world: Any, seconds: float
) -> dict[str, Any]:
    tdir = work / target.name
    (tdir / "corpus").mkdir(parents=True, exist_ok=True)
    seeds = target.seeds(world)
    for i, seed in enumerate(seeds):
        (tdir / "corpus" / f"seed-{i:03d}").write_bytes(seed)
    command = [
        "nice",
        "-n",
        "10",
        sys.executable,
        "-m",
        "benchmarks.fuzz",
        "--worker",
        target.name,
        "--work",
        str(work),
        "--engine",
        args.engine,
        "--budget",
        str(args.budget),
        "--seed",
        str(args.seed),
    ]
    if seconds:
        command += ["--seconds", f"{seconds:.1f}"]
    if args.examples:
        command += ["--examples", str(args.examples)]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    (tdir / "worker.log").write_text(done.stdout + done.stderr)
    execs = _stat(done.stderr, "number_of_executed_units")
    corpus = _read_corpus(tdir / "corpus")
    findings_path = tdir / "findings.jsonl"
    findings = (
        [json.loads(line) for line in findings_path.read_text().splitlines()]
        if findings_path.exists()
        else []
    )
    crashes = [p.name for p in tdir.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-"))]
    if done.returncode != 0 and not findings:
        findings.append(
            {
                "kind": "worker",
                "error": f"exit status {done.returncode}",
                "where": ", ".join(crashes) or "-",
                "message": done.stderr[-400:],
            }
        )
    return {
        "target": target.name,
        "what": target.what,
        "executions": execs,
        "execs_per_second": _stat(done.stderr, "average_exec_per_sec"),
        "seconds": round(elapsed, 1),
        "seeds": len(seeds),
        "corpus": len(corpus),
        "coverage": _measure_coverage(target, world, seeds, corpus),
        "findings": findings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="total, shared by targets")
    parser.add_argument("--examples", type=int, default=0, help="executions per target")
    parser.add_argument("--targets", nargs="*", default=None)
    parser.add_argument("--engine", choices=("atheris", "mutate"), default=_engine_default())
    parser.add_argument("--budget", type=float, default=1.0, help="CPU seconds per input")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, help="keep corpora and logs here")
    parser.add_argument("--output", type=Path, default=RESULTS / "fuzz.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0

    import msgpack

    from tests.fuzz import corpus, targets

    chosen = [targets.BY_NAME[n] for n in args.targets] if args.targets else list(targets.TARGETS)
    per_target = 0.0 if args.examples and args.seconds == 180.0 else args.seconds / len(chosen)
    with tempfile.TemporaryDirectory(prefix="meshd-fuzz-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        world = corpus.build_world()
        (work / "world.msgpack").write_bytes(msgpack.packb(world, use_bin_type=True))
        world = _load_world(work)
        rows = []
        print(
            f"engine {args.engine}; {per_target:.0f} s per target"
            if per_target
            else f"engine {args.engine}; {args.examples} executions per target"
        )
        print(
            f"{'target':<24} {'execs':>10} {'execs/s':>8} {'corpus':>7} "
            f"{'lines':>6} {'seeds':>6} {'fuzzed':>7} {'findings':>8}"
        )
        for target in chosen:
            row = _run_target(args, work, target, world, per_target)
            rows.append(row)
            cov = row["coverage"]
            print(
                f"{target.name:<24} {row['executions']:>10,} {row['execs_per_second']:>8,} "
                f"{row['corpus']:>7,} {cov['lines']:>6} {cov['percent_seeds']:>5.1f}% "
                f"{cov['percent']:>6.1f}% {len(row['findings']):>8}",
                flush=True,
            )
            for f in row["findings"]:
                print(f"    {f['kind']}: {f['error']} at {f['where']}: {f['message'][:160]}")
    total_findings = sum(len(r["findings"]) for r in rows)
    result = {
        "benchmark": "fuzz",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "engine": args.engine,
        "seconds_per_target": per_target,
        "examples_per_target": args.examples,
        "budget_cpu_seconds_per_input": args.budget,
        "measure": "executions and execs/s from the engine; coverage = lines of the functions "
        "of the target's modules hit by replaying the seeds, then the final corpus "
        "(sys.settrace), out of their executable lines",
        "target": "no finding",
        "executions": sum(r["executions"] for r in rows),
        "findings": total_findings,
        "targets": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['executions']:,} executions, {total_findings} findings; {args.output}")
    return 1 if total_findings else 0


if __name__ == "__main__":
    sys.exit(main())
