"""A sync session under a flood of random ids: what it holds and what each message costs.

One :class:`meshd.gossip.sync.SyncSession` (the side that serves) over a state of 1,000
members receives, round after round, the message of attack 4 in issue 9: an id list of
62,000 random record ids (about 1 MB, the message limit) claimed for the whole id space.
It runs with the session's budgets (``MAX_WANTED``, ``MAX_QUEUED``) and, for comparison, with
budgets too large to matter, which is how the session behaved before them. Figures per run:
the Python memory the session holds after the last round (tracemalloc, in a second pass),
the ids and items it holds (``SyncSession.held``), the ids it asked for, and the median time
to decode and handle one message (in a first pass, not traced).

    .venv/bin/python -m benchmarks.sync_flood [--rounds 32] [--ids 62000]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks.fixtures import T0, member_certificate
from meshd.gossip.sync import (
    MAX_QUEUED,
    MAX_WANTED,
    Message,
    Range,
    SyncSession,
    decode_message_untrusted,
    encode_message,
)
from meshd.membership import Membership
from meshd.records import make_network
from meshd.trust.chain import Anchor
from meshd.trust.keys import SigningKey

RESULTS = Path(__file__).parent / "results"


def _state(members: int) -> Membership:
    root = SigningKey.generate()
    anchor = Anchor.from_network(make_network(root, "bench", T0))
    state = Membership(anchor)
    certs = [
        member_certificate(root, anchor, SigningKey.generate(), f"m{i}") for i in range(members)
    ]
    state.ingest_batch(certs, T0 + 10)
    return state


def _floods(rounds: int, ids: int) -> list[bytes]:
    rng = random.Random(9)
    return [
        encode_message(
            Message(ids=((Range(0, 0), tuple(sorted(rng.randbytes(16) for _ in range(ids)))),))
        )
        for _ in range(rounds)
    ]


def _session(state: Membership, budgets: bool) -> SyncSession:
    if budgets:
        return SyncSession(state)
    unbounded = 1 << 40
    return SyncSession(state, max_wanted=unbounded, max_queued=unbounded)


def _run(state: Membership, floods: list[bytes], *, budgets: bool) -> dict[str, Any]:
    """One pass timed (no tracing), then one pass traced for the memory held."""
    session, times = _session(state, budgets), []
    for wire in floods:
        start = time.perf_counter()
        session.receive(decode_message_untrusted(wire))
        times.append(time.perf_counter() - start)
    del session
    session, asked = _session(state, budgets), 0
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for wire in floods:
            step = session.receive(decode_message_untrusted(wire))
            asked += len(step.reply.wants) if step.reply is not None else 0
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return {
        "budgets": budgets,
        "held_mib": round(held / 2**20, 1),
        "held_ids_and_items": session.held,
        "dropped": session.dropped,
        "ids_asked": asked,
        "median_ms_per_message": round(statistics.median(times) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=32)
    parser.add_argument("--ids", type=int, default=62_000)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=RESULTS / "sync_flood.json")
    args = parser.parse_args()
    state = _state(args.members)
    floods = _floods(args.rounds, args.ids)
    runs = [_run(state, floods, budgets=True), _run(state, floods, budgets=False)]
    for run in runs:
        print(
            f"budgets {'on ' if run['budgets'] else 'off'}: {run['held_mib']:7.1f} MiB held, "
            f"{run['held_ids_and_items']:>9,} ids/items, {run['ids_asked']:>9,} ids asked, "
            f"{run['median_ms_per_message']:6.1f} ms per message"
        )
    result = {
        "benchmark": "sync_flood",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "members": args.members,
        "rounds": args.rounds,
        "ids_per_message": args.ids,
        "message_bytes": len(floods[0]),
        "max_wanted": MAX_WANTED,
        "max_queued": MAX_QUEUED,
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.output}")


if __name__ == "__main__":
    main()
