"""Every metric from one snapshot of the daemon's views (pure)."""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from meshd.metrics.collector import CATALOGUE, SnapshotCollector
from meshd.metrics.snapshot import Snapshot, Traffic

NOW = 1_800_000_000.0


def _status() -> dict[str, Any]:
    return {
        "node_id": "abc",
        "name": "n0",
        "network": "office",
        "network_id": "def",
        "members": 3,
        "expired": 1,
        "revoked": 2,
        "records": 17,
        "pending": 4,
        "pending_evicted": 5,
        "accepted": 6,
        "rejected": {"bad-signature": 2, "rate-limited": 7},
        "connected": 2,
        "isolated_since": 0,
        "uptime": 12.5,
        "tasks": 40,
        "wireguard": {"backend": "userspace", "peers": 2, "desired_peers": 3, "rounds": 9,
                      "errors": 1, "interface": "meshd0", "device_reads": 40,
                      "device_reads_shared": 12},
        "budgets": {"sync_sessions_open": 1, "sync_sessions_refused": 3, "grace_tracked": 2},
        "shed": {"handshakes": 8, "strangers_held": 5, "control": 0},
    }  # fmt: skip


def _peers() -> list[dict[str, Any]]:
    return [
        {"name": "n0", "node_id": "0" * 26, "state": "self", "wg_peer": False,
         "not_after": 2_000_000_000, "credentials_end": 2_100_000_000},
        {"name": "n1", "node_id": "1" * 26, "state": "admitted", "wg_peer": True,
         "last_handshake": NOW - 30, "rx_bytes": 100, "tx_bytes": 200, "route": "direct",
         "not_after": 1_900_000_000, "credentials_end": 0},
        {"name": "n2", "node_id": "2" * 26, "state": "admitted", "wg_peer": True,
         "last_handshake": None, "rx_bytes": 0, "tx_bytes": 0, "route": "via n1",
         "not_after": 1_950_000_000, "credentials_end": 1_950_000_000},
        {"name": "n3", "node_id": "3" * 26, "state": "revoked", "wg_peer": False,
         "not_after": 1_000, "credentials_end": 1_000},
    ]  # fmt: skip


Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def parse(text: str) -> Samples:
    """name -> {labels: value}, from exposition text."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def scrape(snapshot: Snapshot) -> Samples:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return parse(generate_latest(registry).decode())


def test_every_metric_from_the_views() -> None:
    traffic = Traffic()
    traffic.gossip_received.update({"accepted": 3, "dropped": 1})
    traffic.published()

    class Result:
        bytes_sent, bytes_received, records_sent, records_received, new = 10, 20, 1, 2, 2

    traffic.synced(Result(), initiator=True)
    traffic.synced(None, initiator=False)
    routes = {
        "routes": [{"selected": True, "installed": True}, {"selected": False, "installed": False}],
        "neighbours": [{}, {}, {}],
    }
    m = scrape(Snapshot.of(NOW, _status(), _peers(), routes, 2, traffic))
    one = ()
    assert m["meshd_info"] == {
        (("name", "n0"), ("network", "office"), ("network_id", "def"), ("node_id", "abc")): 1.0
    }
    assert m["meshd_members"] == {
        (("state", "admitted"),): 3.0,
        (("state", "expired"),): 1.0,
        (("state", "revoked"),): 2.0,
    }
    assert m["meshd_records"][one] == 17
    assert m["meshd_revocations"][one] == 2
    assert m["meshd_records_ingested_total"] == {(("via", "gossip"),): 6, (("via", "sync"),): 2}
    assert m["meshd_records_refused_total"] == {
        (("reason", "bad-signature"),): 2,
        (("reason", "rate-limited"),): 7,
    }
    assert m["meshd_pending_records"][one] == 4
    assert m["meshd_pending_evicted_total"][one] == 5
    assert m["meshd_credential_expiry_timestamp_seconds"][one] == 2_100_000_000
    # n1 has no renewal (0): its admission's end; the revoked n3 does not count.
    assert m["meshd_credential_expiry_earliest_timestamp_seconds"][one] == 1_900_000_000
    assert m["meshd_gossip_messages_received_total"] == {
        (("result", "accepted"),): 3,
        (("result", "dropped"),): 1,
    }
    assert m["meshd_gossip_messages_published_total"][one] == 1
    sessions = m["meshd_sync_sessions_total"]
    assert sessions[(("outcome", "ok"), ("role", "initiated"))] == 1
    assert sessions[(("outcome", "failed"), ("role", "served"))] == 1
    assert sum(sessions.values()) == 2
    assert m["meshd_sync_bytes_total"] == {
        (("direction", "received"),): 20,
        (("direction", "sent"),): 10,
    }
    assert m["meshd_shed_total"] == {
        (("what", "sync_sessions_refused"),): 3, (("what", "handshakes"),): 8,
        (("what", "control"),): 0,
    }  # fmt: skip
    assert m["meshd_budget_used"] == {
        (("what", "sync_sessions_open"),): 1, (("what", "grace_tracked"),): 2,
        (("what", "strangers_held"),): 5,
    }  # fmt: skip
    assert m["meshd_wireguard_peers"][one] == 2
    assert m["meshd_wireguard_peers_desired"][one] == 3
    assert m["meshd_wireguard_reconcile_rounds_total"][one] == 9
    assert m["meshd_wireguard_errors_total"][one] == 1
    assert m["meshd_wireguard_device_reads_total"][one] == 40
    assert m["meshd_wireguard_device_reads_shared_total"][one] == 12
    n1 = (("node_id", "1" * 16), ("peer", "n1"))
    n2 = (("node_id", "2" * 16), ("peer", "n2"))
    assert m["meshd_wireguard_peer_handshake_age_seconds"] == {n1: 30.0}  # n2: none yet
    assert m["meshd_wireguard_peer_receive_bytes_total"] == {n1: 100, n2: 0}
    assert m["meshd_wireguard_peer_transmit_bytes_total"] == {n1: 200, n2: 0}
    assert m["meshd_relayed_peers"][one] == 1
    assert m["meshd_babel_routes"] == {
        (("state", "all"),): 2,
        (("state", "selected"),): 1,
        (("state", "installed"),): 1,
    }
    assert m["meshd_babel_neighbours"][one] == 3
    assert m["meshd_uptime_seconds"][one] == 12.5
    assert m["meshd_trio_tasks"][one] == 40
    assert m["meshd_connected_peers"][one] == 2
    assert m["meshd_isolated_since_timestamp_seconds"][one] == 0  # a member is connected
    alone = scrape(Snapshot(NOW, _status() | {"isolated_since": 1_800_000_000}, []))
    assert alone["meshd_isolated_since_timestamp_seconds"][one] == 1_800_000_000


def test_without_wireguard_or_babel_their_metrics_have_no_samples() -> None:
    status = _status() | {"wireguard": {"backend": "none", "peers": 0}}
    m = scrape(Snapshot(NOW, status, []))
    for name in ("meshd_wireguard_peers", "meshd_relayed_peers", "meshd_babel_routes",
                 "meshd_credential_expiry_earliest_timestamp_seconds"):  # fmt: skip
        assert name not in m
    assert m["meshd_members"][(("state", "admitted"),)] == 3


def test_names_are_prometheus_style() -> None:
    names = [s.name for s in CATALOGUE]
    assert len(set(names)) == len(names)
    for spec in CATALOGUE:
        assert re.fullmatch(r"meshd_[a-z0-9_]+", spec.name)
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name
        assert spec.help.endswith("."), spec.name
