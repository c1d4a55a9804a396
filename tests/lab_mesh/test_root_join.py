"""A member that joins a running mesh is reachable both ways at once, with no route to wait for.

Right after a join, Babel at one end may route the new member through a relay (a member that
heard it first) while the other end still sends directly; if that moved the member's overlay
/128 to the relay's WireGuard peer, WireGuard's receive filter would drop the direct traffic
until Babel heard the direct neighbour. New direct neighbours are held on their own peer
instead (docs/mesh.md, "New direct neighbours").

Six hosts, Hello 0.5 s. h1 founds the mesh with h2 and h3. h4 and h5 then join one at a time;
as soon as both ends of each pair with the new member have the WireGuard peer, every such pair
pings both ways, ten pings a second for 4 s (eight Hellos): none may be lost. Last, h6 joins
with UDP between it and h1 dropped: the other pairs answer at once, and h1 and h6, whose
direct link never comes up, talk through a relay once the hold-down is over.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator, Sequence

import pytest

from meshd.lab import Lab
from meshd.lab.demo import LabMesh, wait_for

pytestmark = pytest.mark.root

HOSTS = ["h1", "h2", "h3", "h4", "h5", "h6"]
HELLO = "0.5"
PINGS = 40
PING_INTERVAL = 0.1


@pytest.fixture(scope="module")
def mesh() -> Iterator[LabMesh]:
    with Lab(len(HOSTS)) as lab:
        mesh = LabMesh(lab, network="joinmesh")
        for host in HOSTS:
            # Lab hosts have private addresses: relaying is explicit (docs/nat.md).
            mesh.node(host).extra = ("--babel-hello-interval", HELLO, "--relay", "on")
        try:
            mesh.init("h1")
            mesh.up("h1")
            mesh.join_all("h1", ["h2", "h3"])
            wait_for(lambda: mesh.routes_direct(["h1", "h2", "h3"]), 30, "direct routes")
            yield mesh
        finally:
            mesh.close()
        assert not mesh.running()


def ping_trains(mesh: LabMesh, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Ping each (source, destination) over the overlay, all at once; lost replies by pair."""
    targets = {h: mesh.overlay_ip(h) for pair in pairs for h in pair}
    argv = ["ping", "-6", "-n", "-q", "-c", str(PINGS), "-i", str(PING_INTERVAL), "-W", "1"]
    running = {
        (a, b): mesh.lab.spawn(
            a, [*argv, targets[b]], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        for a, b in pairs
    }
    lost: dict[tuple[str, str], int] = {}
    for pair, process in running.items():
        out, _ = process.communicate(timeout=PINGS * PING_INTERVAL + 15)
        found = re.search(rb"(\d+) packets transmitted, (\d+) received", out)
        assert found is not None, out
        lost[pair] = int(found[1]) - int(found[2])
    return lost


def join(mesh: LabMesh, host: str, members: Sequence[str]) -> None:
    """``host`` joins; returns once every member's WireGuard peers are the other members."""
    mesh.join(host, mesh.invite("h1", host))
    wait_for(
        lambda: mesh.wg_matches_membership(members, members),
        30,
        f"every WireGuard peer list to hold {host}",
    )


def both_ways(host: str, others: Sequence[str]) -> list[tuple[str, str]]:
    return [(host, o) for o in others] + [(o, host) for o in others]


@pytest.mark.parametrize("host", ["h4", "h5"])
def test_a_new_member_answers_both_ways_from_the_start(mesh: LabMesh, host: str) -> None:
    members = HOSTS[: HOSTS.index(host) + 1]
    others = [h for h in members if h != host]
    join(mesh, host, members)
    lost = ping_trains(mesh, both_ways(host, others))
    print(f"{host} joined; lost of {PINGS} pings: {lost}")
    assert not any(lost.values()), {pair: n for pair, n in lost.items() if n}


def test_a_new_member_without_a_direct_link_is_relayed_after_the_hold_down(
    mesh: LabMesh,
) -> None:
    mesh.lab.block_udp("h1", "h6")
    try:
        join(mesh, "h6", HOSTS)
        lost = ping_trains(mesh, both_ways("h6", HOSTS[1:5]))
        print(f"h6 joined, UDP to h1 dropped; lost of {PINGS} pings: {lost}")
        assert not any(lost.values()), {pair: n for pair, n in lost.items() if n}
        took = wait_for(
            lambda: all(mesh.ping_pairs([("h1", "h6"), ("h6", "h1")]).values()),
            30,
            "h1 and h6 to talk through a relay",
        )
        print(f"h1 <-> h6 through a relay {took:.1f} s after the pings above")
        row = next(r for r in mesh.node("h1").peers() if r["name"] == "h6")
        assert str(row["route"]).startswith("via ")
    finally:
        mesh.lab.unblock_udp("h1", "h6")
