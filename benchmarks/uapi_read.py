"""A ``get`` of a WireGuard device of N peers read by the UAPI client, in one process (CPU),
this tree beside a reference tree, alternated.

The reply is built as wireguard-go writes one (``encode_get_reply``): N peers as an idle
daemon's, each with an IPv4 endpoint, a link-local and an overlay /128, a keepalive of 25 s,
no handshake and a few handshake initiations sent. :class:`meshd.wg.uapi.UapiClient` reads
it in the pieces it reads a socket in (the socket itself left out: its ``_exchange`` hands
the parser the pieces), each tree in turn in a fresh interpreter of its own
(``PYTHONPATH`` = the tree). Three reads, each the median of ``--repeat``:

* ``first``: a client that expects nothing and has read nothing (a start);
* ``again``: the round's read: the desired peers expected (``PeersByKey``, as the daemon
  holds them), the same reply read before;
* ``counters``: the same, every read with a tenth of the peers' ``tx_bytes`` moved from
  the last (an idle daemon's unanswered peers send initiations between two reads).

Also a digest of what the reads returned, which must be the same for both trees. No root
needed; about 20 s at 10,000 peers.

    .venv/bin/python -m benchmarks.uapi_read --reference /tmp/ref [--peers 10000]
        [--repeat 7] [--rounds 3] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.synthetic_store import commit_of, run_script_in

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

READS = """
import gc, hashlib, json, random, statistics, sys, time
import trio
from meshd.addressing import host_prefix_of
from meshd.mesh.desired import PeersByKey
from meshd.trust.keys import WgKey
from meshd.wg.model import DeviceState, PeerConfig, PeerStatus
from meshd.wg.uapi import PIECE, UapiClient
from meshd.wg.uapi_reply import encode_get_reply

peers_n, repeat = int(sys.argv[1]), int(sys.argv[2])
rnd = random.Random(14)
LINK_LOCAL, OVERLAY = 0xFE80 << 112, 0xFD3A_1B2C_3D4E << 80
configs = []
for i in range(peers_n):
    nets = (host_prefix_of(LINK_LOCAL + rnd.getrandbits(64)), host_prefix_of(OVERLAY + i + 1))
    endpoint = f"198.18.{i >> 8 & 255}.{i & 255}:{51820 + (i >> 16)}"
    configs.append(PeerConfig(rnd.randbytes(32), endpoint, nets, 25))
sent = [148 * rnd.randrange(1, 20) for _ in configs]

def reply(moved):
    statuses = (PeerStatus(c, None, 0, sent[i] + 148 * (i in moved)) for i, c in enumerate(configs))
    return encode_get_reply(DeviceState(bytes(32), True, 51820, None, tuple(statuses)))

texts = [reply(set()), reply(set(rnd.sample(range(peers_n), peers_n // 10)))]

class Client(UapiClient):
    text = b""
    async def _exchange(self, request, what, feed, seconds):
        text = self.text
        for start in range(0, len(text), PIECE):
            if feed(text[start : start + PIECE]):
                return

def read(client, text):
    client.text = text
    start = time.process_time()
    state = trio.run(client.get)
    return time.process_time() - start, state

def digest(state):
    rows = [(p.public_key.hex(), p.config.endpoint, [str(n) for n in p.config.allowed_ips],
             p.config.persistent_keepalive, p.last_handshake, p.rx_bytes, p.tx_bytes)
            for p in state.peers]
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]

desired = PeersByKey.ordered(tuple(sorted(configs, key=lambda c: c.public_key)))
out, digests = {}, set()
first = []
for _ in range(repeat):
    seconds, state = read(Client("-"), texts[0])
    first.append(seconds)
    digests.add(digest(state))
again, counters = [], []
client = Client("-")
client.expect(desired)
read(client, texts[0])
for _ in range(repeat):
    seconds, state = read(client, texts[0])
    again.append(seconds)
    digests.add(digest(state))
    expected = sum(p.config is desired.get(WgKey(p.public_key)) for p in state.peers)
for n in range(repeat):
    seconds, state = read(client, texts[(n + 1) % 2])
    counters.append(seconds)
out = {"first": first, "again": again, "counters": counters}
print(json.dumps({"reads": {k: round(statistics.median(v), 4) for k, v in out.items()},
                  "runs": {k: [round(x, 4) for x in v] for k, v in out.items()},
                  "reply_bytes": len(texts[0]), "read_as_expected": expected,
                  "digest": sorted(digests)}))
"""


def run_reads(tree: Path, peers: int, repeat: int) -> dict[str, Any]:
    return run_script_in(tree, READS, str(peers), str(repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reference", type=Path, required=True, help="the tree to compare to")
    parser.add_argument("--peers", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=7, help="reads of each kind a run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tree, alternated")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    trees = {"reference": args.reference.resolve(), "this": ROOT}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            row = run_reads(tree, args.peers, args.repeat)
            row["load_average"] = round(os.getloadavg()[0], 1)
            runs[name].append(row)
            print(name, json.dumps(row["reads"]), "load", row["load_average"])
    digests = {d for rows in runs.values() for row in rows for d in row["digest"]}
    median = {
        name: {kind: statistics.median(r["reads"][kind] for r in rows) for kind in rows[0]["reads"]}
        for name, rows in runs.items()
    }
    heads = {name: commit_of(tree) for name, tree in trees.items()}
    print(f"\na get of {args.peers} peers, CPU s, median of {args.rounds} runs of {args.repeat}")
    print(f"(the same statuses read by both trees: {len(digests) == 1})")
    print(f"{'read':10s} {heads['reference']:>9s} {heads['this']:>9s}")
    for kind in median["this"]:
        print(f"{kind:10s} {median['reference'][kind]:9.4f} {median['this'][kind]:9.4f}")
    output = args.output or RESULTS / f"uapi-read-{heads['this']}-beside-{heads['reference']}.json"
    output.write_text(
        json.dumps(
            {
                "machine": platform.node(),
                "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                "peers": args.peers,
                "repeat": args.repeat,
                "trees": heads,
                "median": median,
                "same_statuses": len(digests) == 1,
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"saved to {output}")
    return 0 if len(digests) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
