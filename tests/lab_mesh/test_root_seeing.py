"""``meshd peers`` paths and ``meshd netcheck`` between real daemons across the lab's NATs, as
root.

One lab for the module: h1 (founder) and h2 public, h3 behind a cone NAT, h4 behind a
symmetric NAT (Babel Hello 0.5 s, so that a relay takes over within seconds; the public
members relay). A cone and a symmetric NAT cannot punch to each other, so h3 and h4 talk
through a public member; each public member talks to each NATed one directly, at the NAT's
public address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from meshd.lab import Lab
from meshd.lab.demo import LabMesh, wait_for
from tests.lab.test_root_lab import traces

pytestmark = pytest.mark.root

HOSTS = ["h1", "h2", "h3", "h4"]
EXTRA = ("--babel-hello-interval", "0.5")


@pytest.fixture(scope="module")
def mesh() -> Iterator[LabMesh]:
    with Lab(2) as lab:
        lab.add_host(behind=lab.add_nat("cone", kind="cone"))
        lab.add_host(behind=lab.add_nat("sym", kind="symmetric"))
        mesh = LabMesh(lab, network="seeing")
        try:
            for host in HOSTS:
                mesh.node(host).extra = EXTRA
            for host in ("h1", "h2"):  # the lab's public addresses are not global ones
                mesh.node(host).extra += ("--relay", "on")
            mesh.init("h1")
            mesh.up("h1")
            mesh.join_all("h1", HOSTS[1:])
            yield mesh
        finally:
            mesh.close()
        assert not mesh.running()
    assert traces(lab.run_id) == []


def row(mesh: LabMesh, host: str, target: str) -> dict[str, Any]:
    return next(r for r in mesh.node(host).peers() if r["name"] == target)


def direct_at(mesh: LabMesh, host: str, target: str, address: str) -> bool:
    seen = row(mesh, host, target)
    return bool(seen["path"] == "direct" and seen["path_endpoint"].startswith(f"{address}:"))


def text(mesh: LabMesh, host: str, command: str) -> str:
    """What ``meshd COMMAND`` prints, on a terminal wide enough for whole lines."""
    state_dir = str(mesh.node(host).state_dir)
    argv = ["env", "COLUMNS=250", *mesh.meshd, command, "--state-dir", state_dir]
    return mesh.lab.exec(host, argv).stdout


def netcheck(mesh: LabMesh, host: str) -> dict[str, Any]:
    answer = json.loads(mesh.run(host, "netcheck", "--json").stdout)
    assert isinstance(answer, dict)
    return answer


def test_public_members_see_nated_ones_direct_at_their_nats_address(mesh: LabMesh) -> None:
    for target in ("h3", "h4"):
        public = str(mesh.lab.public_address_of(target))
        for host in ("h1", "h2"):
            wait_for(partial(direct_at, mesh, host, target, public), 20, f"{host} -> {target}")
            assert "path_via" not in row(mesh, host, target)
    assert "path" not in row(mesh, "h1", "h1")  # this node
    table = text(mesh, "h1", "peers")
    assert f"direct {row(mesh, 'h1', 'h3')['path_endpoint']}" in table
    assert table.splitlines()[0].split()[4] == "PATH"


def test_a_cone_and_a_symmetric_member_are_relayed_via_a_public_one(mesh: LabMesh) -> None:
    def relayed(host: str, target: str) -> bool:
        seen = row(mesh, host, target)
        return seen["path"] == "relay" and seen["path_via"] in ("h1", "h2")

    def talking() -> bool:
        return all(mesh.ping_pairs([("h3", "h4"), ("h4", "h3")]).values())

    # Each end shows its own side: traffic flows once both ends have moved to the relay.
    wait_for(lambda: relayed("h3", "h4") and relayed("h4", "h3") and talking(), 30, "relayed")
    via = row(mesh, "h3", "h4")["path_via"]
    assert f"relay via {via}" in text(mesh, "h3", "peers")


def test_netcheck_says_who_reaches_a_nated_member_and_what_its_nat_is(mesh: LabMesh) -> None:
    def reached_by(host: str) -> set[str]:
        return {r["name"] for r in netcheck(mesh, host)["reachable_from"]}

    wait_for(lambda: reached_by("h3") >= {"h1", "h2"}, 20, "h3 reached by h1 and h2")
    cone = netcheck(mesh, "h3")
    assert cone["members"] == 3
    assert "h4" not in reached_by("h3")  # relayed, not direct
    public = str(mesh.lab.public_address_of("h3"))
    assert {r["endpoint"].rsplit(":", 1)[0] for r in cone["reachable_from"]} == {
        str(mesh.lab.address_of("h1")),
        str(mesh.lab.address_of("h2")),
    }
    symmetric = netcheck(mesh, "h4")
    if cone["observing"]:
        # Both public members report where they see h3 and h4: one mapping for h3 (cone),
        # two ports of one address for h4 (symmetric).
        # (Within a minute: a member reports again at least every 60 s, and a report of a
        # changed endpoint may have been refused by the receiver's rate limit.)
        wait_for(lambda: netcheck(mesh, "h3")["nat"] == "cone", 70, "h3's NAT seen as cone")
        wait_for(lambda: netcheck(mesh, "h4")["nat"] == "symmetric", 70, "h4's symmetric")
        cone, symmetric = netcheck(mesh, "h3"), netcheck(mesh, "h4")
        assert cone["behind_nat"] is True
        assert any(s["endpoint"].startswith(f"{public}:") for s in cone["seen"])
        assert symmetric["behind_nat"] is True
    else:
        assert (cone["nat"], cone["behind_nat"]) == ("unknown", None)
    shown = text(mesh, "h3", "netcheck")
    assert f"reachable    directly by {len(cone['reachable_from'])} of 3 members" in shown
    assert shown.splitlines()[0].startswith(f"nat          {cone['nat']} (")
