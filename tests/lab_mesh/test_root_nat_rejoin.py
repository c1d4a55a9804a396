"""NATed members in the lab, as root: they never give up on the mesh, and relays are explicit.

One lab for the module: h1 and h2 public (h1 founds the network, ``--relay on``; h2
``--relay off``), h3 and h4 each behind its own symmetric NAT, so that they can never reach
each other directly and nobody can dial in to them. Short announcement times (TTL 6 s) would
make members expire within the test.

* h3 <-> h4 talk through h1, the only relay, and never through h2;
* every public member is stopped for longer than the announcement TTL: nobody expires in
  h3's and h4's views (no member is connected to them, so the silence is theirs), and once
  the public members are started again h3 and h4 are back with both, handshakes and pings,
  with no restart of their own (before, every member expired in their views, they stopped
  dialling and stayed cut off: nobody can dial in through their NATs).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from meshd.lab.demo import LabMesh, wait_for
from tests.lab_mesh.nat_lab import NATED, PUBLIC, symmetric_pair_lab, via

pytestmark = pytest.mark.root

EXTRA = ("--announce-ttl", "6s", "--babel-hello-interval", "0.5")


@pytest.fixture(scope="module")
def mesh() -> Iterator[LabMesh]:
    relays = {"h1": ("--relay", "on"), "h2": ("--relay", "off")}
    with symmetric_pair_lab("natrejoin", EXTRA, per_host=relays) as mesh:
        yield mesh


def states(mesh: LabMesh, host: str) -> dict[str, str]:
    return {r["name"]: r["state"] for r in mesh.node(host).peers() if r["state"] != "self"}


def log_of(mesh: LabMesh, host: str) -> str:
    """What ``host``'s meshd processes logged (the lab keeps one file per process)."""
    files = sorted((mesh.lab.dir / "logs").glob(f"{host}-*.log"))
    return "".join(f.read_text(errors="replace") for f in files)


def test_symmetric_nated_members_talk_through_the_relay_only(mesh: LabMesh) -> None:
    wait_for(
        lambda: via(mesh, "h3", "h4") == "via h1" and via(mesh, "h4", "h3") == "via h1",
        20,
        "h3 and h4 routed to each other through h1",
    )
    # Babel's route can come before WireGuard carries it: a new peer keeps its overlay /128
    # until its direct attempt has failed (meshd.mesh.holddown.DIRECT_ATTEMPT).
    wait_for(
        lambda: all(mesh.ping_pairs([("h3", "h4"), ("h4", "h3")], count=2).values()),
        10,
        "h3 and h4 pinging each other through h1",
    )
    assert via(mesh, "h3", "h4") == "via h1"  # never h2, which does not relay
    forwarding = mesh.lab.exec("h2", ["sysctl", "-n", "net.ipv6.conf.all.forwarding"])
    assert forwarding.stdout.strip() == "0"  # h2 did not turn it on
    forwarding = mesh.lab.exec("h1", ["sysctl", "-n", "net.ipv6.conf.all.forwarding"])
    assert forwarding.stdout.strip() == "1"
    assert mesh.node("h1").ask("status")["wireguard"]["relay"] == "yes (--relay on)"
    assert mesh.node("h2").ask("status")["wireguard"]["relay"] == "no (--relay off)"
    status = mesh.run("h3", "status").stdout  # behind its NAT, with a private address
    assert "wg_relay" in status
    assert "no (--relay auto:" in status


def test_nated_members_survive_a_restart_of_every_public_member(mesh: LabMesh) -> None:
    pids = {h: mesh.node(h).process.pid for h in NATED}  # type: ignore[union-attr]
    for host in PUBLIC:
        mesh.stop(host)
    # Down for longer than the announcement TTL (the notice comes after 10 s, the TTL is 6 s):
    # the scene in which every member used to expire in their views, out of WireGuard too,
    # and they stopped dialling for good. They say so once, not silently (it used to log
    # nothing for 11 minutes)...
    wait_for(
        lambda: all("no member connected for" in log_of(mesh, h) for h in NATED),
        30,
        "h3 and h4 to say that no member is connected",
    )
    # ...and the silence is theirs, not the members': nobody expired in their views.
    for host in NATED:
        assert set(states(mesh, host).values()) == {"admitted"}, states(mesh, host)
    started = time.monotonic()
    for host in PUBLIC:
        mesh.up(host)
    answering = time.monotonic()  # both public daemons answer on their control sockets
    everyone = PUBLIC + NATED
    wait_for(
        lambda: all(set(states(mesh, h).values()) == {"admitted"} for h in NATED),
        30,
        "h3 and h4 see every member admitted again",
    )
    wait_for(
        lambda: all(all(mesh.ping_pairs([(h, p) for p in PUBLIC]).values()) for h in NATED),
        30,
        "h3 and h4 ping both public members over the overlay",
    )
    took, back = time.monotonic() - started, time.monotonic() - answering
    print(
        f"NATed members back with every public member {took:.1f} s after their restart, "
        f"{back:.1f} s after both answered"
    )
    assert {h: mesh.node(h).process.pid for h in NATED} == pids  # type: ignore[union-attr]
    assert all(mesh.node(h).process.poll() is None for h in NATED)  # type: ignore[union-attr]
    assert set(states(mesh, "h1")) == set(everyone) - {"h1"}
    # Said when the first member connects (not at the next pass): by now, pings have gone both
    # ways, so the line is written; the wait only covers the log file's own buffering.
    wait_for(
        lambda: all("a member is connected again, after" in log_of(mesh, h) for h in NATED),
        5,
        "h3 and h4 to say that a member is connected again",
    )
    for host in NATED:
        assert log_of(mesh, host).count("no member connected for") == 1
