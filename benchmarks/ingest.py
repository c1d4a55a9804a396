"""Ingest of signed announcements through the membership core, against raw PyNaCl verification.

Both sides check the same Ed25519 signatures over the same bytes. The reference only verifies
(with the verify keys built beforehand, its fastest form); meshd decodes, verifies, merges into
the CRDT and persists to SQLite in batches. Rounds alternate, reference then meshd, so both see
the same machine load; medians are reported.

    .venv/bin/python -m benchmarks.ingest [--members 1000] [--rounds 5]

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
from pathlib import Path

import nacl.signing

from meshd.keys import SigningKey, WireGuardKey
from meshd.membership import Membership
from meshd.records import (
    CONTEXTS,
    Announcement,
    Kind,
    Role,
    make_announcement,
    make_certificate,
    make_network,
    signed_body,
)
from meshd.store import Store
from meshd.trust import Anchor

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
            make_certificate(root, network_id=anchor.network_id, subject=key.public,
                             role=Role.MEMBER, serial=os.urandom(16), not_before=T0,
                             not_after=T0 + 10**7, name=f"m{i}",
                             wg_key=WireGuardKey.generate().public).raw
        )
    rounds: list[list[bytes]] = []
    for r in range(per_member):
        rounds.append([
            make_announcement(key, network_id=anchor.network_id, seq=r + 1, issued_at=T0 + r,
                              endpoints=[f"192.0.2.{i % 250}:51820"],
                              addrs=[f"/ip4/192.0.2.{i % 250}/tcp/4001"]).raw
            for i, key in enumerate(keys)
        ])
    return anchor, certs, rounds


def reference(announcements: list[bytes], anchor: Anchor) -> float:
    """Raw PyNaCl: verify each signature over context || body, keys prepared in advance."""
    from meshd.records import decode_untrusted

    decoded = [decode_untrusted(raw, Announcement) for raw in announcements]
    verify_keys = {a.node_key: nacl.signing.VerifyKey(a.node_key) for a in decoded}
    jobs = [(verify_keys[a.node_key], CONTEXTS[Kind.ANNOUNCEMENT] + signed_body(a), a.signature)
            for a in decoded]
    start = time.perf_counter()
    for vk, message, signature in jobs:
        vk.verify(message, signature)
    return len(jobs) / (time.perf_counter() - start)


def meshd_ingest(announcements: list[bytes], anchor: Anchor, certs: list[bytes],
                 db_dir: Path) -> float:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--per-member", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    anchor, certs, per_round = build(args.members, args.per_member)
    announcements = [raw for batch in per_round for raw in batch]
    refs, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            refs.append(reference(announcements, anchor))
            ours.append(meshd_ingest(announcements, anchor, certs, Path(tmp)))
            print(f"round {r + 1}: raw PyNaCl verify {refs[-1]:,.0f}/s   "
                  f"meshd ingest {ours[-1]:,.0f}/s   ({ours[-1] / refs[-1]:.0%})")
    ref_median, our_median = statistics.median(refs), statistics.median(ours)
    ratio = our_median / ref_median
    print(f"median: raw {ref_median:,.0f}/s, meshd {our_median:,.0f}/s -> {ratio:.0%} "
          f"(target >= 80%) over {len(announcements):,} announcements from {args.members:,} members")
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "ingest",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
        "announcements": len(announcements),
        "members": args.members,
        "batch": BATCH,
        "raw_verify_per_s": refs,
        "meshd_ingest_per_s": ours,
        "median_raw_per_s": ref_median,
        "median_meshd_per_s": our_median,
        "ratio": ratio,
        "target_ratio": 0.8,
    }
    (RESULTS / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
