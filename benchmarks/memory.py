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
    in use, in mmapped chunks, free; its anonymous RSS); the run prints their growth a
    member over the idle daemon: where RSS goes beyond the traced heap.

Results: printed, and saved to benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "memory.json"
PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"idle_mib": 64.0, "per_member_kib": 2.0, "startup_10000_s": 2.0, "uapi_1000_s": 1.0}
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


# --- synthetic stores ------------------------------------------------------------------------


# Run in the interpreter of the tree whose daemon is measured (cwd: that tree), so that the
# store is written by the code that reads it.
BUILD = """
import json, sys
from pathlib import Path
from benchmarks.memory import build_store
extra = {} if sys.argv[3] == "certified" else {"joined": sys.argv[3]}
print(json.dumps(build_store(Path(sys.argv[1]), int(sys.argv[2]), **extra)))
"""


def build_store_in(
    root: Path, state_dir: Path, members: int, joined: str = "certified"
) -> dict[str, float]:
    """:func:`build_store`, run by the tree at ``root`` (a tree from before ``--joined``
    builds certified members only)."""
    done = subprocess.run(
        [PYTHON, "-c", BUILD, str(state_dir), str(members), joined],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    )
    built: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return built


def commit_of(root: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or "?"


INVITE_USES = 100
"""With ``--joined invited``: the members of one invite (a team's)."""


def build_store(state_dir: Path, members: int, joined: str = "certified") -> dict[str, float]:
    """A founder's state dir holding ``members`` members in all (the founder included):
    each certified by the root (``certified``), or joined under an invite of
    :data:`INVITE_USES` uses, admitted by the founder (``invited``: an enrollment signed
    with the invite's key, countersigned by the founder, as ``meshd join`` and the sponsor
    do)."""
    from meshd.membership import Membership
    from meshd.node.statedir import init_network
    from meshd.records import Role, make_admission, make_announcement, make_certificate
    from meshd.trust.invites import Issuer, create_invite, enroll
    from meshd.trust.keyfiles import read_secret
    from meshd.trust.keys import SigningKey, WireGuardKey

    started = time.perf_counter()
    now = int(time.time())
    node = init_network(
        state_dir, network_name="memory", node_name="n0", root_key_path=None, at=now - 3600
    )
    root = SigningKey(read_secret(node.paths.root_key))
    founder = SigningKey(read_secret(node.paths.node_key))
    network_id = node.anchor.network_id
    raws: list[bytes] = []
    invite = None
    for i in range(1, members):
        key = SigningKey(i.to_bytes(4, "big") * 8)
        wg_key = WireGuardKey.generate().public
        if joined == "invited":
            if (i - 1) % INVITE_USES == 0:
                invite = create_invite(
                    Issuer(root), node.anchor, now=now - 3600, lifetime=86400, uses=INVITE_USES
                )
            assert invite is not None
            enrollment = enroll(invite, node_key=key.public, wg_key=wg_key, name=f"m{i}", now=now)
            raws.append(make_admission(founder, enrollment=enrollment, admitted_at=now).raw)
        else:
            raws.append(
                make_certificate(
                    root,
                    network_id=network_id,
                    subject=key.public,
                    role=Role.MEMBER,
                    serial=os.urandom(16),
                    not_before=now - 3600,
                    not_after=now + 365 * 86400,
                    name=f"m{i}",
                    wg_key=wg_key,
                ).raw
            )
        host = f"198.18.{i >> 8 & 255}.{i & 255}"
        raws.append(
            make_announcement(
                key,
                network_id=network_id,
                seq=1,
                issued_at=now,
                endpoints=(f"{host}:51820",),
                addrs=(f"/ip4/{host}/tcp/7100",),
            ).raw
        )
    signed = time.perf_counter()
    state = Membership(node.anchor)
    node.store.load_into(state, now)
    for start in range(0, len(raws), 5000):
        node.store.apply([state.ingest_batch(raws[start : start + 5000], now)])
    standing = len(state.members(now))
    node.close()
    if standing != members:
        raise RuntimeError(f"built {standing} standing members, wanted {members}")
    return {
        "sign_s": round(signed - started, 2),
        "merge_s": round(time.perf_counter() - signed, 2),
    }


# --- namespaces and daemons --------------------------------------------------------------------


def have_userspace() -> bool:
    return os.geteuid() == 0 and shutil.which("wireguard-go") is not None


@contextlib.contextmanager
def namespace(name: str) -> Iterator[str]:
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
    found = {
        "arenas": number("# arenas allocated current"),
        "allocated_blocks": number("# bytes in allocated blocks"),
        "available_blocks": number("# bytes in available blocks"),
        "unused_pools": int(pools.group(1)) * int(pools.group(2)) if pools else 0,
        "malloc_in_use": info.uordblks,
        "malloc_mmapped": info.hblkhd,
        "malloc_free": info.fordblks,
        "rss_anon": 1024 * int(re.search(r"RssAnon:\s+(\d+)", status).group(1)),
    }
    path = os.environ["MESHD_MEMORY_ALLOCATORS"]
    with open(path + ".part", "w") as out:
        json.dump(found, out)
    os.rename(path + ".part", path)
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
) -> dict[str, Any]:
    """Start ``meshd up``, wait until it is up plus ``settle`` s, read its RSS, stop it."""
    command = up_command(PYTHON, netns, state_dir, backend, ifname, 40000 + os.getpid() % 20000)
    log_path = state_dir.parent / f"{state_dir.name}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if trace or trim or allocators:
        site = state_dir.parent / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env["PYTHONPATH"] = os.pathsep.join([str(site), str(root)])
    if trace:
        env["PYTHONTRACEMALLOC"] = "8"
        env["MESHD_MEMORY_TRACE"] = str(state_dir.parent / f"{state_dir.name}.trace")
    if trim:
        env["MESHD_MEMORY_TRIM"] = "1"
    if allocators:
        env["MESHD_MEMORY_ALLOCATORS"] = str(state_dir.parent / f"{state_dir.name}.allocators")
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
        time.sleep(settle)
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
            result["allocators"] = allocator_counts(pid, state_dir)
        return result
    finally:
        helpers = wireguard_go_pids(ifname)
        stop(process)
        # A daemon killed before it stopped its wireguard-go (a slow shutdown at 10,000
        # peers) leaves it running outside the namespace's life: stop it here.
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
                root, state_dir, backend, netns, ifname, settle, timeout, trace, trim, allocators
            )
        return {"members": members, "store": build, **run}


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
    return {key: round((after[key] - before[key]) / n) for key in after if key != "arenas"}


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
        "--allocators",
        action="store_true",
        help="the daemons' allocators' counts (Python's, the C heap's, RSS) per member: "
        "where RSS goes beyond the heap (not with --trace, whose own allocations would count)",
    )
    parser.add_argument(
        "--joined",
        choices=["certified", "invited"],
        default="certified",
        help="members certified by the root, or joined under invites and admitted (a real "
        "network's members; a tree from before this option builds certified ones only)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="another checkout whose daemons run too, each size right after this tree's",
    )
    args = parser.parse_args()
    if args.allocators and args.trace:
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
    rows: dict[Path, list[dict[str, Any]]] = {root: [] for root in trees}
    if args.repeat < 1:
        parser.error("--repeat is at least 1")
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
            if "allocators_per_member" in row:
                parts = ", ".join(f"{k} {v}" for k, v in row["allocators_per_member"].items())
                print(f"allocators at {row['members']} ({root.name}), bytes a member: {parts}")
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
