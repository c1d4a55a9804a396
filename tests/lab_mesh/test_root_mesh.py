"""meshd with wireguard-go on 5 lab hosts: the mesh, a restart from the store, a revocation.

One lab for the module (building the mesh takes a few seconds); the tests run in file order
and the revocation comes last. The lab removes every process, socket and namespace.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from meshd.lab.demo import LabMesh, all_pairs, wait_for
from tests.lab_mesh.support import running_mesh

pytestmark = pytest.mark.root

HOSTS = ["h1", "h2", "h3", "h4", "h5"]


@pytest.fixture(scope="module")
def mesh() -> Iterator[LabMesh]:
    with running_mesh(HOSTS, "rootmesh") as mesh:
        yield mesh


def test_every_pair_talks_over_the_overlay_and_peers_are_the_members(mesh: LabMesh) -> None:
    assert mesh.wg_matches_membership(HOSTS, HOSTS)
    results = mesh.ping_pairs(all_pairs(HOSTS))
    assert all(results.values()), [pair for pair, ok in results.items() if not ok]
    for host in HOSTS:
        peers = mesh.wg_peers(host)
        for key, peer in peers.items():
            assert peer.endpoint is not None, f"{host}: peer {key} has no endpoint"
            assert len(peer.allowed_ips) == 2  # link-local /128 and overlay /128

    rows = json.loads(mesh.run("h2", "peers", "--json").stdout)
    others = [r for r in rows if r["state"] == "admitted"]
    assert len(others) == len(HOSTS) - 1
    for row in others:
        assert row["wg_peer"] is True
        assert (row["last_handshake"] or 0) > 1e9
        assert row["rx_bytes"] > 0
        assert row["tx_bytes"] > 0
    own = next(r for r in rows if r["state"] == "self")
    assert own["last_handshake"] is None
    status = json.loads(mesh.run("h2", "status", "--json").stdout)
    assert status["wireguard"]["interface"] == mesh.node("h2").ifname
    assert status["wireguard"]["peers"] == len(HOSTS) - 1
    ifname = mesh.node("h2").ifname
    assert status["wireguard"]["mtu"] == 1420  # derived: the lab's 1500-byte veths less 80
    shown = mesh.lab.exec("h2", ["ip", "-o", "link", "show", ifname], check=True, timeout=5)
    assert " mtu 1420 " in shown.stdout
    # What the kernel has, not what meshd once set: an MTU changed by hand shows.
    mesh.lab.exec("h2", ["ip", "link", "set", ifname, "mtu", "1380"], check=True, timeout=5)
    try:
        changed = json.loads(mesh.run("h2", "status", "--json").stdout)
        assert changed["wireguard"]["mtu"] == 1380
    finally:
        mesh.lab.exec("h2", ["ip", "link", "set", ifname, "mtu", "1420"], check=True, timeout=5)
    # The wildcard listen address is announced as the host's concrete address.
    assert all("/0.0.0.0/" not in a for a in status["listen_addrs"])
    assert any(str(mesh.lab.address_of("h2")) in a for a in status["listen_addrs"])


def test_a_restarted_node_rebuilds_its_interface_from_its_store(mesh: LabMesh) -> None:
    node = mesh.node("h3")
    expected = set(mesh.wg_peers("h3"))
    mesh.stop("h3")
    gone = mesh.lab.exec("h3", ["ip", "link", "show", node.ifname], check=False)
    assert gone.returncode != 0  # the interface went with the daemon
    # Cut off from everyone: whatever the interface gets, it gets from the store.
    mesh.lab.cut("h3")
    try:
        mesh.up("h3")
        wait_for(lambda: set(mesh.wg_peers("h3")) == expected, 5, "peers from the store")
        assert all(p.endpoint for p in mesh.wg_peers("h3").values())
        assert node.ask("status")["connected"] == 0
    finally:
        mesh.lab.heal("h3")
    pairs = [("h3", h) for h in HOSTS if h != "h3"]
    wait_for(lambda: all(mesh.ping_pairs(pairs).values()), 20, "h3 to reach everyone again")


def test_a_revoked_node_is_removed_everywhere_and_cannot_come_back(mesh: LabMesh) -> None:
    victim = "h5"
    rest = [h for h in HOSTS if h != victim]
    key = mesh.node(victim).me()["wg_public_key"]
    mesh.run("h1", "revoke", victim, "--reason", "test")
    took = wait_for(
        lambda: all(key not in mesh.wg_peers(h) for h in rest), 10, "the peer to go everywhere"
    )
    print(f"revoked peer gone from every WireGuard interface in {took:.3f} s")
    assert mesh.wg_matches_membership(rest, rest)
    cut_off = [(h, victim) for h in rest] + [(victim, h) for h in rest]
    assert not any(mesh.ping_pairs(cut_off).values())
    # Traffic the revoked member relayed (a pair that went through it since a restart) is
    # rerouted by Babel within a few Hellos: the rest talk again, within a bound.
    wait_for(lambda: all(mesh.ping_pairs(all_pairs(rest)).values()), 20, "the rest to talk")

    # Its daemon restarted on its store sees its own revocation there and stops with the
    # documented status 10 (docs/daemon.md); nobody answers it meanwhile or after.
    mesh.stop(victim)
    restarted = mesh.up(victim, wait=False)
    assert restarted.wait(timeout=30) == 10
    assert not any(mesh.ping_pairs([(victim, h) for h in rest], wait=2).values())
    assert all(key not in mesh.wg_peers(h) for h in rest)
    mesh.stop(victim)

    # Its keys under a fresh invite: refused.
    token = mesh.invite("h1", "h5-again")
    again = mesh.lab.state_dir(victim) / "again"
    again.mkdir(mode=0o700)
    for name in ("node.key", "wg.key"):
        shutil.copy2(mesh.node(victim).state_dir / name, again / name)
    done = mesh.lab.exec(
        victim,
        [*mesh.meshd, "join", "--invite", token, "--no-up", "--state-dir", str(again)],
        check=False,
    )
    assert done.returncode == 1
    assert "revoked" in done.stderr.strip().splitlines()[-1]
    assert all(key not in mesh.wg_peers(h) for h in rest)
