"""Reading a large kernel routing table's dump, in one process: every route decoded and held
(what ``RtnlSocket.routes`` did before, its ``_dump``) against the header scan that decodes
only the routes a caller asks for (``meshd.wg.rtnetlink.routes_untrusted``), side by side.

The dump is built as the kernel sends one: N IPv4 routes of a BGP daemon (protocol 186, a
gateway each), a few of Babel's (protocol 42) and one default route, cut into datagrams of
at most 32 KiB. Three reads of it: the whole decode, the default routes (``dst_len=0``: the
MTU's derivation) and Babel's (``protocol=42``: its check of its kernel routes every 60 s);
for each the CPU time (median of ``--repeat``) and the most memory held while reading
(tracemalloc, one more read). No root needed; about 30 s at 1,000,000 routes.

    .venv/bin/python -m benchmarks.route_dump [--routes 1000000] [--repeat 3] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from meshd.wg import rtnetlink as rt

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DATAGRAM = 32 * 1024
SEQ = 7
BABEL_ROUTES = 100


def build_dump(routes: int) -> list[bytes]:
    """The dump's datagrams (see the module text)."""
    gateway = IPv4Address("192.0.2.1")
    messages = [rt.Route(rt.AF_INET, 0, 0, None, None, 2, gateway, None, 0, protocol=4, seq=SEQ)]
    for i in range(routes):
        dst = IPv4Address((1 << 24) + (i << 8))
        protocol = 42 if i < BABEL_ROUTES else 186
        messages.append(
            rt.Route(rt.AF_INET, 24, 0, dst, None, 2, gateway, None, 20, protocol=protocol, seq=SEQ)
        )
    datagrams: list[bytes] = []
    chunk = bytearray()
    for message in messages:
        encoded = rt.encode_message(message, flags=rt.NLM_F_MULTI)
        if len(chunk) + len(encoded) > DATAGRAM:
            datagrams.append(bytes(chunk))
            chunk = bytearray()
        chunk += encoded
    chunk += rt.encode_message(rt.Done(0, SEQ), flags=rt.NLM_F_MULTI)
    datagrams.append(bytes(chunk))
    return datagrams


def whole(datagrams: list[bytes]) -> list[rt.Route]:
    """The read of before: every message decoded and held until the dump's end."""
    found: list[Any] = []
    for data in datagrams:
        found.extend(m for m in rt.decode_messages_untrusted(data) if m.seq == SEQ)
    return [m for m in found if isinstance(m, rt.Route) and m.table == rt.RT_TABLE_MAIN]


def scanned(**kept: int) -> Callable[[list[bytes]], list[rt.Route]]:
    def read(datagrams: list[bytes]) -> list[rt.Route]:
        found: list[rt.Route] = []
        for data in datagrams:
            routes, _ = rt.routes_untrusted(data, SEQ, **kept)
            found += (r for r in routes if r.table == rt.RT_TABLE_MAIN)
        return found

    return read


def measure(read: Callable[[list[bytes]], list[rt.Route]], datagrams: list[bytes], repeat: int,
            ) -> dict[str, Any]:  # fmt: skip
    times = []
    found = 0
    for _ in range(repeat):
        started = time.process_time()
        found = len(read(datagrams))
        times.append(time.process_time() - started)
    tracemalloc.start()
    read(datagrams)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"cpu_s": round(statistics.median(times), 3), "peak_mib": round(peak / 2**20, 1),
            "routes_found": found}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS / "route-dump.json")
    args = parser.parse_args()
    datagrams = build_dump(args.routes)
    reads = {
        "whole decode (before)": whole,
        "default routes (dst_len=0)": scanned(dst_len=0),
        "Babel's routes (protocol=42)": scanned(protocol=42),
    }
    rows = {name: measure(read, datagrams, args.repeat) for name, read in reads.items()}
    print(f"a dump of {args.routes:,} routes in {len(datagrams):,} datagrams")
    print(f"{'read':32} {'CPU s':>7} {'peak MiB':>9} {'found':>9}")
    for name, row in rows.items():
        print(f"{name:32} {row['cpu_s']:7.3f} {row['peak_mib']:9.1f} {row['routes_found']:9,}")
    results = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "routes": args.routes,
        "datagrams": len(datagrams),
        "repeat": args.repeat,
        "reads": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(f"saved {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
