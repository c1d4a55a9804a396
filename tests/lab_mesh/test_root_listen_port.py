"""A SIGHUP's ``listen_port``: a running member moves WireGuard to another UDP port, and its
peers follow it there at once, their sessions kept (root).

Two lab hosts (meshd/lab), wireguard-go. h1 founds the network with a config file, h2
joins; they ping each other over the overlay. h1's file gets ``listen_port = 51999`` and a
SIGHUP: its device listens there (``meshd status``), h2's WireGuard shows h1 at the new
port, and the pings go on within seconds (h1's datagram to every peer from the new port,
WireGuard's roaming). A port another program holds refuses the SIGHUP: the port stays.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.lab import Lab
from meshd.lab.demo import LabMesh, wait_for

pytestmark = pytest.mark.root

HOSTS = ["h1", "h2"]
NEW_PORT = 51999
HELD_PORT = 52001


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[LabMesh, Path]]:
    config = tmp_path / "h1.toml"
    config.write_text("")
    with Lab(len(HOSTS)) as lab:
        mesh = LabMesh(lab, network="portmesh")
        mesh.node("h1").extra = ("--config", str(config))
        try:
            mesh.init("h1")
            mesh.up("h1")
            mesh.join_all("h1", ["h2"])
            yield mesh, config
        finally:
            mesh.close()
        assert not mesh.running()


def status(mesh: LabMesh, host: str) -> dict[str, object]:
    answer = mesh.node(host).ask("status")
    assert isinstance(answer, dict)
    return answer


def reloads(mesh: LabMesh) -> tuple[int, int]:
    """h1's SIGHUPs: (taken, refused)."""
    config = status(mesh, "h1")["config"]
    assert isinstance(config, dict)
    return int(config["reloads"]), int(config["failed"])


def h1_seen_at_by_h2(mesh: LabMesh) -> str | None:
    """The endpoint h2's WireGuard shows for h1."""
    h1 = mesh.node("h1").me()
    for row in mesh.node("h2").peers():
        if row.get("node_id") == h1.get("node_id"):
            endpoint = row.get("wg_endpoint") or row.get("endpoint")
            return str(endpoint) if endpoint else None
    return None


def test_a_sighup_moves_wireguard_to_a_new_port_and_the_peers_follow(
    mesh: tuple[LabMesh, Path],
) -> None:
    lab_mesh, config = mesh
    both = [("h1", "h2"), ("h2", "h1")]
    wait_for(lambda: all(lab_mesh.ping_pairs(both).values()), 30, "pings before")
    h1 = lab_mesh.node("h1")
    assert h1.process is not None

    config.write_text(f"listen_port = {NEW_PORT}\n")
    h1.process.send_signal(signal.SIGHUP)
    wait_for(
        lambda: status(lab_mesh, "h1")["wireguard"]["listen_port"] == NEW_PORT,  # type: ignore[index]
        10,
        "h1's device on the new port",
    )
    took = wait_for(lambda: all(lab_mesh.ping_pairs(both).values()), 10, "pings after")
    print(f"pings both ways again {took:.1f} s after the device moved")
    wait_for(
        lambda: str(h1_seen_at_by_h2(lab_mesh) or "").endswith(f":{NEW_PORT}"),
        10,
        "h2's WireGuard to show h1 at the new port",
    )

    # A port another program holds in h1's namespace: refused, the port as it was.
    holder = lab_mesh.lab.spawn(
        "h1",
        [sys.executable, "-c", "import socket, time; s = socket.socket(socket.AF_INET, "
         f"socket.SOCK_DGRAM); s.bind(('0.0.0.0', {HELD_PORT})); print('held', flush=True); "
         "time.sleep(60)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        config.write_text(f"listen_port = {HELD_PORT}\n")
        h1.process.send_signal(signal.SIGHUP)
        wait_for(lambda: reloads(lab_mesh) == (1, 1), 10, "the SIGHUP refused")
        said = status(lab_mesh, "h1")["config"]["last_error"]  # type: ignore[index]
        assert f"UDP port {HELD_PORT} is already in use" in said
        assert status(lab_mesh, "h1")["wireguard"]["listen_port"] == NEW_PORT  # type: ignore[index]
        assert all(lab_mesh.ping_pairs(both).values())
    finally:
        holder.kill()
        holder.wait(5)
