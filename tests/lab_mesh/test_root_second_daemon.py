"""A second daemon started beside a running one touches nothing of it (issue 12, item 4).

Two lab hosts run meshd with wireguard-go and ping each other over the overlay. On h1, three
second daemons are started and must fail at once, each in one line with its exit status,
before creating anything: the same state dir with another --interface (4: the state dir's
lock), another network's node on the running daemon's interface name (4: its UAPI socket
answers), and a second node of the same network with another interface (4: the overlay /48
is routed through the running daemon's interface). Before and after each: h1's interface,
its WireGuard peers (keys, allowed-ips, endpoints), its routes and its members are the same,
no new interface exists, and the overlay still carries pings both ways.

Before the fix, the first of them created a WireGuard interface with the same key, replaced
the overlay route and, exiting, deleted it: pings between members were lost for about 10 s.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.lab import Lab
from meshd.lab.demo import LabMesh, wait_for

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def mesh() -> Iterator[LabMesh]:
    with Lab(2) as lab:
        mesh = LabMesh(lab, network="second")
        try:
            mesh.init("h1")
            mesh.up("h1")
            mesh.join("h2", mesh.invite("h1", "h2"))
            wait_for(lambda: mesh.wg_matches_membership(["h1", "h2"], ["h1", "h2"]), 30, "peers")
            wait_for(
                lambda: all(mesh.ping_pairs([("h1", "h2"), ("h2", "h1")]).values()), 30, "pings"
            )
            # The steady state: Babel's route to h2's /128, installed once the hold-down of
            # a new neighbour is over (a few Hellos after the pings already work).
            wait_for(lambda: babel_route(mesh, "h1", "h2"), 60, "h1's Babel route to h2")
            yield mesh
        finally:
            mesh.close()


def babel_route(mesh: LabMesh, host: str, target: str) -> bool:
    """Whether ``host`` has Babel's kernel route to ``target``'s overlay address."""
    routes = mesh.lab.exec(host, ["ip", "-6", "route", "show", "table", "main"]).stdout
    address = str(mesh.overlay_ip(target))
    return any(line.split()[0] == address and "proto babel" in line for line in routes.splitlines())


def snapshot(mesh: LabMesh) -> dict[str, object]:
    """What a second daemon must not change on h1."""
    lab, node = mesh.lab, mesh.node("h1")
    peers = {key: (peer.endpoint, peer.allowed_ips) for key, peer in mesh.wg_peers("h1").items()}
    routes = lab.exec("h1", ["ip", "-6", "route", "show", "table", "main"]).stdout
    links = sorted(
        line.split(":")[1].strip().split("@")[0]
        for line in lab.exec("h1", ["ip", "-o", "link", "show"]).stdout.splitlines()
    )
    members = sorted((r["name"], r["state"]) for r in node.peers())
    return {"peers": peers, "routes": routes, "links": links, "members": members}


def settled(mesh: LabMesh) -> dict[str, object]:
    """A snapshot that held for a second: Babel's routes and the holddown of a new neighbour
    settle on their own after a join, and that is no second daemon's doing."""
    last: list[dict[str, object]] = [snapshot(mesh)]

    def same() -> bool:
        time.sleep(1)
        now = snapshot(mesh)
        held = now == last[0]
        last[0] = now
        return held

    wait_for(same, 30, "h1's interface, peers and routes to settle")
    return last[0]


def second(mesh: LabMesh, state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return mesh.lab.exec(
        "h1",
        [
            *mesh.meshd,
            "up",
            "--wg-backend",
            "userspace",
            "--listen",
            "/ip4/0.0.0.0/tcp/7190",
            *args,
            "--state-dir",
            str(state_dir),
        ],
        check=False,
        timeout=60,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("meshd: ")]
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    return lines[0]


def untouched(mesh: LabMesh, before: dict[str, object]) -> None:
    assert snapshot(mesh) == before
    assert mesh.ping_pairs([("h1", "h2"), ("h2", "h1")]) == {("h1", "h2"): True, ("h2", "h1"): True}


def test_the_same_state_dir_with_another_interface(mesh: LabMesh) -> None:
    node = mesh.node("h1")
    before = settled(mesh)
    other = f"{node.ifname[:12]}b"
    done = second(mesh, node.state_dir, "--interface", other)
    assert done.returncode == 4
    assert one_line(done).startswith(
        f"meshd: a meshd daemon already runs for {node.state_dir} (pid "
    )
    untouched(mesh, before)


def test_another_node_on_the_running_interface(mesh: LabMesh) -> None:
    node = mesh.node("h1")
    other_dir = mesh.lab.state_dir("h1") / "other-network"
    mesh.lab.exec("h1", [*mesh.meshd, "init", "--network", "other", "--state-dir", str(other_dir)])
    before = settled(mesh)
    done = second(mesh, other_dir, "--interface", node.ifname, "--listen-port", "51999")
    assert done.returncode == 4
    assert one_line(done) == (
        f"meshd: interface {node.ifname} is already run by another process "
        f"(/var/run/wireguard/{node.ifname}.sock answers); choose another --interface, or stop "
        "the process that runs it"
    )
    untouched(mesh, before)


def test_a_second_node_of_the_network_on_the_same_host(mesh: LabMesh) -> None:
    node = mesh.node("h1")
    twin_dir = mesh.lab.state_dir("h1") / "twin"
    token = mesh.invite("h1", "twin")
    joined = mesh.lab.exec(
        "h1",
        [*mesh.meshd, "join", "--invite", token, "--no-up", "--state-dir", str(twin_dir)],
        check=False,
        timeout=60,
    )
    assert joined.returncode == 0, joined.stderr
    wait_for(lambda: ("twin", "admitted") in snapshot(mesh)["members"], 20, "twin admitted")  # type: ignore[operator]
    before = settled(mesh)
    other = f"{node.ifname[:12]}t"
    done = second(mesh, twin_dir, "--interface", other, "--listen-port", "51998")
    assert done.returncode == 4
    overlay = node.me()["overlay_ip"].rsplit(":", 5)[0]
    assert one_line(done).startswith(
        f"meshd: the overlay {overlay}::/48 is already routed through {node.ifname}"
    )
    untouched(mesh, before)
