"""The metrics of a real WireGuard mesh (wireguard-go on 3 lab hosts, Babel on the mesh):
WireGuard peers with their handshake age and bytes, Babel routes and neighbours, a member
relayed once its direct path is blocked; scraped with urllib inside a host's namespace."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from meshd.lab.demo import LabMesh, wait_for
from tests.lab_mesh.support import running_mesh
from tests.metrics.test_collector import Samples, parse

pytestmark = pytest.mark.root

HOSTS = ["h1", "h2", "h3"]
ADDRESS = "127.0.0.1:9101"  # in h1's own namespace
HELLO = "0.5"
FETCH = f"""
import urllib.request
print(urllib.request.urlopen("http://{ADDRESS}/metrics", timeout=10).read().decode())
"""


@pytest.fixture(scope="module")
def mesh() -> Iterator[LabMesh]:
    with running_mesh(
        HOSTS,
        "metricsmesh",
        extra=("--babel-hello-interval", HELLO, "--relay", "on"),  # explicit (docs/nat.md)
        founder_extra=("--metrics", ADDRESS),
        handshakes_within=20,
        check_stopped=False,
    ) as mesh:
        yield mesh


def scrape(mesh: LabMesh) -> Samples:
    return parse(mesh.lab.exec("h1", [sys.executable, "-c", FETCH]).stdout)


def test_wireguard_and_babel_metrics_of_a_live_mesh(mesh: LabMesh) -> None:
    names = {row["name"]: row["node_id"][:16] for row in mesh.node("h1").peers()}

    def babel_settled() -> bool:
        samples = scrape(mesh)
        routes = samples.get("meshd_babel_routes", {})
        return (
            samples.get("meshd_babel_neighbours", {}).get(()) == 2
            and routes.get((("state", "selected"),), 0) >= 3
        )

    wait_for(babel_settled, 40, "two Babel neighbours and their routes in the metrics")
    samples = scrape(mesh)
    assert samples["meshd_wireguard_peers"][()] == 2
    assert samples["meshd_wireguard_peers_desired"][()] == 2
    assert samples["meshd_members"][(("state", "admitted"),)] == 3
    for host in ("h2", "h3"):
        labels = (("node_id", names[host]), ("peer", host))
        age = samples["meshd_wireguard_peer_handshake_age_seconds"][labels]
        assert 0 <= age < 180, (host, age)
        assert samples["meshd_wireguard_peer_receive_bytes_total"][labels] > 0
        assert samples["meshd_wireguard_peer_transmit_bytes_total"][labels] > 0
    # Each member's overlay /128 (ours too), the others' reached directly.
    assert samples["meshd_babel_routes"][(("state", "installed"),)] >= 2
    assert samples["meshd_relayed_peers"][()] == 0
    assert samples["meshd_wireguard_errors_total"][()] == 0


def test_a_member_reached_through_another_counts_as_relayed(mesh: LabMesh) -> None:
    mesh.lab.block_udp("h1", "h3")
    try:
        wait_for(
            lambda: scrape(mesh).get("meshd_relayed_peers", {}).get(()) == 1,
            40,
            "h3 relayed through h2 in h1's metrics",
        )
        row = next(r for r in mesh.node("h1").peers() if r["name"] == "h3")
        assert row["route"] == "via h2"
    finally:
        mesh.lab.unblock_udp("h1", "h3")
    wait_for(
        lambda: scrape(mesh).get("meshd_relayed_peers", {}).get(()) == 0,
        40,
        "h3 direct again",
    )
