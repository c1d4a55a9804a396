"""Start-up's steps timed in one process (CPU), this tree beside a reference tree, alternated.

From one synthetic store (``benchmarks.synthetic_store.build_store``), each tree in turn, in a fresh
interpreter of its own (``PYTHONPATH`` = the tree): the daemon's imports, then the steps of a
start up to WireGuard programmed, without wireguard-go nor the command line: the store loaded
into the membership with the first tick and the first snapshot (``NodeState``), the desired
peers (``desired_peers``), the plan (``plan``), the first round's operations without their
keepalives and the UAPI text of its sets. Also a digest of the UAPI text and of the desired
peers, which must be the same for both trees. Light enough to run beside other work (about
1 s of CPU per start at 10,000 members); no root needed.

    .venv/bin/python -m benchmarks.startup_steps --reference /tmp/clone-ref [--members 10000]
        [--rounds 3] [--joined invited]

``--joined invited``: the members joined under invites, each admitted by a sponsor (as
``benchmarks.memory --joined invited`` builds them), not certified by the root;
``--joined single-use``: the same, each under an invite of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.synthetic_store import build_store, run_script_in

ROOT = Path(__file__).resolve().parent.parent

STEPS = """
import gc, hashlib, json, shutil, sys, tempfile, time
from pathlib import Path
t = [time.process_time()]
from meshd.daemon.state import NodeState
try:  # a tree from before meshd.daemon.wireguard_sets (a reference) has them here
    from meshd.daemon.wireguard_sets import Keepalives, keepalives_later, set_chunks
except ImportError:
    from meshd.daemon.wireguard import Keepalives, set_chunks
    from meshd.daemon.wireguard import _keepalives_later as keepalives_later
from meshd.mesh.desired import desired_peers
from meshd.node.statedir import NodeDir
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.model import DeviceState
from meshd.wg.reconcile import plan
from meshd.wg.uapi_request import encode_set_request
t.append(time.process_time())
with tempfile.TemporaryDirectory() as tmp:
    state_dir = Path(tmp) / "state"
    shutil.copytree(sys.argv[1], state_dir)
    gc.disable()  # as meshd.daemon.launch does until WireGuard is programmed
    node = NodeDir.open(state_dir)
    t.append(time.process_time())
    state = NodeState(node, announce_ttl=None)
    members = state.feed.subscribe().latest.members
    t.append(time.process_time())
    desired = desired_peers(
        members, own_node_key=NodeKey(node.node_key.public), own_wg_key=WgKey(node.wg_key.public)
    )
    t.append(time.process_time())
    ops = plan(desired.peers, DeviceState())
    t.append(time.process_time())
    ops = keepalives_later(ops, DeviceState(), Keepalives())
    t.append(time.process_time())
    text = hashlib.sha256()
    for chunk in set_chunks(ops):
        text.update(encode_set_request(chunk))
    t.append(time.process_time())
peers = hashlib.sha256(repr(sorted(desired.peers.items())).encode()).hexdigest()
names = ["imports", "state_dir", "load_tick_snapshot", "desired", "plan", "without_keepalives",
         "uapi_text"]
steps = {name: round(b - a, 3) for name, a, b in zip(names, t, t[1:])}
steps["total"] = round(t[-1] - t[0], 3)
print(json.dumps({"steps": steps, "operations": len(ops), "uapi_sha256": text.hexdigest()[:16],
                  "peers_sha256": peers[:16]}))
"""


def run_steps(tree: Path, store: Path) -> dict[str, Any]:
    return run_script_in(tree, STEPS, str(store))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reference", type=Path, required=True, help="the tree to compare to")
    parser.add_argument("--members", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--joined", choices=["certified", "invited", "single-use"], default="certified"
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    trees = {"reference": args.reference.resolve(), "this": ROOT}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="meshd-steps-") as tmp:
        store = Path(tmp) / "store"
        build_store(store, args.members, args.joined)
        for _ in range(args.rounds):
            for name, tree in trees.items():
                row = run_steps(tree, store)
                row["load_average"] = round(os.getloadavg()[0], 1)
                runs[name].append(row)
                print(name, json.dumps(row))
    digests = {(r["uapi_sha256"], r["peers_sha256"]) for rows in runs.values() for r in rows}
    median = {
        name: {step: statistics.median(r["steps"][step] for r in rows) for step in rows[0]["steps"]}
        for name, rows in runs.items()
    }
    print(f"\n{args.members} members ({args.joined}), CPU s, median of {args.rounds}")
    print(f"(same UAPI text and peers: {len(digests) == 1})")
    for step in median["this"]:
        print(f"{step:20s} {median['reference'][step]:6.3f} -> {median['this'][step]:6.3f}")
    if args.output is not None:
        args.output.write_text(
            json.dumps(
                {"members": args.members, "joined": args.joined, "runs": runs, "median": median,
                 "same_output": len(digests) == 1},
                indent=2,
            )
            + "\n"
        )  # fmt: skip
    return 0 if len(digests) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
