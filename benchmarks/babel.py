"""Babel core: Update processing rate with a 10,000-route table (pure core, no I/O).

One :class:`meshd.babel.core.BabelCore` with a wired interface hears one neighbour
(Hellos and an IHU first, so the link is up), then that neighbour's Updates for ``--routes``
IPv6 /64 prefixes from one originator, packed as babeld packs them (Router-Id, Next Hop,
compressed Updates, up to 1,400 bytes a datagram). Decoding, parsing, feasibility, selection,
events and the triggered updates the core queues (and packs, via ``datagrams_to_send``) are
all counted. Phases:

- ``fill``: every prefix is new: 10,000 installations;
- ``refresh``: the same Updates again (what a periodic full update costs);
- ``new-seqno``: the originator's seqno goes up by one (every entry changes, no reroute);
- ``retract``: every prefix retracted.

    .venv/bin/python -m benchmarks.babel [--routes 10000] [--rounds 5]

Reroute after a link cut (``--reroute``, as root): four network namespaces in a ring of veth
links (n0-n1-n2-n3-n0), one router each, every router with the same Hello interval. n2
announces fd00:b0::2/128. n0 reaches it through n1 or n3 (two hops either way). Each
repetition finds the neighbour n0 uses, then cuts the link between that neighbour and n2 *on
n2's side* with nftables (drop everything in and out of that veth): no end loses its
carrier, so only lost Hellos tell. The figure is the time from the cut until n0's kernel
route for the prefix goes out of its other link (polled every 5 ms). Then the link is healed
and the ring left to settle. The same ring runs meshd (``meshd up --wg-backend none
--babel-interface ...``) then babeld 1.12, in one run:

    sudo .venv/bin/python -m benchmarks.babel --reroute [--hello 1] [--repeat 5]

Results in benchmarks/results/babel.json (each part keeps the other's figures).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from meshd.babel.codec import encode_packet
from meshd.babel.core import BabelCore
from meshd.babel.expand import Route, build_updates, ihu
from meshd.babel.numbers import INFINITY
from meshd.babel.packet import Packet
from meshd.babel.tlv import Hello

RESULTS = Path(__file__).parent / "results"
NEIGHBOUR = IPv6Address("fe80::2")
US = IPv6Address("fe80::1")
ORIGINATOR = bytes.fromhex("0200000000000002")
PER_PACKET = 100  # routes per datagram; the loop below halves it when a packet is too big


def prefixes(count: int) -> list[IPv6Network]:
    base = int(IPv6Address("2001:db8::"))
    return [IPv6Network((base + (i << 64), 64)) for i in range(count)]


def packets(nets: list[IPv6Network], seqno: int, metric: int) -> list[bytes]:
    """The neighbour's Updates for ``nets``, at most 1,400 bytes a datagram."""
    routes = [Route(net, seqno, metric, 400, ORIGINATOR, NEIGHBOUR) for net in nets]
    out: list[bytes] = []
    i = 0
    while i < len(routes):
        count = PER_PACKET
        while True:
            data = encode_packet(Packet(tuple(build_updates(routes[i : i + count]))))
            if len(data) <= 1400 or count == 1:
                break
            count //= 2
        out.append(data)
        i += count
    return out


def fresh_core() -> BabelCore:
    core = BabelCore(bytes.fromhex("0100000000000001"))
    core.add_interface("eth0", kind="wired", hello_interval=4.0, link_local=US)
    core.handle_timer(0.0)
    for n in range(1, 4):
        hello = Hello(n, 400)
        payload = encode_packet(Packet((hello, ihu(96, 400, US))))
        core.receive("eth0", NEIGHBOUR, payload, float(n))
    core.datagrams_to_send(10.0)
    while core.next_event() is not None:
        pass
    return core


def feed(core: BabelCore, data: list[bytes], now: float) -> float:
    """Seconds to receive ``data`` and do what it calls for (events, datagrams)."""
    start = time.perf_counter()
    for payload in data:
        core.receive("eth0", NEIGHBOUR, payload, now)
    while core.next_event() is not None:
        pass
    core.datagrams_to_send(now + 1.0)
    return time.perf_counter() - start


def measure(count: int) -> dict[str, float]:
    nets = prefixes(count)
    phases: list[tuple[str, Callable[[], list[bytes]]]] = [
        ("fill", lambda: packets(nets, 1, 96)),
        ("refresh", lambda: packets(nets, 1, 96)),
        ("new-seqno", lambda: packets(nets, 2, 96)),
        ("retract", lambda: packets(nets, 2, INFINITY)),
    ]
    core = fresh_core()
    seconds: dict[str, float] = {}
    for n, (name, build) in enumerate(phases):
        data = build()
        seconds[name] = feed(core, data, 20.0 + n)
        if name == "fill":
            assert sum(1 for r in core.routes() if r.selected) == count, "routes not installed"
    return seconds


# --- reroute in a ring of namespaces ---------------------------------------------------------

RING = 4
PREFIX = "fd00:b0::2/128"
ADDRESS = "fd00:b0::2"


def sh(*args: str, check: bool = True) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


class Ring:
    """``RING`` namespaces, node i linked to i+1 by a veth pair; in node a the end towards
    node b is called ``to{b}``. n2 holds the prefix's address on its loopback."""

    def __init__(self) -> None:
        self.tag = f"bb{os.getpid() % 100000}"
        self.names = [f"{self.tag}n{i}" for i in range(RING)]
        self.processes: list[subprocess.Popen[bytes]] = []
        self.work = Path(tempfile.mkdtemp(prefix="meshd-babel-ring-"))

    def ns(self, i: int) -> str:
        return self.names[i]

    def build(self) -> Ring:
        for ns in self.names:
            sh("ip", "netns", "add", ns)
            for knob in ("all", "default"):
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{knob}.accept_dad=0")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for a in range(RING):
            b = (a + 1) % RING
            sh("ip", "link", "add", f"to{b}", "netns", self.ns(a), "type", "veth",
               "peer", "name", f"to{a}", "netns", self.ns(b))  # fmt: skip
        for a in range(RING):
            for b in self.links(a):
                sh("ip", "-n", self.ns(a), "link", "set", f"to{b}", "up")
        sh("ip", "-n", self.ns(2), "addr", "add", PREFIX, "dev", "lo")
        return self

    def links(self, a: int) -> list[int]:
        return sorted({(a - 1) % RING, (a + 1) % RING})

    def spawn(self, i: int, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = (self.work / f"{name}.log").open("wb")
        env = {**os.environ, "MESHD_LOG": "WARNING"}
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(i), *argv], stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )  # fmt: skip
        log.close()
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def device_to(self, i: int) -> str | None:
        """The interface of node i's kernel route for the prefix, if any."""
        out = sh("ip", "-n", self.ns(i), "-6", "route", "show", PREFIX, check=False).split()
        return out[out.index("dev") + 1] if "dev" in out else None

    def block(self, i: int, ifname: str) -> None:
        rules = f"""table inet ringcut {{
    chain i {{
        type filter hook input priority 0;
        iifname "{ifname}" drop
    }}
    chain o {{
        type filter hook output priority 0;
        oifname "{ifname}" drop
    }}
}}
"""
        subprocess.run(
            ["ip", "netns", "exec", self.ns(i), "nft", "-f", "-"],
            input=rules,
            text=True,
            check=True,
        )

    def unblock(self, i: int) -> None:
        sh("ip", "netns", "exec", self.ns(i), "nft", "delete", "table", "inet", "ringcut",
           check=False)  # fmt: skip

    def close(self) -> None:
        self.stop_all()
        for ns in self.names:
            for pid in sh("ip", "netns", "pids", ns, check=False).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)


@contextlib.contextmanager
def ring() -> Iterator[Ring]:
    built = Ring()
    try:
        yield built.build()
    finally:
        built.close()


def start_meshd(net: Ring, hello: float) -> None:
    meshd = [sys.executable, "-m", "meshd"]
    for i in range(RING):
        state = net.work / f"meshd{i}"
        sh("ip", "netns", "exec", net.ns(i), *meshd, "init", "--network", f"ring{i}",
           "--state-dir", str(state))  # fmt: skip
        links = [a for b in net.links(i) for a in ("--babel-interface", f"to{b}")]
        originate = ["--babel-originate", PREFIX] if i == 2 else []
        argv = [*meshd, "up", "--wg-backend", "none", "--listen", "/ip4/127.0.0.1/tcp/4001",
                "--state-dir", str(state), "--babel-hello-interval", str(hello),
                *links, *originate]  # fmt: skip
        net.spawn(i, argv, f"meshd{i}")


def start_babeld(net: Ring, hello: float) -> None:
    for i in range(RING):
        lines = [
            f"state-file {net.work / f'babeld{i}.state'}",
            f"pid-file {net.work / f'babeld{i}.pid'}",
            "default type wired",
            f"default hello-interval {hello}",
            *(f"interface to{b}" for b in net.links(i)),
            f"redistribute local ip {PREFIX} allow" if i == 2 else "",
            "redistribute local deny",
        ]
        conf = net.work / f"babeld{i}.conf"
        conf.write_text("\n".join(line for line in lines if line) + "\n")
        net.spawn(i, ["babeld", "-c", str(conf)], f"babeld{i}")


def wait_until(condition: Callable[[], bool], limit: float, poll: float = 0.005) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > limit:
            raise TimeoutError(f"not within {limit} s")
        time.sleep(poll)
    return time.monotonic() - start


def reroutes(net: Ring, repeat: int, hello: float) -> list[float]:
    """Cut the link n0's route uses, far side; seconds until n0 uses its other link."""
    wait_until(lambda: net.device_to(0) is not None, 60, 0.1)
    figures: list[float] = []
    for _ in range(repeat):
        time.sleep(6 * hello)  # settled: every neighbour's history full again
        device = net.device_to(0)
        assert device is not None
        via = int(device.removeprefix("to"))

        def moved(old: str = device) -> bool:
            return net.device_to(0) not in (old, None)

        net.block(2, f"to{via}")
        try:
            took = wait_until(moved, 60)
        finally:
            net.unblock(2)
        figures.append(took)
    return figures


def measure_reroute(repeat: int, hello: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, start in (("meshd", start_meshd), ("babeld", start_babeld)):
        with ring() as net:
            start(net, hello)
            runs = reroutes(net, repeat, hello)
        out[name] = {
            "median_s": round(statistics.median(runs), 3),
            "min_s": round(min(runs), 3),
            "max_s": round(max(runs), 3),
            "runs_s": [round(r, 3) for r in runs],
        }
    return out


def babeld_version() -> str:
    done = subprocess.run(["babeld", "-V"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}"


def save(path: Path, update: dict[str, Any]) -> None:
    """Merge ``update`` into the results file: each part keeps the other's figures."""
    result: dict[str, Any] = {}
    if path.exists():
        result = json.loads(path.read_text())
    result.update(update)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reroute", action="store_true", help="the ring reroute, as root")
    parser.add_argument("--hello", type=float, default=1.0, help="Hello interval (reroute)")
    parser.add_argument("--repeat", type=int, default=5, help="cuts per router (reroute)")
    parser.add_argument("--output", type=Path, default=RESULTS / "babel.json")
    args = parser.parse_args()
    if args.reroute:
        figures = measure_reroute(args.repeat, args.hello)
        print(f"reroute at n0 after a far-side cut, 4-node ring, Hello {args.hello:g} s")
        print(f"{'router':<8} {'median':>8} {'min':>8} {'max':>8}")
        for name, row in figures.items():
            print(f"{name:<8} {row['median_s']:>7.3f}s {row['min_s']:>7.3f}s {row['max_s']:>7.3f}s")
        save(
            args.output,
            {
                "reroute": {
                    "benchmark": "reroute after a far-side link cut, 4-node ring of namespaces",
                    "hello_interval_s": args.hello,
                    "repeat": args.repeat,
                    "babeld": babeld_version(),
                    "machine": machine(),
                    "date": time.strftime("%Y-%m-%d"),
                    **figures,
                }
            },
        )
        return
    runs = [measure(args.routes) for _ in range(args.rounds)]
    print(f"{'phase':<10} {'median':>9} {'Updates/s':>11}")
    phases: dict[str, dict[str, float]] = {}
    for name in runs[0]:
        median = statistics.median(run[name] for run in runs)
        rate = args.routes / median
        phases[name] = {"median_s": round(median, 4), "updates_per_s": round(rate)}
        print(f"{name:<10} {median:>8.3f}s {rate:>11,.0f}")
    save(
        args.output,
        {
            "benchmark": "babel core Update processing",
            "routes": args.routes,
            "rounds": args.rounds,
            "machine": machine(),
            "phases": phases,
        },
    )


if __name__ == "__main__":
    main()
