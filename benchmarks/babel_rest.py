"""A relay's Babel cost with every member a neighbour: every Hello against neighbours at rest.

On the mesh a member that neither relays nor routes a site speaks Babel with the relays
(and gateways) alone, and asks them for the /128s its direct paths do not cover; a relay
therefore has every member as a neighbour (docs/performance.md, "Babel in the daemon").
This runs the real Babel core on the simulator's links (meshd/sim/babel_net.py: 50 +- 20 ms
one way, 1 % loss, 4 s Hellos, ``unicast-peers`` as on ``wg0``): ``--relays`` relays, each a
neighbour of every member and of each other, and ``--members`` members, of which a share
(``--relayed``, in pairs) has no direct path to its partner and asks every relay for the
partner's /128 every update interval, as :class:`meshd.daemon.babel_wants.Wants` does. Two
runs back to back with one seed:

* **every Hello** (``rest_pace`` 1, the daemon before neighbours at rest);
* **at rest** (``rest_pace`` 8 and the daemon's rule, :func:`meshd.daemon.babel_pace.at_rest`
  in spirit: a relay paces a member at rest unless it asked for a route lately; a member
  paces the relays at rest unless it wants a route through them).

After ``SETTLE`` seconds, over ``WINDOW`` seconds (two updates at rest): Babel's UDP payloads
sent and received per second by a relay, by a member at rest and by a relayed member; the
route changes in the window; whether every relayed pair is routed through a relay at the
end; and then, two members at rest losing their direct path, how long until both route
through the same relay. The CPU the relay's core takes over the window is timed (process
time of every call into it). A relay's cost is then fitted as bytes a second per member (at
that share relayed), and given at 1,000 and 10,000 members.

    nice -n 10 .venv/bin/python -m benchmarks.babel_rest [--sizes 100 300 1000]

Results: printed, and saved to benchmarks/results/babel-rest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.fixtures import commit
from meshd.babel.config import CoreConfig
from meshd.babel.core import BabelCore
from meshd.babel.neighbours import IPAddress
from meshd.babel.sources import IPNetwork
from meshd.sim.babel_net import INTERFACE, BabelNet, link_local, node_of, overlay
from meshd.sim.babel_relays import Cost, ranked, window_cost
from meshd.sim.params import Links

RESULTS = Path(__file__).resolve().parent / "results"
WAN = Links(latency=0.050, jitter=0.020, loss=0.01)
HELLO = 4.0
UPDATE = 4 * HELLO
PACE = 8
SETTLE = 40.0
WINDOW = 2 * PACE * UPDATE


class Star:
    """``relays`` relays (nodes 0..relays-1) and ``members`` members after them."""

    def __init__(self, relays: int, members: int, relayed: float) -> None:
        self.relays = relays
        self.size = relays + members
        pairs = max(1, round(members * relayed / 2))
        first = relays
        self.partner: dict[int, int] = {}
        for n in range(pairs):
            a, b = first + 2 * n, first + 2 * n + 1
            self.partner[a], self.partner[b] = b, a

    def is_relay(self, node: int) -> bool:
        return node < self.relays

    def links(self) -> list[tuple[int, int]]:
        r = self.relays
        out = [(a, b) for a in range(r) for b in range(a + 1, r)]
        return out + [(a, m) for a in range(r) for m in range(r, self.size)]

    def config(self, node: int) -> CoreConfig:
        own = overlay(node)
        relay = self.is_relay(node)

        def on_demand(interface: str, prefix: IPNetwork, source: IPNetwork | None) -> bool:
            return source is None and prefix != own

        def redistribute(interface: str, prefix: IPNetwork, source: IPNetwork | None) -> bool:
            return relay or (prefix == own and source is None)

        def at_rest(interface: str, address: IPAddress) -> bool:
            if relay:
                return not self.is_relay(node_of(address))
            return node not in self.partner  # a member wanting nothing of the relays

        return CoreConfig(
            on_demand=on_demand,
            redistribute=redistribute,
            at_rest=at_rest,
            relay_rank=ranked(node, self.is_relay),
        )


def ask(star: Star, net: BabelNet) -> None:
    """Every relayed member asks every relay for its partner's /128 (as Wants does)."""
    for member, partner in sorted(star.partner.items()):
        key = (overlay(partner), None)

        def request(core: BabelCore, now: float, key: Any = key) -> None:
            for relay in range(star.relays):
                core.request_routes(INTERFACE, link_local(relay), [key], now)

        net.act(member, request)


def run(star: Star, seed: int, pace: int) -> dict[str, Any]:
    started = time.perf_counter()
    net = BabelNet(
        star.size,
        star.links(),
        seed,
        wan=WAN,
        hello_interval=HELLO,
        config=star.config,
        rest_pace=pace,
    )
    asked_at = 0.0
    while net.now < SETTLE:
        if net.now >= asked_at:
            ask(star, net)
            asked_at += UPDATE
        net.run(min(asked_at, SETTLE) - net.now)
    changes = net.route_changes
    cpu = _time_core(net.nodes[0].core)
    before = net.counters()
    end = SETTLE + WINDOW
    while net.now < end:
        if net.now >= asked_at:
            ask(star, net)
            asked_at += UPDATE
        net.run(min(asked_at, end) - net.now)
    after = net.counters()
    relay_cpu = cpu[0]
    relays = list(range(star.relays))
    relayed = sorted(star.partner)
    resting = [m for m in range(star.relays, star.size) if m not in star.partner]
    routed = all(net.fwd[m].get(p) in relays for m, p in star.partner.items())
    reached = all(net.nodes[m].core.route(overlay(r)) is not None for m in resting for r in relays)
    # Two members at rest lose their direct path: how long until each has the other's
    # /128 through the same relay (they ask at once, as Wants does on the event).
    a, b = resting[-2], resting[-1]
    star.partner[a], star.partner[b] = b, a
    woke = net.now
    asked_at = woke
    took = None
    while took is None and net.now < woke + 60.0:
        if net.now >= asked_at:
            ask(star, net)
            asked_at += UPDATE
        took = net.run_until(
            lambda n: n.fwd[a].get(b) in relays and n.fwd[a].get(b) == n.fwd[b].get(a),
            asked_at - net.now,
        )
    del star.partner[a], star.partner[b]
    return {
        "pace": pace,
        "relay": asdict(window_cost(before, after, relays, WINDOW)),
        "member_at_rest": asdict(window_cost(before, after, resting, WINDOW)),
        "relayed_member": asdict(window_cost(before, after, relayed, WINDOW)),
        "relay_core_ms_per_s": round(1000 * relay_cpu / WINDOW, 2),
        "route_changes_in_window": net.route_changes - changes,
        "relayed_pairs_routed": routed,
        "members_reach_every_relay": reached,
        "woken_pair_routed_s": None if took is None else round(net.now - woke, 3),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def _time_core(core: BabelCore) -> list[float]:
    """Time every call the simulator makes into one core from now on: ``[seconds]``, the
    CPU a relay's Babel core costs (what its shell adds is not counted)."""
    spent = [0.0]
    for name in ("receive", "handle_timer", "datagrams_to_send", "timer", "next_event"):
        method = getattr(core, name)

        def timed(*args: Any, method: Any = method) -> Any:
            started = time.process_time()
            try:
                return method(*args)
            finally:
                spent[0] += time.process_time() - started

        setattr(core, name, timed)
    return spent


def fit(rows: list[dict[str, Any]], key: str) -> float:
    """Least squares through the origin: a relay's bytes a second per member (at the run's
    share of relayed members)."""
    xs = [r["members"] for r in rows]
    ys = [r[key]["relay"]["bytes"] for r in rows]
    return float(sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs))


def _show(members: int, name: str, row: dict[str, Any]) -> None:
    relay, rest, busy = (Cost(**row[k]) for k in ("relay", "member_at_rest", "relayed_member"))
    print(
        f"{members:>5} members, {name:>11}: relay {relay.bytes / 1000:.2f} kB/s "
        f"({relay.datagrams:.0f} datagrams/s, its core {row['relay_core_ms_per_s']} ms of CPU "
        f"a second), member at rest {rest.bytes / 1000:.3f} kB/s, "
        f"relayed member {busy.bytes / 1000:.3f} kB/s, "
        f"{row['route_changes_in_window']} route changes, pairs routed "
        f"{row['relayed_pairs_routed']}, a pair woken routed in "
        f"{row['woken_pair_routed_s']} s (wall {row['wall_s']} s)",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--relays", type=int, default=2)
    parser.add_argument("--relayed", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="babel-rest.json")
    parser.add_argument(
        "--only", choices=("every_hello", "at_rest"), help="run one of the two designs"
    )
    args = parser.parse_args()
    result: dict[str, Any] = {
        "benchmark": "babel_rest",
        "commit": commit(),
        "links": asdict(WAN),
        "hello_interval": HELLO,
        "rest_pace": PACE,
        "relays": args.relays,
        "relayed_share": args.relayed,
        "window_s": WINDOW,
        "seed": args.seed,
        "load_average": os.getloadavg(),
        "rows": [],
    }
    for members in args.sizes:
        star = Star(args.relays, members, args.relayed)
        row: dict[str, Any] = {"members": members, "relayed": len(star.partner)}
        for name, pace in (("every_hello", 1), ("at_rest", PACE)):
            if args.only not in (None, name):
                continue
            row[name] = run(star, args.seed, pace)
            _show(members, name, row[name])
        result["rows"].append(row)
    for name in ("every_hello", "at_rest"):
        if args.only not in (None, name):
            continue
        a = fit(result["rows"], name)
        at = {n: a * n / 1000 for n in (1000, 10000)}
        result[f"fit_{name}"] = {"bytes_per_member": a, "kB_s": at}
        print(
            f"{name:>11}: a relay spends {a:.1f} B/s per member ({args.relayed:.0%} relayed): "
            f"{at[1000]:.1f} kB/s at 1,000 members, {at[10000]:.1f} at 10,000"
        )
    result["end_load_average"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / args.out
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
