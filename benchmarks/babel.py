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

Results in benchmarks/results/babel.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from meshd.babel.codec import encode_packet
from meshd.babel.core import BabelCore
from meshd.babel.expand import Route, build_updates, ihu
from meshd.babel.tlv import INFINITY, Hello, Packet

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS / "babel.json")
    args = parser.parse_args()
    runs = [measure(args.routes) for _ in range(args.rounds)]
    print(f"{'phase':<10} {'median':>9} {'Updates/s':>11}")
    phases: dict[str, dict[str, float]] = {}
    for name in runs[0]:
        median = statistics.median(run[name] for run in runs)
        rate = args.routes / median
        phases[name] = {"median_s": round(median, 4), "updates_per_s": round(rate)}
        print(f"{name:<10} {median:>8.3f}s {rate:>11,.0f}")
    result = {
        "benchmark": "babel core Update processing",
        "routes": args.routes,
        "rounds": args.rounds,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "phases": phases,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
