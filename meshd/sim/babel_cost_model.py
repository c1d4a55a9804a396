"""Babel's steady cost on one node as a model, fitted on the simulator's real-core runs.

:class:`CostModel` says what a node with so many Babel neighbours, exchanging so many routes
with each, sends and receives a second (Hellos and IHUs each Hello interval, a full table each
update interval); :func:`fit_model` fits it by least squares on measured nodes
(:func:`meshd.sim.babel_relays.window_cost`), :func:`model_design` applies it to the design
of :mod:`meshd.sim.babel_relays` role by role (relays, members behind symmetric NAT, the
others), :func:`model_full_mesh` to every member a neighbour of every other. The benchmark
``benchmarks.sim_babel`` checks the model against the real cores at 1,000 members and uses it
at 10,000 (docs/performance.md, "Babel off the full mesh").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from meshd.sim.babel_relays import Cost, Design


@dataclass(frozen=True, slots=True)
class CostModel:
    """Babel's steady cost on one node, from what it exchanges with each neighbour: a
    Hello with an IHU each way per Hello interval (``hello_bytes``, ``hello_datagrams``
    both ways together), and each way per update interval (4 Hellos, less up to a quarter
    of jitter) a full table: ``route_bytes`` per route, in datagrams of at most ``mtu``.
    Fitted on the real cores' runs (:func:`fit_model`)."""

    hello_interval: float = 4.0
    hello_bytes: float = 0.0
    route_bytes: float = 0.0
    update_datagrams: float = 0.0
    mtu: int = 1400

    @property
    def update_interval(self) -> float:
        return 4 * self.hello_interval * 0.875

    def node(self, neighbours: int, routes_each: float) -> Cost:
        """One node with ``neighbours`` Babel neighbours, exchanging ``routes_each`` routes
        with each of them (its table to each, theirs to it: the mean of the two)."""
        per_update = routes_each * self.route_bytes
        packets = max(1.0, math.ceil(per_update / self.mtu)) if routes_each else 0.0
        datagrams = neighbours * (
            2 / self.hello_interval + 2 * packets * self.update_datagrams / self.update_interval
        )
        octets = neighbours * (
            self.hello_bytes / self.hello_interval + 2 * per_update / self.update_interval
        )
        return Cost(datagrams, octets)


def roles(design: Design) -> dict[str, tuple[int, float, int]]:
    """Per role: (neighbours, routes exchanged with each, how many such members)."""
    r, s = design.relays, design.nated
    table = r + s  # every relay's and NATed member's /128
    # a relay sends another relay or a NATed member its table less what it learnt from it
    # (split horizon) and gets the other's: a NATed member sends its own /128 only.
    relay_with_nated = (table - 1 + 1) / 2
    relay_with_relay = float(table - 1)
    relay_each = ((r - 1) * relay_with_relay + s * relay_with_nated) / max(1, r - 1 + s)
    return {
        "relay": (r - 1 + s, relay_each, r),
        "nated": (r, relay_with_nated, s),
        "direct": (0, 0.0, design.members - r - s),
    }


def model_design(model: CostModel, design: Design) -> dict[str, Cost]:
    """Per role, and averaged over every member (``member``)."""
    out: dict[str, Cost] = {}
    total_d = total_b = 0.0
    for role, (neighbours, each, count) in roles(design).items():
        cost = model.node(neighbours, each)
        out[role] = cost
        total_d += cost.datagrams * count
        total_b += cost.bytes * count
    out["member"] = Cost(total_d / design.members, total_b / design.members)
    return out


def model_full_mesh(model: CostModel, members: int) -> Cost:
    """Today's design: every member a neighbour of every other, the full table to each."""
    return model.node(members - 1, float(members - 1))


def fit_model(
    hello_interval: float, samples: list[tuple[int, float, Cost]], mtu: int = 1400
) -> CostModel:
    """Least squares over per-node samples ``(neighbours, routes_each, measured)``:
    bytes = n (h / hello + 2 r b / update), through the origin, for h and b; datagrams
    likewise for the update datagrams' factor."""
    base = CostModel(hello_interval=hello_interval, mtu=mtu)
    u = base.update_interval
    xs = [(n / hello_interval, 2 * n * r / u) for n, r, _ in samples]
    ys = [cost.bytes for _, _, cost in samples]
    h, b = _least_squares(xs, ys)
    model = CostModel(hello_interval, h, b, 1.0, mtu)
    # datagrams: the Hellos are known; fit the factor on the update datagrams
    num = den = 0.0
    for n, r, cost in samples:
        per_update = r * b
        packets = max(1.0, math.ceil(per_update / mtu)) if r else 0.0
        x = n * 2 * packets / u
        num += x * (cost.datagrams - n * 2 / hello_interval)
        den += x * x
    return CostModel(hello_interval, h, b, num / den if den else 1.0, mtu) if den else model


def _least_squares(xs: list[tuple[float, float]], ys: list[float]) -> tuple[float, float]:
    s11 = sum(a * a for a, _ in xs)
    s12 = sum(a * b for a, b in xs)
    s22 = sum(b * b for _, b in xs)
    t1 = sum(a * y for (a, _), y in zip(xs, ys, strict=True))
    t2 = sum(b * y for (_, b), y in zip(xs, ys, strict=True))
    det = s11 * s22 - s12 * s12
    if det == 0:
        return (t1 / s11 if s11 else 0.0, 0.0)
    return ((t1 * s22 - t2 * s12) / det, (s11 * t2 - s12 * t1) / det)
