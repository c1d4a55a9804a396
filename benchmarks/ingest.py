"""Ingest of signed announcements through the membership core, against raw PyNaCl verification.

Both sides check the same Ed25519 signatures over the same bytes. The reference only verifies,
in one thread, with the verify keys built beforehand (its fastest form). meshd decodes,
verifies, merges into the CRDT and persists to SQLite, one transaction per batch, two ways:

- serial: :meth:`Membership.ingest_batch` then :meth:`Store.apply`, everything in one thread;
- daemon: the way ``meshd up`` ingests a sync message (meshd.daemon.ingest): records decoded
  on the event-loop thread, announcement signatures checked in a worker thread while the loop
  is free for other tasks, then merged and stored on the loop thread. Besides its rate, the
  time the loop thread itself spends per record is reported: how long a sync keeps every
  other task waiting.

Each member's first announcement is new (its endpoints become known: an Updated event); the
following ones are refreshes that say nothing new. Batches are ``--batch`` announcements
(default 500, 1,000 and 5,000: the daemon commits once per sync message, and one message
carries up to ~5,700 announcements of this size, so a new node's first sync is the last case).
Rounds alternate (reference, then every meshd variant) so all see the same machine load;
medians are reported and saved to benchmarks/results/ingest.json.

    .venv/bin/python -m benchmarks.ingest [--members 1000] [--per-member 5] [--rounds 9]
        [--batch 500 1000 5000]

Target (issue 2): meshd serial >= 80% of the raw verification rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nacl.signing

from benchmarks.fixtures import T0, member_certificate
from meshd.membership import Membership, decode_batch_untrusted
from meshd.node.store import Store
from meshd.records import (
    CONTEXTS,
    Announcement,
    Kind,
    decode_untrusted,
    make_announcement,
    make_network,
    signed_body,
)
from meshd.trust.announced import drop_bad_announcement_signatures
from meshd.trust.chain import Anchor
from meshd.trust.keys import SigningKey

RESULTS = Path(__file__).parent / "results"


def build(members: int, per_member: int) -> tuple[Anchor, list[bytes], list[list[bytes]]]:
    root = SigningKey.generate()
    anchor = Anchor.from_network(make_network(root, "bench", T0))
    certs: list[bytes] = []
    keys: list[SigningKey] = []
    for i in range(members):
        key = SigningKey.generate()
        keys.append(key)
        certs.append(member_certificate(root, anchor, key, f"m{i}"))
    rounds: list[list[bytes]] = []
    for r in range(per_member):
        rounds.append(
            [
                make_announcement(
                    key,
                    network_id=anchor.network_id,
                    seq=r + 1,
                    issued_at=T0 + r,
                    endpoints=[f"192.0.2.{i % 250}:51820"],
                    addrs=[f"/ip4/192.0.2.{i % 250}/tcp/4001"],
                ).raw
                for i, key in enumerate(keys)
            ]
        )
    return anchor, certs, rounds


def reference(announcements: list[bytes], anchor: Anchor) -> float:
    """Raw PyNaCl: verify each signature over context || body, keys prepared in advance."""
    decoded = [decode_untrusted(raw, Announcement) for raw in announcements]
    verify_keys = {a.node_key: nacl.signing.VerifyKey(a.node_key) for a in decoded}
    jobs = [
        (verify_keys[a.node_key], CONTEXTS[Kind.ANNOUNCEMENT] + signed_body(a), a.signature)
        for a in decoded
    ]
    start = time.perf_counter()
    for vk, message, signature in jobs:
        vk.verify(message, signature)
    return len(jobs) / (time.perf_counter() - start)


def _fresh(anchor: Anchor, certs: list[bytes], db_dir: Path) -> tuple[Membership, Store]:
    state = Membership(anchor)
    store = Store(db_dir / f"bench-{time.monotonic_ns()}.db")
    store.apply([state.ingest_batch(certs, T0)])
    return state, store


def _done(store: Store, members: int) -> None:
    assert store.count() == 2 * members  # a credential and one current announcement each
    store.close()


def meshd_serial(
    announcements: list[bytes], anchor: Anchor, certs: list[bytes], db_dir: Path, batch: int
) -> float:
    """meshd in one thread: decode, verify, merge, persist, one transaction per batch."""
    state, store = _fresh(anchor, certs, db_dir)
    start = time.perf_counter()
    for i in range(0, len(announcements), batch):
        store.apply([state.ingest_batch(announcements[i : i + batch], T0 + 100)])
    elapsed = time.perf_counter() - start
    _done(store, len(certs))
    return len(announcements) / elapsed


def meshd_daemon(
    announcements: list[bytes], anchor: Anchor, certs: list[bytes], db_dir: Path, batch: int
) -> tuple[float, float]:
    """meshd as the daemon ingests a sync message: signatures in a worker thread.

    Returns the rate and the loop thread's own time per record (seconds)."""
    state, store = _fresh(anchor, certs, db_dir)
    loop_time = 0.0
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as worker:
        for i in range(0, len(announcements), batch):
            t0 = time.perf_counter()
            records, _ = decode_batch_untrusted(announcements[i : i + batch])
            t1 = time.perf_counter()
            kept, _ = worker.submit(drop_bad_announcement_signatures, records).result()
            t2 = time.perf_counter()
            store.apply([state.merge_batch(kept, T0 + 100, announcements_checked=True)])
            loop_time += (t1 - t0) + (time.perf_counter() - t2)
    elapsed = time.perf_counter() - start
    _done(store, len(certs))
    return len(announcements) / elapsed, loop_time / len(announcements)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--per-member", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch", type=int, nargs="+", default=[500, 1000, 5000])
    args = parser.parse_args()
    anchor, certs, per_round = build(args.members, args.per_member)
    announcements = [raw for batch in per_round for raw in batch]
    refs: list[float] = []
    serial: dict[int, list[float]] = {b: [] for b in args.batch}
    daemon: dict[int, list[float]] = {b: [] for b in args.batch}
    loop: dict[int, list[float]] = {b: [] for b in args.batch}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            refs.append(reference(announcements, anchor))
            line = [f"round {r + 1}: raw PyNaCl verify {refs[-1]:,.0f}/s"]
            for b in args.batch:
                serial[b].append(meshd_serial(announcements, anchor, certs, Path(tmp), b))
                rate, per_record = meshd_daemon(announcements, anchor, certs, Path(tmp), b)
                daemon[b].append(rate)
                loop[b].append(per_record)
                line.append(
                    f"batch {b}: serial {serial[b][-1] / refs[-1]:.0%}, "
                    f"daemon {daemon[b][-1] / refs[-1]:.0%}"
                )
            print("   ".join(line), flush=True)
    ref_median = statistics.median(refs)
    print(
        f"median over {len(announcements):,} announcements from {args.members:,} members, "
        f"{args.rounds} rounds: raw PyNaCl verify {ref_median:,.0f}/s "
        f"({1e6 / ref_median:.1f} us per signature)"
    )
    per_batch = {}
    for b in args.batch:
        s_med, d_med = statistics.median(serial[b]), statistics.median(daemon[b])
        l_med = statistics.median(loop[b])
        print(
            f"  batch {b:>5}: meshd serial {s_med:,.0f}/s = {s_med / ref_median:.1%} "
            f"(overhead {1e6 / s_med - 1e6 / ref_median:.1f} us per record); "
            f"daemon {d_med:,.0f}/s = {d_med / ref_median:.1%}, "
            f"loop thread busy {l_med * 1e6:.1f} us per record"
        )
        per_batch[str(b)] = {
            "meshd_serial_per_s": serial[b],
            "meshd_daemon_per_s": daemon[b],
            "daemon_loop_seconds_per_record": loop[b],
            "median_serial_per_s": s_med,
            "median_daemon_per_s": d_med,
            "median_loop_seconds_per_record": l_med,
            "ratio_serial": s_med / ref_median,
            "ratio_daemon": d_med / ref_median,
        }
    print("target: meshd serial >= 80% of the raw verification rate")
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "ingest",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "announcements": len(announcements),
        "members": args.members,
        "rounds": args.rounds,
        "raw_verify_per_s": refs,
        "median_raw_per_s": ref_median,
        "batches": per_batch,
        "target_ratio": 0.8,
    }
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
