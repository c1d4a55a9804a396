"""Babel only with the mesh's relays (docs/babel.md, "Who speaks Babel"), in the lab.

Five members, Hello 0.5 s: h4 and h5 relay (``--relay on``), h1 to h3 do not (``--relay
off``). A member that does not relay speaks Babel with the two relays alone; a relay with
every member. Two members that do not relay reach each other over their direct WireGuard
path with no Babel between them; when UDP between h1 and h2 is dropped, the punching
service sees their path die (a probe goes unanswered), both ask the relays, and they talk
through the same relay; when UDP comes back, their direct path is found again and each
overlay /128 goes back on its own peer. An idle direct path, with only WireGuard's
keepalives on it, is never taken for lost.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest

from meshd.lab import Lab
from meshd.lab.demo import LabMesh, all_pairs, wait_for
from meshd.wg.addresses import link_local_from_wg_key

pytestmark = pytest.mark.root

HOSTS = ["h1", "h2", "h3", "h4", "h5"]
RELAYS = ["h4", "h5"]
PLAIN = ["h1", "h2", "h3"]
HELLO = "0.5"


@pytest.fixture(scope="module")
def mesh() -> Iterator[LabMesh]:
    with Lab(len(HOSTS)) as lab:
        mesh = LabMesh(lab, network="babelrelays")
        try:
            for host in HOSTS:
                relay = "on" if host in RELAYS else "off"
                mesh.node(host).extra = ("--babel-hello-interval", HELLO, "--relay", relay)
            mesh.init("h4")
            mesh.up("h4")
            mesh.join_all("h4", [h for h in HOSTS if h != "h4"])
            wait_for(lambda: mesh.handshakes_done(HOSTS), 20, "a handshake between every pair")
            yield mesh
        finally:
            mesh.close()
        assert not mesh.running()


def link_local(mesh: LabMesh, host: str) -> str:
    key = base64.b64decode(mesh.node(host).me()["wg_public_key"])
    return str(link_local_from_wg_key(key))


def neighbours(mesh: LabMesh, host: str) -> set[str]:
    """The hosts ``host`` has a two-way Babel link with on the mesh."""
    view = json.loads(mesh.run(host, "routes", "--json").stdout)
    by_address = {link_local(mesh, h): h for h in HOSTS}
    return {
        by_address.get(n["address"], n["address"])
        for n in view["neighbours"]
        if n["interface"] == mesh.node(host).ifname and n["txcost"] < 0xFFFF
    }


def holder(mesh: LabMesh, host: str, target: str) -> str | None:
    return mesh.holder(host, target, HOSTS)


def test_members_that_do_not_relay_speak_babel_with_the_relays_alone(mesh: LabMesh) -> None:
    wait_for(
        lambda: all(neighbours(mesh, h) == set(RELAYS) for h in PLAIN),
        20,
        "each member that does not relay to have the two relays as its Babel neighbours",
    )
    wait_for(
        lambda: all(neighbours(mesh, h) == set(HOSTS) - {h} for h in RELAYS),
        20,
        "each relay to have every member as its Babel neighbour",
    )
    wait_for(
        lambda: all(holder(mesh, a, b) == b for a, b in all_pairs(HOSTS)),
        20,
        "every overlay /128 on its own peer",
    )
    wait_for(lambda: all(mesh.ping_pairs(all_pairs(HOSTS)).values()), 15, "every pair to talk")


def test_an_idle_direct_path_without_babel_is_never_taken_for_lost(mesh: LabMesh) -> None:
    """Over two keepalive intervals and more, h1 and h3 (no Babel between them, nothing
    sent but WireGuard's keepalives) keep each other on their own peers."""
    wait_for(
        lambda: holder(mesh, "h1", "h3") == "h3" and holder(mesh, "h3", "h1") == "h1",
        20,
        "h1 and h3 on their own peers",
    )
    end = time.monotonic() + 60
    while time.monotonic() < end:
        assert holder(mesh, "h1", "h3") == "h3"
        assert holder(mesh, "h3", "h1") == "h1"
        time.sleep(2)
    assert all(mesh.ping_pairs([("h1", "h3"), ("h3", "h1")]).values())


def test_a_pair_without_babel_goes_through_a_relay_and_comes_back(mesh: LabMesh) -> None:
    lab = mesh.lab
    wait_for(lambda: holder(mesh, "h1", "h2") == "h2", 20, "h1 and h2 direct")
    lab.block_udp("h1", "h2")
    try:

        def relayed() -> bool:
            there, back = holder(mesh, "h1", "h2"), holder(mesh, "h2", "h1")
            if there is None or there != back or there not in RELAYS:
                return False
            return all(mesh.ping_pairs([("h1", "h2"), ("h2", "h1")]).values())

        took = wait_for(relayed, 60, "h1 and h2 to talk through one relay")
        print(f"h1 <-> h2 through {holder(mesh, 'h1', 'h2')} {took:.1f} s after the drop")
    finally:
        lab.unblock_udp("h1", "h2")
    took = wait_for(
        lambda: holder(mesh, "h1", "h2") == "h2" and holder(mesh, "h2", "h1") == "h1",
        60,
        "the direct path back",
    )
    print(f"h1 <-> h2 direct again {took:.1f} s after UDP came back")
    assert all(mesh.ping_pairs([("h1", "h2"), ("h2", "h1")]).values())
