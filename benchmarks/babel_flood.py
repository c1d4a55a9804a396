"""Babel core under a neighbour flood (issue 9, attack 8): CPU, neighbours, bytes sent.

One :class:`meshd.babel.core.BabelCore` on a wired site link (Hello 4 s, as the daemon) has
one real neighbour, a router with a two-way link announcing one /48 (a Hello, an IHU and the
Update every 4 s). Then ``--flood`` well-formed Hellos arrive from random link-local sources,
spread evenly over ``--seconds`` of fake time, while the router keeps speaking. The loop is
the shell's: after every datagram the core's datagrams are taken, its events drained and
its timer asked; when the timer is due, ``handle_timer``. Measured (one core of the
machine): CPU seconds for the whole flood and per 1,000 Hellos, the largest neighbour
table, the bytes we sent during the flood and the 10 s after it, and how often the router's
route was missing when checked (after every 100 flood Hellos, and at each of its packets
after the flood). Run with the neighbour budget (the default, 64) and, for
comparison, with a budget too large to matter (what the core did before it had one; a
smaller flood, since its cost grows with the square of the flood)::

    .venv/bin/python -m benchmarks.babel_flood [--flood 20000] [--unbounded-flood 2000]

Results in benchmarks/results/babel_flood.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from meshd.babel.codec import encode_packet
from meshd.babel.core import BabelCore
from meshd.babel.expand import Route, build_updates, ihu
from meshd.babel.packet import Packet
from meshd.babel.tlv import Hello

RESULTS = Path(__file__).parent / "results"
US = IPv6Address("fe80::1")
ROUTER = IPv6Address("fe80::2")
ROUTER_ID = bytes.fromhex("0200000000000002")
ROUTER_PREFIX = IPv6Network("2001:db8:2::/48")
HELLO = 4.0
TAIL = 10.0


class Loop:
    """The shell's loop around one core, on a fake clock."""

    def __init__(self, core: BabelCore) -> None:
        self.core = core
        self.sent = 0

    def after(self, now: float) -> None:
        for _, _, payload in self.core.datagrams_to_send(now):
            self.sent += len(payload)
        while self.core.next_event() is not None:
            pass

    def advance(self, now: float) -> None:
        while (due := self.core.timer()) is not None and due <= now:
            self.core.handle_timer(max(due, 0.0))
            self.after(max(due, 0.0))

    def receive(self, source: IPv6Address, payload: bytes, now: float) -> None:
        self.advance(now)
        self.core.receive("eth1", source, payload, now)
        self.after(now)
        self.core.timer()


def router_packet(seqno: int) -> bytes:
    route = Route(ROUTER_PREFIX, 1, 0, 1600, ROUTER_ID, None)
    tlvs = (Hello(seqno, round(HELLO * 100)), ihu(96, round(HELLO * 100), US))
    return encode_packet(Packet(tlvs + tuple(build_updates([route]))))


def run(flood: int, seconds: float, budget: int | None) -> dict[str, Any]:
    core = BabelCore(bytes.fromhex("0100000000000001"))
    options = {} if budget is None else {"max_neighbours": budget}
    core.add_interface("eth1", kind="wired", hello_interval=HELLO, link_local=US, **options)  # type: ignore[arg-type]
    loop = Loop(core)
    router_seqno = 0
    now = 0.0
    for _ in range(4):  # the router comes up
        router_seqno += 1
        loop.receive(ROUTER, router_packet(router_seqno), now)
        now += HELLO
    assert core.route(ROUTER_PREFIX) is not None, "the router's route did not come up"
    sent_before = loop.sent
    rng = random.Random(8)
    spacing = seconds / flood
    next_router = now
    largest = missing = checks = 0
    cpu = time.process_time()
    for i in range(flood):
        now += spacing
        if now >= next_router:
            router_seqno += 1
            loop.receive(ROUTER, router_packet(router_seqno), now)
            next_router += HELLO
        source = IPv6Address(int(IPv6Address("fe80::")) | rng.getrandbits(64))
        hello = Hello(rng.getrandbits(16), round(HELLO * 100))
        loop.receive(source, encode_packet(Packet((hello,))), now)
        if i % 100 == 99:
            checks += 1
            largest = max(largest, len(core.neighbours()))
            missing += core.route(ROUTER_PREFIX) is None
    cpu = time.process_time() - cpu
    end = now + TAIL  # the flood stops; our Hellos still carry an IHU per neighbour left
    tail_cpu = time.process_time()
    while next_router <= end:
        router_seqno += 1
        loop.receive(ROUTER, router_packet(router_seqno), next_router)
        missing += core.route(ROUTER_PREFIX) is None
        checks += 1
        next_router += HELLO
    tail_cpu = time.process_time() - tail_cpu
    counters = core.counters()
    return {
        "flood_hellos": flood,
        "flood_seconds": seconds,
        "budget": budget if budget is not None else 64,
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_1000_hellos": round(1000 * cpu / flood * 1000, 2),
        "largest_neighbour_table": largest,
        "tail_s": TAIL,
        "tail_cpu_s": round(tail_cpu, 3),
        "bytes_sent_flood_and_tail": loop.sent - sent_before,
        "router_route_missing": f"{missing}/{checks} checks",
        "neighbours_evicted": counters["neighbours_evicted"],
        "neighbours_refused": counters["neighbours_refused"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--unbounded-flood", type=int, default=2_000)
    args = parser.parse_args()
    budgeted = run(args.flood, args.seconds, None)
    print("with the budget:", json.dumps(budgeted))
    seconds = args.seconds * args.unbounded_flood / args.flood  # the same rate
    unbounded = run(args.unbounded_flood, seconds, 10**9)
    print("without a budget that matters:", json.dumps(unbounded))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "babel_flood.json"
    path.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
                f"Python {platform.python_version()}",
                "with_budget": budgeted,
                "without_budget": unbounded,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
