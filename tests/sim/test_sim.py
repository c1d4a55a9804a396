"""The simulator (meshd/sim): a revocation reaches every node of a 200-node mesh, a seeded run
is reproducible bit for bit, the gossip mesh keeps its degree, and the model agrees with the
real membership and sync cores."""

from __future__ import annotations

from meshd.daemon.config import DaemonConfig
from meshd.daemon.state import FORWARDER_BURST, FORWARDER_RATE, RATE_BURST, RATE_PER_SECOND
from meshd.gossip.config import HostConfig
from meshd.sim.engine import Sim
from meshd.sim.params import Costs, Gossip, Links
from meshd.sim.scenarios import Load, build, partition, revocation, steady
from tests.sim.hashseeds import outputs_under_hash_seeds

LINKS = Links(latency=0.050, jitter=0.020, loss=0.01)
COSTS = Costs(rpc_in=0.001, rpc_out=0.001, validate=0.0015, sync_message=0.002)


def test_a_revocation_reaches_all_200_nodes_through_the_real_cores() -> None:
    run, delays = revocation(200, seed=7, mode="real", links=LINKS, costs=COSTS, horizon=10.0)
    assert len(delays) == 199  # every node but the revoked one holds the revocation
    assert delays[-1] < 2.0
    for node in run.sim.nodes[:-1]:
        layer = node.membership
        assert layer is not None
        assert layer.state.is_revoked(run.network.key(199).public)  # type: ignore[attr-defined]


def test_a_revocation_reaches_nodes_that_were_down_through_sync() -> None:
    _run, delays = revocation(200, seed=3, mode="real", links=LINKS, costs=COSTS, down=10)
    assert len(delays) == 199
    assert delays[-1] > 10.0  # the late ones came back 10 s after the revocation


def _trace(seed: int) -> tuple[str, int, list[float]]:
    run, delays = revocation(100, seed=seed, mode="real", links=LINKS, costs=COSTS, down=5)
    return run.sim.digest, run.sim.events, delays


def test_a_seeded_run_is_reproducible_bit_for_bit() -> None:
    first, second = _trace(11), _trace(11)
    assert first == second
    assert _trace(12)[0] != first[0]


def test_the_trace_does_not_depend_on_hash_randomisation() -> None:
    script = (
        "from meshd.sim.scenarios import partition\n"
        "from meshd.sim.params import Links\n"
        "run, heal, _ = partition(60, seed=5, mode='real', links=Links(loss=0.01), duration=10)\n"
        "print(run.sim.digest, heal)\n"
    )
    assert len(outputs_under_hash_seeds(script)) == 1


def test_the_mesh_degree_stays_within_d_low_and_d_high_after_heartbeats() -> None:
    run = build(200, seed=2, links=LINKS)
    sim = run.sim
    for node in sim.nodes:
        node.mesh_after_heartbeat = (1 << 30, 0)
    sim.run(sim.now + 20.0)
    g = sim.gossip
    for node in sim.nodes:
        low, high = node.mesh_after_heartbeat
        assert g.degree_low <= low, (node.index, low)
        assert high <= g.degree_high, (node.index, high)
        assert set(node.mesh) <= set(node.peers)


def test_the_model_agrees_with_the_real_cores() -> None:
    for seed in (1, 2):
        _, real = revocation(150, seed, mode="real", links=LINKS, costs=COSTS)
        _, model = revocation(150, seed, mode="model", links=LINKS, costs=COSTS)
        assert real == model
    _real_run, real_heal, _ = partition(100, 4, mode="real", links=LINKS, duration=20)
    _model_run, model_heal, _ = partition(100, 4, mode="model", links=LINKS, duration=20)
    assert real_heal is not None
    assert model_heal is not None
    assert abs(real_heal - model_heal) < 1.0


def test_a_partition_heals_through_tcp_retransmission_and_sync() -> None:
    _run, heal, per_node = partition(100, 6, links=LINKS, duration=20)
    assert heal is not None
    assert len(per_node) == 98


def test_shared_cores_queue_the_work() -> None:
    one = Costs(rpc_in=0.002, rpc_out=0.002, validate=0.002, cores=1)
    _, slow = revocation(48, 1, links=Links(latency=0.0001, jitter=0.0), costs=one)
    _, fast = revocation(48, 1, links=Links(latency=0.0001, jitter=0.0), costs=COSTS)
    assert slow[-1] > 3 * fast[-1]


def test_the_settings_are_the_daemons() -> None:
    g = Gossip()
    daemon = DaemonConfig.__dataclass_fields__
    host = HostConfig.__dataclass_fields__
    assert g.degree == daemon["degree"].default == g.connect_degree
    assert (g.degree_low, g.degree_high) == (max(1, min(4, g.degree - 2)), max(2 * g.degree, 2))
    assert g.heartbeat == host["heartbeat_interval"].default
    assert g.sync_interval == daemon["sync_interval"].default
    assert g.announce_interval == daemon["announce_interval"].default
    assert (g.author_rate, g.author_burst) == (RATE_PER_SECOND, RATE_BURST)
    assert (g.forwarder_rate, g.forwarder_burst) == (FORWARDER_RATE, FORWARDER_BURST)


def test_announcing_on_change_costs_a_node_a_small_share_of_announcing_every_30_s() -> None:
    """The steady state of 200 nodes: every member every 30 s (the old default) against an
    hourly refresh and 1 % of the members changing a minute. The cost per announcement is the
    same (a flood); the rate, and so the bytes and CPU per node, fall ~50 times."""
    old = steady(200, 0, links=LINKS, costs=COSTS, window=5.0, load=Load(30.0))
    new_load = Load(3600.0, 0.01 / 60)
    new = steady(200, 0, links=LINKS, costs=COSTS, window=5.0, thin=20.0, load=new_load)
    assert new.published >= 5
    assert new.announcements == new_load.rate(200) == 200 * (1 / 3600 + 0.01 / 60)
    assert 4.0 < new.rpcs_per_announcement < 8.0  # D = 6: about one copy per mesh peer
    assert abs(new.rpcs_per_announcement - old.rpcs_per_announcement) < 1.5
    assert new.bytes < old.bytes / 20
    assert new.cpu < old.cpu / 20


def test_a_revocation_reaches_all_under_the_on_change_load() -> None:
    run, delays = revocation(
        200,
        3,
        links=LINKS,
        costs=COSTS,
        announce=True,
        load=Load(600.0, 0.01),  # ~2.3 announcements a second
        horizon=5.0,
        trace=False,
    )
    assert len(delays) == 199
    assert delays[-1] < 1.0
    assert len(run.sim.messages) > 10  # announcements flowed besides the revocation


def test_an_empty_sim_runs() -> None:
    sim = Sim(3, seed=0)
    sim.run(1.0)
    assert sim.now == 1.0
