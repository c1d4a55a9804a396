"""A join of N daemons on loopback: gossipsub's IHAVE rate limit and the control's latency.

A founder and N members that join by invite, one after the other (tests/daemon/support.py:
separate processes, ``--wg-backend none``), until every daemon lists every other as admitted.
Throughout, and for ``--after`` seconds past the join, the founder is asked ``peers`` and
``status`` in turn, both as the command line (``python -m meshd peers``: a process started)
and on its socket alone; the figures are each one's median and worst. With ``--stop-member
SECONDS`` the first member is stopped (SIGSTOP) that long from the sixth join on, so that
what its peers sent it is read at once when it goes on.

Every daemon counts the IHAVEs py-libp2p refused past its ten a second per peer (what it
logs as "IHAVE rate limit exceeded") and the IHAVEs it sent: a ``sitecustomize`` in a
temporary directory, put first on the daemons' PYTHONPATH, wraps
``GossipSub._check_ihave_rate_limit`` and ``GossipSub.send_rpc`` once libp2p loads them.

    .venv/bin/python -m benchmarks.join_control [--members 9] [--stop-member 15]

Results: benchmarks/results/join-control.json (``--output``).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.fixtures import RESULTS, stamp, write_result
from meshd.control.client import request
from tests.daemon import support
from tests.daemon.support import ROOT, Daemon, daemons, wait_for

_COUNTER = textwrap.dedent(
    """
    import importlib.abc, importlib.util, os, sys, time

    _OUT = os.environ["JOIN_CONTROL_COUNTS"]

    def _note(line):
        with open(_OUT, "a") as out:
            out.write(f"{time.time():.3f} {os.getpid()} {line}\\n")

    def _patch(module):
        gossipsub = module.GossipSub
        check, send = gossipsub._check_ihave_rate_limit, gossipsub.send_rpc

        def counted_check(self, peer_id, topic):
            allowed = check(self, peer_id, topic)
            if not allowed:
                _note(f"limited {peer_id}")
            return allowed

        def counted_send(self, peer_id, rpc, priority=False):
            if rpc.HasField("control") and rpc.control.ihave:
                _note(f"ihave {peer_id} {len(rpc.control.ihave)}")
            return send(self, peer_id, rpc, priority)

        gossipsub._check_ihave_rate_limit, gossipsub.send_rpc = counted_check, counted_send

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "libp2p.pubsub.gossipsub":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                _patch(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _Finder())
    """
)


def _cli(node: Daemon, command: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MESHD_CONFIG="/dev/null")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "meshd", command, "--state-dir", str(node.state_dir)],
        capture_output=True,
        check=True,
        env=env,
        cwd=ROOT,
    )
    return time.perf_counter() - started


def _socket(node: Daemon, command: str) -> float:
    started = time.perf_counter()
    request(node.state_dir / "meshd.sock", command, {}, timeout=10.0)
    return time.perf_counter() - started


def _summary(times: list[float]) -> dict[str, float]:
    return {
        "calls": len(times),
        "median_ms": round(statistics.median(times) * 1000, 1) if times else 0.0,
        "max_ms": round(max(times) * 1000, 1) if times else 0.0,
    }


def run(members: int, stop_member: float, after: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="join-control-"))
    (work / "site").mkdir()
    (work / "site" / "sitecustomize.py").write_text(_COUNTER)
    counts = work / "counts.txt"
    plain_env = support._env

    def counting_env() -> dict[str, str]:
        env = plain_env()
        env["PYTHONPATH"] = f"{work / 'site'}:{ROOT}"
        env["JOIN_CONTROL_COUNTS"] = str(counts)
        return env

    support._env = counting_env
    times: dict[str, list[float]] = {}
    phase = ["join"]
    done = threading.Event()
    result: dict[str, Any] = {**stamp("join_control"), "members": members}
    try:
        names = ["founder", *(f"m{i}" for i in range(members))]
        with daemons(work / "nodes", *names) as nodes:
            founder = nodes[0]
            founder.init()
            founder.up()

            def ask() -> None:
                while not done.is_set():
                    for command in ("peers", "status"):
                        for way, call in (("cli", _cli), ("socket", _socket)):
                            key = f"{phase[0]} {way} {command}"
                            times.setdefault(key, []).append(call(founder, command))

            asker = threading.Thread(target=ask)
            asker.start()
            started = time.monotonic()
            stopped = None
            try:
                for i, node in enumerate(nodes[1:]):
                    if stop_member and i == 5:
                        os.kill(_pid(nodes[1]), signal.SIGSTOP)
                        stopped = time.monotonic()
                    node.join(founder.invite())
                    if stopped is not None and time.monotonic() - stopped >= stop_member:
                        os.kill(_pid(nodes[1]), signal.SIGCONT)
                        stopped = None
                if stopped is not None:
                    time.sleep(max(0.0, stop_member - (time.monotonic() - stopped)))
                    os.kill(_pid(nodes[1]), signal.SIGCONT)

                def everyone() -> bool:
                    for node in nodes:
                        states = node.states()
                        if any(states.get(n) != "admitted" for n in names if n != node.name):
                            return False
                    return True

                wait_for(everyone, 120, "every daemon to list every other as admitted")
                result["join_s"] = round(time.monotonic() - started, 1)
                phase[0] = "after"
                time.sleep(after)
            finally:
                done.set()
                asker.join()
    finally:
        support._env = plain_env
    lines = counts.read_text().split("\n") if counts.exists() else []
    per_second: dict[tuple[str, str, int], int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 5 and parts[2] == "ihave":
            key = (parts[1], parts[3], int(float(parts[0])))
            per_second[key] = per_second.get(key, 0) + 1
    result["ihave_sent"] = sum(per_second.values())
    result["ihave_most_to_one_peer_in_a_second"] = max(per_second.values(), default=0)
    result["ihave_rate_limited"] = sum(1 for line in lines if " limited " in line)
    result["stop_member_s"] = stop_member
    result["latency"] = {key: _summary(value) for key, value in sorted(times.items())}
    return result


def _pid(node: Daemon) -> int:
    assert node.process is not None
    return node.process.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=9)
    parser.add_argument("--stop-member", type=float, default=0.0)
    parser.add_argument("--after", type=float, default=6.0)
    parser.add_argument("--label", default="")
    parser.add_argument("--output", type=Path, default=RESULTS / "join-control.json")
    args = parser.parse_args()
    result = run(args.members, args.stop_member, args.after)
    result["label"] = args.label
    print(
        f"{args.members + 1} daemons, joined in {result['join_s']} s: "
        f"{result['ihave_rate_limited']} IHAVEs rate-limited, {result['ihave_sent']} sent "
        f"(at most {result['ihave_most_to_one_peer_in_a_second']} a second to one peer)"
    )
    for key, summary in result["latency"].items():
        print(f"  {key}: {summary}")
    write_result(args.output, result)


if __name__ == "__main__":
    main()
