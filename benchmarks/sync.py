"""Anti-entropy sync at 10,000 members: time and bytes on the wire (pure sync core).

Two :class:`meshd.gossip.sync.SyncSession` objects talk through encoded messages in one
process, exactly as the daemon frames them on a stream (a 4-byte length, then the message;
Noise and Yamux overhead not counted). Each side ingests what it receives the way the daemon
does (:meth:`meshd.membership.Membership.ingest_batch`: decode, verify, merge) and commits it
to its SQLite store in one transaction (``Store.apply``, fsync included). Time is wall time for
the whole conversation, both sides' CPU in series (the daemon checks announcement signatures
in a worker thread, off its event loop; here they run in line).

The state: 10,000 members, each with a member certificate issued by the root and one signed
announcement (20,000 records). Cases:

- ``new-node``: a node holding nothing but the network receives the whole state;
- ``members-1pct``: both sides hold 10,000 members, 9,950 in common, 50 only on each side
  (100 members, 1 %, differ: 200 records);
- ``announcements-1pct``: the same 10,000 members on both sides; 100 of them (1 %) have a
  newer announcement on one side only (the other side's older one is replaced);
- ``in-sync``: the same state on both sides.

"Differing records" is the symmetric difference of the two sides' record sets, in bytes.

    .venv/bin/python -m benchmarks.sync [--members 10000] [--rounds 5]

Target (issue 3): in the 1 % cases, less than 5x the bytes of the differing records on the
wire, and done within 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.fixtures import T0, member_certificate
from meshd.gossip.sync import (
    SyncSession,
    decode_message_untrusted,
    encode_message,
)
from meshd.membership import Membership
from meshd.node.store import Store
from meshd.records import make_announcement, make_network, record_id
from meshd.trust.chain import Anchor
from meshd.trust.keys import SigningKey

RESULTS = Path(__file__).parent / "results"
NOW = T0 + 100
FRAME_HEADER = 4


@dataclass(frozen=True)
class Member:
    certificate: bytes
    announcement: bytes
    newer: bytes  # a later announcement of the same member


def build(count: int) -> tuple[Anchor, list[Member]]:
    root = SigningKey.generate()
    anchor = Anchor.from_network(make_network(root, "bench", T0))
    members = []
    for i in range(count):
        key = SigningKey.generate()
        cert = member_certificate(root, anchor, key, f"m{i}")
        announcements = [
            make_announcement(
                key,
                network_id=anchor.network_id,
                seq=seq,
                issued_at=T0 + seq,
                endpoints=[f"198.51.100.{i % 250}:51820"],
                addrs=[f"/ip4/198.51.100.{i % 250}/tcp/7100"],
            ).raw
            for seq in (1, 2)
        ]
        members.append(Member(cert, announcements[0], announcements[1]))
    return anchor, members


@dataclass
class Side:
    state: Membership
    store: Store

    def ingest(self, raws: Sequence[bytes]) -> None:
        """What NodeState.merge_batch does: merge, then one store transaction."""
        batch = self.state.ingest_batch(raws, NOW)
        if batch.stored or batch.dropped:
            self.store.apply([batch])


def make_side(anchor: Anchor, records: Sequence[bytes], db: Path) -> Side:
    side = Side(Membership(anchor), Store(db))
    side.ingest(records)
    return side


@dataclass(frozen=True)
class Conversation:
    seconds: float
    wire_bytes: int
    messages: int
    records_moved: int


def converse(a: Side, b: Side) -> Conversation:
    """One sync, ``a`` initiating, until both sides are done."""
    start = time.perf_counter()
    first, second = SyncSession(a.state), SyncSession(b.state)
    wire = encode_message(first.start())
    moved, messages, records = len(wire) + FRAME_HEADER, 1, 0
    turn = [(second, b), (first, a)]
    i = 0
    while True:
        session, side = turn[i % 2]
        step = session.receive(decode_message_untrusted(wire))
        if step.records:
            records += len(step.records)
            side.ingest(step.records)
        if step.reply is None:
            break
        wire = encode_message(step.reply)
        moved += len(wire) + FRAME_HEADER
        messages += 1
        if session.done:
            break
        i += 1
    seconds = time.perf_counter() - start
    return Conversation(seconds, moved, messages, records)


def case_records(
    case: str, members: list[Member], count: int, rng: random.Random
) -> tuple[list[bytes], list[bytes]]:
    """The record sets of the two sides (initiator first)."""
    full = [r for m in members[:count] for r in (m.certificate, m.announcement)]
    if case == "new-node":
        return [], full
    if case == "in-sync":
        return full, list(full)
    differ = count // 100
    if case == "members-1pct":
        shuffled = members[: count + differ // 2]
        rng.shuffle(shuffled)
        common = shuffled[: count - differ // 2]
        only_a = shuffled[count - differ // 2 : count]
        only_b = shuffled[count:]
        a = [r for m in common + only_a for r in (m.certificate, m.announcement)]
        b = [r for m in common + only_b for r in (m.certificate, m.announcement)]
        return a, b
    if case == "announcements-1pct":
        newer = set(rng.sample(range(count), differ))
        b = [
            r
            for i, m in enumerate(members[:count])
            for r in (m.certificate, m.newer if i in newer else m.announcement)
        ]
        return full, b
    raise ValueError(case)


CASES = ("new-node", "members-1pct", "announcements-1pct", "in-sync")


def run_case(
    case: str, anchor: Anchor, members: list[Member], count: int, rounds: int, tmp: Path
) -> dict[str, Any]:
    runs: list[Conversation] = []
    for r in range(rounds):
        rng = random.Random(r)
        a_records, b_records = case_records(case, members, count, rng)
        a = make_side(anchor, a_records, tmp / f"{case}-{r}-a.db")
        b = make_side(anchor, b_records, tmp / f"{case}-{r}-b.db")
        ids_a, ids_b = set(a.state.record_ids()), set(b.state.record_ids())
        raw_of: dict[bytes, bytes] = {record_id(raw): raw for raw in [*a_records, *b_records]}
        differing = sum(len(raw_of[rid]) for rid in ids_a ^ ids_b)
        result = converse(a, b)
        assert a.state.digest() == b.state.digest(), f"{case}: not converged"
        assert a.store.count() == b.store.count() == len(a.state)
        runs.append(result)
        a.store.close()
        b.store.close()
        print(
            f"  {case} round {r + 1}: {result.seconds:.3f} s, {result.wire_bytes:,} bytes in "
            f"{result.messages} messages, {result.records_moved} records; differing records "
            f"{differing:,} bytes ({result.wire_bytes / max(differing, 1):.2f}x)",
            flush=True,
        )
    seconds = [c.seconds for c in runs]
    wire = [c.wire_bytes for c in runs]
    return {
        "case": case,
        "records_total": len(a.state),
        "differing_records": len(ids_a ^ ids_b),
        "differing_bytes": differing,
        "seconds": seconds,
        "median_seconds": statistics.median(seconds),
        "wire_bytes": wire,
        "median_wire_bytes": statistics.median(wire),
        "messages": [c.messages for c in runs],
        "records_moved": [c.records_moved for c in runs],
        "wire_over_differing": statistics.median(wire) / max(differing, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS / "sync.json")
    args = parser.parse_args()
    start = time.perf_counter()
    anchor, members = build(args.members + args.members // 200)
    print(f"built {len(members):,} members in {time.perf_counter() - start:.1f} s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="meshd-bench-sync-") as tmp:
        for case in CASES:
            rows.append(run_case(case, anchor, members, args.members, args.rounds, Path(tmp)))
    print()
    print(f"{'case':<20} {'time':>8} {'on the wire':>13} {'differing':>11} {'ratio':>7}")
    for row in rows:
        print(
            f"{row['case']:<20} {row['median_seconds']:>7.3f}s {row['median_wire_bytes']:>13,.0f}"
            f" {row['differing_bytes']:>11,} {row['wire_over_differing']:>6.2f}x"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "sync",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "members": args.members,
        "rounds": args.rounds,
        "measure": "pure sync core, both sides in one process; wire bytes = encoded messages "
        "+ 4-byte frame headers; time includes verify, merge and the store commit on both sides",
        "target": "1 % cases: wire bytes < 5x the differing records, time < 1 s",
        "cases": rows,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
