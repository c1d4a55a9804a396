"""``meshd netcheck``: what the running daemon knows of this node's reachability.

Where members see this node's WireGuard endpoint (its reflexive endpoints, with how many
members see each), whether its NAT keeps one mapping for every destination (cone) or not
(symmetric), whether it is behind a NAT at all, and which members reach it directly (a fresh
WireGuard handshake). Runs through the quick path (meshd.cli.quick) and the typer app alike,
so it imports only what :mod:`meshd.cli.asking` does.
"""

from __future__ import annotations

import time
from pathlib import Path

from meshd.cli.output import emit_fields, emit_json, emit_table
from meshd.control.client import ask
from meshd.control.commands import NetcheckAnswer, NetcheckRequest
from meshd.control.typed_json import to_json
from meshd.node.layout import Paths, resolve


def netcheck(state_dir: Path | None = None, json: bool = False) -> None:
    answer = ask(Paths(resolve(state_dir)).socket, NetcheckRequest(), NetcheckAnswer)
    if json:
        emit_json(to_json(answer))
        return
    emit_fields(describe(answer))
    if answer.reachable_from:
        now = time.time()
        print()
        emit_table(
            ["reached by", "node_id", "endpoint", "handshake"],
            [
                [
                    r.name,
                    r.node_id[:12],
                    r.endpoint or "-",
                    f"{max(0, int(now - r.last_handshake))}s ago",
                ]
                for r in answer.reachable_from
            ],
        )


def describe(answer: NetcheckAnswer) -> dict[str, str]:
    """The fields ``meshd netcheck`` prints, in order."""
    seen = [
        f"{s.endpoint} by {s.observers}{' (own address)' if s.own else ''}" for s in answer.seen
    ]
    return {
        "nat": f"{answer.nat} ({answer.nat_why})",
        "behind_nat": {True: "yes", False: "no", None: "unknown"}[answer.behind_nat],
        "reflexive": ", ".join(answer.reflexive) or "-",
        "seen_at": ", ".join(seen) or "-",
        "local": ", ".join(answer.local) or "-",
        "listen_port": "-" if answer.listen_port is None else str(answer.listen_port),
        "reachable": f"directly by {len(answer.reachable_from)} of {answer.members} members",
    }
