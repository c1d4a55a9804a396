"""Ingest of signed announcements through the membership core, against raw PyNaCl verification.

Both sides check the same Ed25519 signatures over the same bytes. The reference only verifies,
in one thread, with the verify keys built beforehand (its fastest form). meshd decodes,
verifies, merges into the CRDT and persists to SQLite in batches, two ways:

- serial: everything in one thread, one record after the other;
- pipelined: the way the daemon ingests a sync batch. Signatures of batch n are checked in a
  worker thread (libsodium releases the GIL) while the core merges and the store persists
  batch n-1; the core then skips only the signature it was told was checked.

Rounds alternate (reference, serial, pipelined) so all see the same machine load; medians are
reported and saved to benchmarks/results/ingest.json.

    .venv/bin/python -m benchmarks.ingest [--members 1000] [--per-member 5] [--rounds 5]

Target (issue 2): meshd >= 80% of the raw verification rate.
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

from meshd.keys import SigningKey, WireGuardKey
from meshd.membership import Membership
from meshd.records import (
    CONTEXTS,
    Announcement,
    Kind,
    Role,
    decode_untrusted,
    make_announcement,
    make_certificate,
    make_network,
    signed_body,
)
from meshd.store import Store
from meshd.trust import Anchor, check_announcement_signatures

RESULTS = Path(__file__).parent / "results"
T0 = 1_800_000_000
BATCH = 500


def build(members: int, per_member: int) -> tuple[Anchor, list[bytes], list[list[bytes]]]:
    root = SigningKey.generate()
    anchor = Anchor.from_network(make_network(root, "bench", T0))
    certs: list[bytes] = []
    keys: list[SigningKey] = []
    for i in range(members):
        key = SigningKey.generate()
        keys.append(key)
        certs.append(
            make_certificate(
                root,
                network_id=anchor.network_id,
                subject=key.public,
                role=Role.MEMBER,
                serial=os.urandom(16),
                not_before=T0,
                not_after=T0 + 10**7,
                name=f"m{i}",
                wg_key=WireGuardKey.generate().public,
            ).raw
        )
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


def meshd_ingest(
    announcements: list[bytes], anchor: Anchor, certs: list[bytes], db_dir: Path
) -> float:
    """meshd: decode, verify, merge, persist in batches of BATCH."""
    state = Membership(anchor)
    store = Store(db_dir / f"bench-{time.monotonic_ns()}.db")
    store.apply([state.ingest_untrusted(raw, T0) for raw in certs])
    start = time.perf_counter()
    batch = []
    for raw in announcements:
        batch.append(state.ingest_untrusted(raw, T0 + 100))
        if len(batch) >= BATCH:
            store.apply(batch)
            batch = []
    store.apply(batch)
    elapsed = time.perf_counter() - start
    assert store.count() == len(certs) + len(certs)  # one current announcement per member
    store.close()
    return len(announcements) / elapsed


def meshd_pipelined(
    announcements: list[bytes], anchor: Anchor, certs: list[bytes], db_dir: Path
) -> float:
    """meshd: decode a batch, check its signatures in a worker thread while the previous
    batch is merged and persisted."""
    state = Membership(anchor)
    store = Store(db_dir / f"bench-{time.monotonic_ns()}.db")
    store.apply([state.ingest_untrusted(raw, T0) for raw in certs])
    batches = [announcements[i : i + BATCH] for i in range(0, len(announcements), BATCH)]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as worker:
        previous = None
        for raw_batch in [*batches, None]:
            if raw_batch is not None:
                decoded = [decode_untrusted(raw, Announcement) for raw in raw_batch]
                checking = worker.submit(check_announcement_signatures, decoded)
            if previous is not None:
                records, results = previous
                store.apply(
                    [
                        state.ingest(record, T0 + 100, signature_checked=True)
                        for record, error in zip(records, results.result(), strict=True)
                        if error is None
                    ]
                )
            previous = (decoded, checking) if raw_batch is not None else None
    elapsed = time.perf_counter() - start
    assert store.count() == len(certs) + len(certs)
    store.close()
    return len(announcements) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--per-member", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    anchor, certs, per_round = build(args.members, args.per_member)
    announcements = [raw for batch in per_round for raw in batch]
    refs, ours, piped = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            refs.append(reference(announcements, anchor))
            ours.append(meshd_ingest(announcements, anchor, certs, Path(tmp)))
            piped.append(meshd_pipelined(announcements, anchor, certs, Path(tmp)))
            print(
                f"round {r + 1}: raw PyNaCl verify {refs[-1]:,.0f}/s   "
                f"meshd serial {ours[-1]:,.0f}/s ({ours[-1] / refs[-1]:.0%})   "
                f"meshd pipelined {piped[-1]:,.0f}/s ({piped[-1] / refs[-1]:.0%})"
            )
    ref_median, our_median = statistics.median(refs), statistics.median(ours)
    piped_median = statistics.median(piped)
    ratio, piped_ratio = our_median / ref_median, piped_median / ref_median
    print(
        f"median over {len(announcements):,} announcements from {args.members:,} members: "
        f"raw verify {ref_median:,.0f}/s; meshd serial {our_median:,.0f}/s = {ratio:.0%}; "
        f"meshd pipelined {piped_median:,.0f}/s = {piped_ratio:.0%} (target >= 80%)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "ingest",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "announcements": len(announcements),
        "members": args.members,
        "batch": BATCH,
        "raw_verify_per_s": refs,
        "meshd_serial_per_s": ours,
        "meshd_pipelined_per_s": piped,
        "median_raw_per_s": ref_median,
        "median_meshd_serial_per_s": our_median,
        "median_meshd_pipelined_per_s": piped_median,
        "ratio_serial": ratio,
        "ratio_pipelined": piped_ratio,
        "target_ratio": 0.8,
    }
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
