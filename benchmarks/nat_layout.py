"""The pure side of benchmarks/nat.py: where each host of its 8-host lab sits (its NAT kind and
NATs, :data:`LAYOUT`), which pairs the NAT types let be direct (:func:`can_be_direct`:
either side public; both cone-type; or the same LAN), the share of those that are
(:func:`share`), and the rounds summed up against the targets (:func:`summarise`).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

TARGETS = {"cone_join": 2.0, "symmetric_relay": 3.0, "direct_share": 1.0, "public_restart": 5.0}

Kind = Literal["public", "cone", "symmetric"]


@dataclass(frozen=True, slots=True)
class Site:
    """Where a lab host sits: its NAT kind as the world sees it, and its NATs inner first."""

    kind: Kind
    nats: tuple[str, ...] = ()


#: The lab: host -> site. The order is the order the lab numbers hosts in (h1, h2, ...).
LAYOUT: dict[str, Site] = {
    "h1": Site("public"),
    "h2": Site("public"),
    "h3": Site("cone", ("cone1",)),
    "h4": Site("cone", ("home", "cgn")),
    "h5": Site("symmetric", ("sym1",)),
    "h6": Site("symmetric", ("sym2",)),
    "h7": Site("cone", ("lan",)),
    "h8": Site("cone", ("lan",)),
}
#: NAT -> (kind, the NAT it sits behind); created in this order.
NATS: dict[str, tuple[Kind, str | None]] = {
    "cone1": ("cone", None),
    "cgn": ("cone", None),
    "home": ("cone", "cgn"),
    "sym1": ("symmetric", None),
    "sym2": ("symmetric", None),
    "lan": ("cone", None),
}
FOUNDER = "h1"
PUBLIC = [h for h, s in LAYOUT.items() if s.kind == "public"]
NATTED = [h for h, s in LAYOUT.items() if s.kind != "public"]
CONE_JOINER, CONE_PEER = "h3", "h4"
SYMMETRIC_JOINER, SYMMETRIC_PEER = "h6", "h5"


def can_be_direct(a: Site, b: Site) -> bool:
    """Whether the NATs between two hosts let WireGuard sessions be direct.

    Behind the same innermost NAT: yes (their LAN). Otherwise, sharing any NAT on the way out
    (two homes behind one carrier NAT): no, NATs here do not hairpin. Either side public: yes
    (the NATed side sends first; the public side follows its mapping). Both behind cone NATs
    (endpoint-independent mapping): yes, by a simultaneous exchange. Anything with a
    symmetric NAT and no public side: no.
    """
    if a.nats and b.nats and a.nats[0] == b.nats[0]:
        return True
    if set(a.nats) & set(b.nats):
        return False
    if "public" in (a.kind, b.kind):
        return True
    return a.kind == b.kind == "cone"


def pairs(hosts: Iterable[str]) -> list[tuple[str, str]]:
    return list(itertools.combinations(sorted(hosts), 2))


def allowed_pairs(layout: Mapping[str, Site]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in pairs(layout) if can_be_direct(layout[a], layout[b])]


def share(direct: Iterable[tuple[str, str]], layout: Mapping[str, Site]) -> dict[str, Any]:
    """How many pairs are direct, of those allowed; which allowed ones are not, and which
    direct ones the NATs should not have allowed (a wrong layout, or a hairpinning NAT)."""
    allowed = set(allowed_pairs(layout))
    seen = {tuple(sorted(p)) for p in direct}
    return {
        "pairs": len(pairs(layout)),
        "allowed": len(allowed),
        "direct": len(seen & allowed),
        "share": len(seen & allowed) / len(allowed) if allowed else 1.0,
        "missing": sorted("-".join(p) for p in allowed - seen),
        "unexpected": sorted("-".join(p) for p in seen - allowed),
    }


def median_or_none(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def summarise(figures: Mapping[str, Sequence[float | None]]) -> dict[str, dict[str, Any]]:
    """Median, min and max of the rounds that happened; a round that timed out is missed.
    ``direct_share`` is met at 1.0 in every round; the timings when their median is within
    the target and no round was missed."""
    out: dict[str, dict[str, Any]] = {}
    for name, values in figures.items():
        got = [v for v in values if v is not None]
        median = median_or_none(values)
        missed = len(values) - len(got)
        if name == "direct_share":
            met = bool(got) and not missed and min(got) >= TARGETS[name]
        else:
            met = median is not None and not missed and median <= TARGETS[name]
        out[name] = {
            "median": median,
            "min": min(got) if got else None,
            "max": max(got) if got else None,
            "missed": missed,
            "target": TARGETS[name],
            "met": met,
        }
    return out
