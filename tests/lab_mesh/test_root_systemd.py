"""meshd with wireguard-go as systemd runs it: the unit's capability bounding set only, no new
privileges, and a NOTIFY_SOCKET. READY=1 comes only once the peers of the store are on the
interface (the node is cut off from the network, so they can only come from the store), and
STOPPING=1 at SIGTERM, before the interface goes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.lab import Lab
from meshd.lab.demo import LabMesh, wait_for
from tests.daemon.test_systemd import UNITS, unit_settings

pytestmark = pytest.mark.root


def bounding_set() -> str:
    """The unit's CapabilityBoundingSet as setpriv spells it: -all,+net_admin,..."""
    caps = unit_settings(UNITS / "meshd.service")["CapabilityBoundingSet"].split()
    return ",".join(["-all", *("+" + c.removeprefix("CAP_").lower() for c in caps)])


def receive(sock: socket.socket, timeout: float) -> dict[str, str]:
    sock.settimeout(timeout)
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


@pytest.fixture
def mesh() -> Iterator[LabMesh]:
    with Lab(2) as lab:
        mesh = LabMesh(lab, network="unitmesh")
        try:
            mesh.init("h1")
            mesh.up("h1")
            mesh.join_all("h1", ["h2"])
            yield mesh
        finally:
            mesh.close()


def test_ready_only_once_the_stored_peers_are_programmed_with_the_units_capabilities(
    mesh: LabMesh, tmp_path: Path
) -> None:
    assert bounding_set() == "-all,+net_admin,+net_bind_service"
    peer_key = mesh.node("h2").me()["wg_public_key"]
    mesh.stop("h1")
    mesh.lab.cut("h1")
    node = mesh.node("h1")
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        argv = [
            "setpriv", "--bounding-set", bounding_set(), "--no-new-privs",
            *mesh.meshd, "up", *mesh._daemon_args("h1"),
        ]  # fmt: skip
        node.process = mesh.lab.spawn("h1", argv, env={"NOTIFY_SOCKET": str(path)})
        ready = receive(sock, 60)
        assert ready["READY"] == "1", ready
        # At READY=1 the interface already holds the member the store knows.
        shown = mesh.lab.exec("h1", ["wg", "show", node.ifname, "peers"]).stdout.split()
        assert shown == [peer_key]
        assert node.ask("status")["wireguard"]["peers"] == 1
        # Only the unit's capabilities: the bounding set of the daemon and of wireguard-go.
        status = Path(f"/proc/{node.process.pid}/status").read_text()
        assert "NoNewPrivs:\t1" in status
        bound = next(line for line in status.splitlines() if line.startswith("CapBnd:"))
        assert int(bound.split()[1], 16) == (1 << 12) | (1 << 10)  # NET_ADMIN, NET_BIND_SERVICE

        node.process.terminate()
        message = receive(sock, 10)
        while "STOPPING" not in message:
            message = receive(sock, 10)
        assert node.process.wait(15) == 0
    wait_for(
        lambda: (
            mesh.lab.exec("h1", ["ip", "link", "show", node.ifname], check=False).returncode != 0
        ),
        5,
        "the interface to go",
    )
