"""The real Babel core on the simulator's links, off the full mesh: a relay fails, every pair
that went through it is rerouted through another relay, no routing loop at any instant, and
a seeded run is reproducible bit for bit."""

from __future__ import annotations

import pytest

from meshd.babel.sources import SourceTable
from meshd.sim.babel_cost_model import (
    CostModel,
    model_design,
    model_full_mesh,
)
from meshd.sim.babel_net import BabelNet
from meshd.sim.babel_relays import (
    Design,
    PairWatch,
    RoutingLoop,
    assert_loop_free,
    build,
    check_loop,
    converge,
    path,
    relay_failure,
    usable,
)
from meshd.sim.params import Links
from tests.sim.hashseeds import outputs_under_hash_seeds

WAN = Links(latency=0.050, jitter=0.020, loss=0.01)
# 100 members: 3 relays and 12 behind symmetric NAT run Babel (66 pairs with no direct path)
DESIGN = Design(100, nat_share=0.12, relays=3)


def test_a_relay_fails_and_every_pair_it_carried_moves_to_another_relay() -> None:
    net, result = relay_failure(DESIGN, seed=3, wan=WAN, warmup=5.0, settle=10.0)
    assert result.pairs == 66
    assert result.affected_pairs >= 10  # the ranks spread the pairs over the 3 relays
    # noticed by Babel alone (missed Hellos at 4 s), then one round of updates
    assert result.reroute is not None
    assert 4.0 < result.reroute < 16.0
    assert result.broken_unaffected == result.broken_again == 0  # no other pair broke
    assert result.settled == result.reroute  # nothing changed after the last reroute
    assert result.loop_checks == result.route_changes > result.pairs
    failed = result.failed_relay
    for a, b in DESIGN.pairs():
        assert usable(net, DESIGN, a, b)
        there = path(net, DESIGN, a, b)
        assert there is not None
        assert failed not in there
        assert len(there) == 3  # through one relay, the same both ways (usable checks it)


def test_a_seeded_run_is_reproducible_bit_for_bit() -> None:
    small = Design(50, nat_share=0.16, relays=3)
    first = relay_failure(small, seed=5, wan=WAN, warmup=5.0, settle=5.0)[1]
    second = relay_failure(small, seed=5, wan=WAN, warmup=5.0, settle=5.0)[1]
    assert first == second
    assert relay_failure(small, seed=6, wan=WAN, warmup=5.0, settle=5.0)[1].digest != first.digest


def test_the_run_does_not_depend_on_hash_randomisation() -> None:
    script = (
        "from meshd.sim.babel_relays import Design, relay_failure\n"
        "from meshd.sim.params import Links\n"
        "_, r = relay_failure(Design(50, nat_share=0.16, relays=3), seed=5,"
        " wan=Links(loss=0.01), warmup=5.0, settle=5.0)\n"
        "print(r.digest, r.reroute)\n"
    )
    assert len(outputs_under_hash_seeds(script)) == 1


def test_the_loop_check_sees_a_loop() -> None:
    net = BabelNet(3, [(0, 1), (1, 2)], seed=1)
    net.fwd[0][2] = 1
    net.fwd[1][2] = 0
    with pytest.raises(RoutingLoop):
        check_loop(net, 0, 2)
    with pytest.raises(RoutingLoop):
        assert_loop_free(net)
    with pytest.raises(RoutingLoop):
        path(net, None, 0, 2)


def _member_fails(seed: int) -> None:
    design = Design(40, nat_share=0.2, relays=4)
    net = build(design, seed, Links(latency=0.05, jitter=0.02, loss=0.05), 4.0)
    watch = PairWatch(design)
    watch.start(net)  # the loop check at every route change from here on
    converge(net, watch, 60.0)
    net.run(5.0)
    net.fail(design.relays)  # a member behind NAT: the relays lose their direct route to it
    net.run(25.0)


def test_a_member_failing_makes_no_loop_between_the_relays() -> None:
    for seed in range(2):
        _member_fails(seed)


def test_without_the_feasibility_condition_the_relays_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check is not vacuous: the same runs with every update taken as feasible loop
    (the relays, each a neighbour of the others, count to infinity)."""
    monkeypatch.setattr(SourceTable, "feasible", lambda self, *args: True)
    loops = 0
    for seed in range(3):
        try:
            _member_fails(seed)
        except RoutingLoop:
            loops += 1
    assert loops >= 2


def test_the_cost_model_puts_the_relayed_design_far_below_the_full_mesh() -> None:
    model = CostModel(hello_interval=4.0, hello_bytes=60.0, route_bytes=20.0, update_datagrams=1)
    design = Design(1000, nat_share=0.1, relays=4)
    relayed = model_design(model, design)
    full = model_full_mesh(model, 1000)
    assert relayed["direct"].bytes == 0.0  # members with direct paths run no Babel
    assert relayed["member"].bytes * 50 < full.bytes
    assert relayed["relay"].bytes < full.bytes
    # the full mesh grows as N^2 per node, the relayed design's NATed member as N
    assert model_full_mesh(model, 2000).bytes > 3.5 * full.bytes
