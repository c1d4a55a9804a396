"""A real ``meshd up`` on a synthetic store (:mod:`benchmarks.synthetic_store`), started and
measured: in a network namespace of its own with wireguard-go (the userspace backend), its RSS
read from /proc once it is up and has settled, the times of its log lines (store loaded,
WireGuard programmed), and on request what its Python heap holds (a tracemalloc snapshot on
SIGUSR1), its allocators' own counts, or its RSS after ``malloc_trim`` (:func:`run_daemon`,
:func:`measure_size`). Every process it starts is stopped by PID, every namespace deleted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.fixtures import sigterm_unwinds
from benchmarks.synthetic_store import build_store_in

PYTHON = sys.executable
READY = "meshd up: node"
PROGRAMMED = "programmed from the store"
LOADED = "loaded "


def rss_of(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid``, MiB."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return {"rss_mib": round(found["VmRSS"], 1), "peak_mib": round(found["VmHWM"], 1)}


def have_userspace() -> bool:
    return os.geteuid() == 0 and shutil.which("wireguard-go") is not None


@contextlib.contextmanager
def namespace(name: str) -> Iterator[str]:
    """A network namespace of this run's, deleted at exit (also on SIGTERM: sigterm_unwinds)."""
    with sigterm_unwinds():
        yield from _namespace(name)


def _namespace(name: str) -> Iterator[str]:
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def log_time(line: str) -> float:
    stamp = line.split(" ", 1)[0].rstrip("Z")
    return dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC).timestamp()


# Loaded by the daemon's interpreters (and the one its ``exec`` starts) when tracing: on
# SIGUSR1, a snapshot of the Python heap goes to the file named in MESHD_MEMORY_TRACE; with
# ``--trim``, on SIGUSR2 the C heap gives back to the system what is free (malloc_trim).
SITECUSTOMIZE = r"""
import os, signal, tracemalloc
def _dump(signum, frame):
    import gc
    gc.collect()
    tracemalloc.take_snapshot().dump(os.environ["MESHD_MEMORY_TRACE"] + ".part")
    os.rename(os.environ["MESHD_MEMORY_TRACE"] + ".part", os.environ["MESHD_MEMORY_TRACE"])
def _trim(signum, frame):
    import ctypes, gc
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
def _allocators(signum, frame):
    import ctypes, json, re, sys, tempfile
    with tempfile.TemporaryFile("w+") as text:
        saved = os.dup(2)
        os.dup2(text.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        text.seek(0)
        stats = text.read()
    def number(label):
        found = re.search(re.escape(label) + r"\s*=\s*([\d,]+)", stats)
        return int(found.group(1).replace(",", "")) if found else 0
    pools = re.search(r"(\d+) unused pools \* (\d+) bytes", stats)
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Info
    info = libc.mallinfo2()
    status = open("/proc/self/status").read()
    try:  # SQLite's own count of what it holds (its page cache, its statements)
        sqlite = ctypes.CDLL("libsqlite3.so.0")
        sqlite.sqlite3_memory_used.restype = ctypes.c_int64
        sqlite_used = sqlite.sqlite3_memory_used()
    except (OSError, AttributeError):
        sqlite_used = 0
    kinds = {}
    kind = None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                start, end = (int(x, 16) for x in head[0].split("-"))
                size = end - start
                name = head[5] if len(head) > 5 else ""
                if name in ("[heap]", "[stack]"):
                    kind = name.strip("[]")
                elif name:
                    kind = "files"
                elif size == 8 << 20:  # a thread's stack (its guard page a mapping apart)
                    kind = "thread_stacks"
                else:  # Python's arenas (1 MiB each, side by side merged), mmapped blocks
                    kind = "mappings"
            elif head[0] == "Anonymous:":
                kinds[kind] = kinds.get(kind, 0) + 1024 * int(head[1])
    found = {
        "arenas": number("# arenas allocated current"),
        "allocated_blocks": number("# bytes in allocated blocks"),
        "available_blocks": number("# bytes in available blocks"),
        "unused_pools": int(pools.group(1)) * int(pools.group(2)) if pools else 0,
        "malloc_in_use": info.uordblks,
        "malloc_mmapped": info.hblkhd,
        "malloc_free": info.fordblks,
        "sqlite_in_use": sqlite_used,
        "rss_anon": 1024 * int(re.search(r"RssAnon:\s+(\d+)", status).group(1)),
    }
    found.update({"anon_" + k: v for k, v in sorted(kinds.items())})
    path = os.environ["MESHD_MEMORY_ALLOCATORS"]
    if os.path.exists(path + ".collect"):  # the last read (not a timeline's: it would change
        # what comes after): what a full collection finds unreachable (cyclic garbage holds
        # its blocks until the oldest generation is collected), the blocks it frees (CPython's
        # free lists too), and the anonymous RSS after it
        import gc
        blocks = sys.getallocatedblocks()
        found["garbage_objects"] = gc.collect()
        found["garbage_blocks"] = blocks - sys.getallocatedblocks()
        status = open("/proc/self/status").read()
        found["rss_anon_collected"] = 1024 * int(
            re.search(r"RssAnon:\s+(\d+)", status).group(1)
        )
    with open(path + ".part", "w") as out:
        json.dump(found, out)
    os.rename(path + ".part", path)
def _count_blocks(path, seconds, every):
    # Python's blocks in use (sys.getallocatedblocks) every `every` s from the interpreter's
    # start: when the start's peak comes, and how far above what stays it goes; and the
    # main thread's innermost meshd frames at each count (what ran then). The counts go
    # into arrays (no object a count: a list of rows grew the count it measured by three
    # blocks a sample, ~600 a second at 5 ms), each place's text made once.
    import json, sys, threading, time
    from array import array
    places = {}
    def where(main):
        frame, found = sys._current_frames().get(main), []
        while frame is not None and len(found) < 3:
            name = frame.f_code.co_filename
            if "/meshd/" in name:
                found.append(f"{name.rsplit('/meshd/', 1)[1]}:{frame.f_lineno}")
            frame = frame.f_back
        text = " < ".join(found)
        return places.setdefault(text, len(places))
    def run():
        main = threading.main_thread().ident
        stamps, counts, at = array("d"), array("q"), array("l")
        start = time.time()
        while time.time() - start < seconds:
            stamps.append(time.time())
            counts.append(sys.getallocatedblocks())
            at.append(where(main))
            time.sleep(every)
        names = sorted(places, key=places.__getitem__)
        rows = [(round(t, 4), n, names[i]) for t, n, i in zip(stamps, counts, at)]
        with open(path + ".part", "w") as out:
            json.dump(rows, out)
        os.rename(path + ".part", path)
    threading.Thread(target=run, daemon=True).start()
if "MESHD_MEMORY_BLOCKS" in os.environ:
    _where, _seconds, _every = os.environ["MESHD_MEMORY_BLOCKS"].rsplit(",", 2)
    _count_blocks(_where, float(_seconds), float(_every))
if tracemalloc.is_tracing() and "MESHD_MEMORY_TRACE" in os.environ:
    signal.signal(signal.SIGUSR1, _dump)
elif "MESHD_MEMORY_ALLOCATORS" in os.environ:
    signal.signal(signal.SIGUSR1, _allocators)
if "MESHD_MEMORY_TRIM" in os.environ:
    signal.signal(signal.SIGUSR2, _trim)
"""


def signalled_file(pid: int, path: Path, what: str, timeout: float) -> Path:
    """Send the daemon SIGUSR1 and wait until it has written ``path`` (its ``what``)."""
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} from {pid} in {timeout:.0f} s")
        time.sleep(0.1)
    return path


def heap_snapshot(pid: int, state_dir: Path) -> Path:
    """Ask a traced daemon for its heap snapshot (SIGUSR1) and wait for the file."""
    return signalled_file(pid, state_dir.parent / f"{state_dir.name}.trace", "heap snapshot", 120)


def allocator_counts(pid: int, state_dir: Path) -> dict[str, int]:
    """The daemon's allocators' own counts (SIGUSR1 with ``--allocators``): Python's object
    allocator (bytes in blocks handed out, free blocks in pools in use, pools unused in its
    arenas), the C heap (mallinfo2: in use, in mmapped chunks, free) and its anonymous RSS."""
    path = state_dir.parent / f"{state_dir.name}.allocators"
    counts: dict[str, int] = json.loads(
        signalled_file(pid, path, "allocator counts", 60).read_text()
    )
    return counts


def heap_by_place(path: Path) -> dict[str, dict[str, int]]:
    """Bytes held, by module (innermost meshd frame, else innermost file) and by type."""
    import tracemalloc

    snapshot = tracemalloc.Snapshot.load(str(path))
    places: dict[str, int] = {}
    lines: dict[str, int] = {}
    for trace in snapshot.traces:
        frames = list(reversed(trace.traceback))  # the innermost frame first
        ours = next((f for f in frames if "/meshd/" in f.filename), None)
        if ours is None:  # nothing of meshd's on the stack (8 frames deep)
            place = line = Path(frames[0].filename).name
        else:
            place = ours.filename.split("/meshd/", 1)[-1]
            line = f"{place}:{ours.lineno}"
            if ours is not frames[0]:
                library = f" <- {Path(frames[0].filename).name}"
                place, line = place + library, line + library
        places[place] = places.get(place, 0) + trace.size
        lines[line] = lines.get(line, 0) + trace.size
    return {"by_place": places, "by_line": lines, "total": {"bytes": sum(places.values())}}


def up_command(
    python: Path | str, netns: str | None, state_dir: Path, backend: str, ifname: str, port: int
) -> list[str]:
    """``meshd up`` on a synthetic store, as the benchmarks start it (in ``netns`` if given)."""
    command = [
        str(python), "-m", "meshd", "up",
        "--state-dir", str(state_dir),
        "--wg-backend", backend,
        "--interface", ifname,
        "--listen", "/ip4/127.0.0.1/tcp/0",
        "--listen-port", str(port),
    ]  # fmt: skip
    return ["ip", "netns", "exec", netns, *command] if netns is not None else command


def run_daemon(
    root: Path,
    state_dir: Path,
    backend: str,
    netns: str | None,
    ifname: str,
    settle: float,
    timeout: float,
    trace: bool = False,
    trim: bool = False,
    allocators: bool = False,
    timeline: Sequence[float] = (),
    blocks: float = 0.0,
    blocks_every: float = 0.005,
) -> dict[str, Any]:
    """Start ``meshd up``, wait until it is up plus ``settle`` s, read its RSS, stop it;
    ``timeline``: also its RSS and allocators' counts that many seconds after it was up;
    ``blocks``: Python's blocks in use every ``blocks_every`` s for that many seconds from
    its start (:func:`blocks_summary`)."""
    command = up_command(PYTHON, netns, state_dir, backend, ifname, 40000 + os.getpid() % 20000)
    log_path = state_dir.parent / f"{state_dir.name}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    blocks_path = state_dir.parent / f"{state_dir.name}.blocks"
    if trace or trim or allocators or timeline or blocks:
        site = state_dir.parent / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env["PYTHONPATH"] = os.pathsep.join([str(site), str(root)])
    if trace:
        env["PYTHONTRACEMALLOC"] = "8"
        env["MESHD_MEMORY_TRACE"] = str(state_dir.parent / f"{state_dir.name}.trace")
    if trim:
        env["MESHD_MEMORY_TRIM"] = "1"
    if allocators or timeline:
        env["MESHD_MEMORY_ALLOCATORS"] = str(state_dir.parent / f"{state_dir.name}.allocators")
    if blocks:
        env["MESHD_MEMORY_BLOCKS"] = f"{blocks_path},{blocks},{blocks_every}"
    with open(log_path, "wb") as log_file:
        spawned = time.time()
        process = subprocess.Popen(
            command, cwd=root, stdout=log_file, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + timeout
        up = None
        while up is None:
            if process.poll() is not None:
                raise RuntimeError(f"meshd up exited: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"meshd up not ready in {timeout} s: {log_path}")
            up = next((ln for ln in log_path.read_text().splitlines() if READY in ln), None)
            time.sleep(0.05)
        ready = time.monotonic()
        moments = []
        for at in sorted(timeline):
            time.sleep(max(0.0, ready + at - time.monotonic()))
            pid = daemon_pid(process.pid)
            rss = rss_of(pid)["rss_mib"]
            (state_dir.parent / f"{state_dir.name}.allocators").unlink(missing_ok=True)
            counts = allocator_counts(pid, state_dir)
            moments.append({"at": at, "rss_mib": rss, "allocators": counts})
        time.sleep(max(0.0, ready + settle - time.monotonic()))
        pid = daemon_pid(process.pid)
        samples = []
        for _ in range(3):
            samples.append(rss_of(pid))
            time.sleep(1.0)
        lines = log_path.read_text().splitlines()
        result: dict[str, Any] = {
            "rss_mib": statistics.median(s["rss_mib"] for s in samples),
            "peak_mib": samples[-1]["peak_mib"],
            "up_s": round(log_time(up) - spawned, 3),
            "ready_after_spawn_s": round(ready - (deadline - timeout), 3),
        }
        for label, marker in (("loaded_s", LOADED), ("programmed_s", PROGRAMMED)):
            line = next((ln for ln in lines if marker in ln), None)
            if line is not None:
                result[label] = round(log_time(line) - spawned, 3)
        children = child_rss(pid)
        if children:
            result["wireguard_go_rss_mib"] = children
        if trim:
            os.kill(pid, signal.SIGUSR2)
            time.sleep(2.0)
            result["rss_trimmed_mib"] = rss_of(pid)["rss_mib"]
        if trace:
            result["heap"] = heap_by_place(heap_snapshot(pid, state_dir))
        if allocators:
            counts_path = state_dir.parent / f"{state_dir.name}.allocators"
            counts_path.unlink(missing_ok=True)
            Path(f"{counts_path}.collect").touch()  # RSS is read: the daemon may collect now
            result["allocators"] = allocator_counts(pid, state_dir)
        if moments:
            result["timeline"] = moments
        if blocks:
            wait_until = time.monotonic() + blocks + 30
            while not blocks_path.exists() and time.monotonic() < wait_until:
                time.sleep(0.2)
            rows = json.loads(blocks_path.read_text())
            result["blocks"] = blocks_summary(rows, spawned, log_time(up))
        return result
    finally:
        stop_with_wireguard(process, ifname)


def blocks_summary(
    rows: Sequence[Sequence[Any]], spawned: float, up: float, tops: int = 5
) -> dict[str, Any]:
    """The peak of Python's blocks in use and when (seconds after spawning), the count at
    ``meshd up`` and at the end, and the counts every 0.25 s; and once up, the median count
    (``steady``) and the ``tops`` highest quarter-seconds (none within 0.5 s of a higher
    one), each with its highest count, how far above the median, and what the daemon ran
    then (its innermost meshd frames, where the rows have them)."""
    peak = max(rows, key=lambda row: row[1])
    once_up = [row[1] for row in rows if row[0] >= up] or [rows[-1][1]]
    steady = int(statistics.median(once_up))
    at_up = next((row[1] for row in rows if row[0] >= up), rows[-1][1])
    series, next_at = [], 0.0
    highest: dict[int, Sequence[Any]] = {}  # quarter-second -> its highest row, once up
    for row in rows:
        t, n = row[0], row[1]
        if t - spawned >= next_at:
            series.append((round(t - spawned, 2), int(n)))
            next_at += 0.25
        if t >= up:
            quarter = int((t - spawned) * 4)
            if quarter not in highest or n > highest[quarter][1]:
                highest[quarter] = row
    chosen: list[int] = []
    for quarter in sorted(highest, key=lambda q: -highest[q][1]):
        if len(chosen) == tops:
            break
        if all(abs(quarter - other) > 2 for other in chosen):
            chosen.append(quarter)
    return {
        "peak": int(peak[1]),
        "peak_after_spawn_s": round(peak[0] - spawned, 2),
        "at_up": int(at_up),
        "last": int(rows[-1][1]),
        "last_after_spawn_s": round(rows[-1][0] - spawned, 2),
        "series": series,
        "steady": steady,
        "tops_once_up": [
            {
                "after_spawn_s": round(highest[q][0] - spawned, 2),
                "blocks": int(highest[q][1]),
                "above_steady": int(highest[q][1]) - steady,
                "running": highest[q][2] if len(highest[q]) > 2 else "",
            }
            for q in sorted(chosen)
        ],
    }


def stop_with_wireguard(process: subprocess.Popen[bytes], ifname: str) -> None:
    """Stop ``meshd up`` (:func:`stop`) and the wireguard-go it ran for ``ifname``: a daemon
    killed before it stopped its wireguard-go (a slow shutdown at 10,000 peers) leaves it
    running outside the namespace's life."""
    helpers = wireguard_go_pids(ifname)
    stop(process)
    for helper in helpers & wireguard_go_pids(ifname):
        with contextlib.suppress(ProcessLookupError):
            os.kill(helper, signal.SIGTERM)


def daemon_pid(pid: int) -> int:
    """The python process of ``meshd up`` (``ip netns exec`` execs it, so usually ``pid``)."""
    exe = os.readlink(f"/proc/{pid}/exe")
    if "python" in Path(exe).name:
        return pid
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        return daemon_pid(int(child))
    raise RuntimeError(f"no python process under {pid}")


def wireguard_go_pids(ifname: str) -> set[int]:
    """The wireguard-go processes running ``ifname``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if Path(argv[0].decode()).name == "wireguard-go" and argv[1:2] == [ifname.encode()]:
                    found.add(int(entry.name))
    return found


def child_rss(pid: int) -> float | None:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in children:
        with contextlib.suppress(OSError):
            if "wireguard-go" in Path(f"/proc/{child}/cmdline").read_text():
                return rss_of(int(child))["rss_mib"]
    return None


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure_size(
    root: Path,
    members: int,
    backend: str,
    settle: float,
    tag: str,
    timeout: float,
    trace: bool = False,
    trim: bool = False,
    joined: str = "certified",
    allocators: bool = False,
    timeline: Sequence[float] = (),
    blocks: float = 0.0,
    blocks_every: float = 0.005,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="meshd-memory-") as tmp:
        state_dir = Path(tmp) / f"n{members}"
        build = build_store_in(root, state_dir, members, joined)
        ifname = f"mm{tag}{members % 100000}"[:15]
        netns = None
        with contextlib.ExitStack() as stack:
            if backend == "userspace":
                netns = stack.enter_context(namespace(f"meshd-mem-{tag}-{members}"))
            run = run_daemon(
                root,
                state_dir,
                backend,
                netns,
                ifname,
                settle,
                timeout,
                trace,
                trim,
                allocators,
                timeline,
                blocks,
                blocks_every,
            )
        return {"members": members, "store": build, **run}
