"""`meshd rotate wg` on a live mesh (wireguard-go in namespaces) while another member pings it.

Three hosts; h1 pings h2's overlay address every 50 ms (a bounded count) while h2 rotates its
WireGuard key. What is lost must be at most one handshake's worth: the first handshake under
the new key succeeds (no WireGuard retry, which would cost REKEY_TIMEOUT = 5 s), and the old
key is on no interface afterwards.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from meshd.lab.demo import LabMesh, all_pairs, wait_for
from meshd.trust.keyfiles import read_secret
from meshd.trust.keys import WireGuardKey
from meshd.wg.model import key_to_base64
from tests.lab_mesh.support import running_mesh

pytestmark = pytest.mark.root

HOSTS = ["h1", "h2", "h3"]
INTERVAL = 0.05  # seconds between pings
COUNT = 200  # 10 s of pings
REKEY_TIMEOUT = 5.0  # WireGuard's wait before it retries a handshake that got no answer


@pytest.fixture(scope="module")
def mesh() -> Iterator[LabMesh]:
    with running_mesh(HOSTS, "rotatemesh") as mesh:
        yield mesh


def _interface_key(mesh: LabMesh, host: str) -> str:
    done = mesh.lab.exec(host, ["wg", "show", mesh.node(host).ifname, "public-key"], check=True)
    return done.stdout.strip()


def test_rotate_wg_under_a_50_ms_ping_loses_at_most_one_handshake(mesh: LabMesh) -> None:
    old = mesh.node("h2").me()["wg_public_key"]
    assert _interface_key(mesh, "h2") == old
    assert all(mesh.ping_pairs(all_pairs(HOSTS)).values())

    target = mesh.overlay_ip("h2")
    ping = mesh.lab.spawn(
        "h1",
        ["ping", "-6", "-n", "-q", "-i", f"{INTERVAL:g}", "-c", str(COUNT), "-W", "1", target],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2.0)
    started = time.monotonic()
    done = mesh.run("h2", "rotate", "wg", "--json")
    took = time.monotonic() - started
    answer = json.loads(done.stdout)
    new = answer["wg_public_key"]
    assert new != old
    mesh.node("h2").identity.clear()  # its own row, remembered with the old key
    out, _ = ping.communicate(timeout=COUNT * INTERVAL + 30)
    summary = re.search(rb"(\d+) packets transmitted, (\d+) received", out)
    assert summary is not None, out
    sent, received = int(summary.group(1)), int(summary.group(2))
    lost = sent - received
    gap = lost * INTERVAL
    print(
        f"rotate wg: command {took:.3f} s; {lost} of {sent} pings lost at {INTERVAL * 1000:.0f} ms"
        f" (about {gap:.2f} s without traffic)"
    )
    assert sent == COUNT
    assert gap < REKEY_TIMEOUT, f"{lost} pings lost: a handshake was retried"

    # The old key is gone from every interface; the new one is everywhere.
    assert _interface_key(mesh, "h2") == new
    for host in ("h1", "h3"):
        peers = mesh.wg_peers(host)
        assert old not in peers
        assert new in peers
    assert mesh.wg_matches_membership(HOSTS, HOSTS)
    # The new private key is in wg.key, private.
    key_file = mesh.node("h2").state_dir / "wg.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_to_base64(WireGuardKey(read_secret(key_file)).public) == new
    assert all(mesh.ping_pairs(all_pairs(HOSTS)).values())


def test_a_restart_after_the_rotation_keeps_the_new_key(mesh: LabMesh) -> None:
    new = mesh.node("h2").me()["wg_public_key"]
    mesh.stop("h2")
    mesh.up("h2")
    assert _interface_key(mesh, "h2") == new
    pairs = [("h2", h) for h in HOSTS if h != "h2"] + [(h, "h2") for h in HOSTS if h != "h2"]
    wait_for(lambda: all(mesh.ping_pairs(pairs).values()), 20, "h2 to reach everyone again")
