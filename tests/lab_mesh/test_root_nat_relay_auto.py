"""``--relay auto`` in the lab, as root, with public hosts that have public addresses.

One lab for the module (``Lab(public=True)``: the public hosts at 203.0.113.x, the NATs'
WAN addresses at 198.51.100.x, documentation ranges that meshd counts as public): h1 (the
founder) and h2 public, h3 and h4 each behind its own symmetric NAT. Nobody says ``--relay``:
every member decides by itself (``auto``), from its own addresses and from what members
observe of its WireGuard.

* h1 and h2 relay (a public address, then members reaching them at it) and turn IP
  forwarding on; h3 and h4 do not (members see them behind a NAT) and leave it off;
* h3 and h4 (two symmetric NATs: no direct path can come up) talk through one of the public
  members, the same at both ends.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshd.lab.demo import LabMesh, wait_for
from tests.lab_mesh.nat_lab import NATED, PUBLIC, symmetric_pair_lab, via

pytestmark = pytest.mark.root

EXTRA = ("--babel-hello-interval", "0.5")


@pytest.fixture(scope="module")
def mesh() -> Iterator[LabMesh]:
    with symmetric_pair_lab("relayauto", EXTRA, public=True) as mesh:
        yield mesh


def relay_of(mesh: LabMesh, host: str) -> str:
    return str(mesh.node(host).ask("status")["wireguard"].get("relay", ""))


def forwarding(mesh: LabMesh, host: str) -> str:
    done = mesh.lab.exec(host, ["sysctl", "-n", "net.ipv6.conf.all.forwarding"])
    return done.stdout.strip()


def test_the_lab_gives_public_hosts_public_addresses(mesh: LabMesh) -> None:
    assert str(mesh.lab.address_of("h1")).startswith("203.0.113.")
    assert str(mesh.lab.public_address_of("h3")).startswith("198.51.100.")
    assert str(mesh.lab.address_of("h3")).startswith("192.168.")


def test_auto_makes_the_public_members_relays_and_not_the_nated_ones(mesh: LabMesh) -> None:
    # Public members relay from their start (a public address), then because members reach
    # them at their own address; NATed members never do, once members see them behind NAT.
    wait_for(
        lambda: all(relay_of(mesh, h).startswith("no (--relay auto: members see") for h in NATED),
        20,
        "h3 and h4 to decide, from members' observations, not to relay",
    )
    for host in PUBLIC:
        assert relay_of(mesh, host).startswith("yes (--relay auto: "), relay_of(mesh, host)
        assert forwarding(mesh, host) == "1"
    for host in NATED:
        assert forwarding(mesh, host) == "0"
    # What h1's status says is its own address or what members see of it, never a NAT.
    assert "203.0.113." in relay_of(mesh, "h1") or "own address" in relay_of(mesh, "h1")


def test_symmetric_members_talk_through_a_public_member(mesh: LabMesh) -> None:
    wait_for(
        lambda: (
            via(mesh, "h3", "h4") in ("via h1", "via h2")
            and via(mesh, "h3", "h4") == via(mesh, "h4", "h3")
        ),
        20,
        "h3 and h4 routed to each other through the same public member",
    )
    wait_for(
        lambda: all(mesh.ping_pairs([("h3", "h4"), ("h4", "h3")], count=2).values()),
        10,
        "h3 and h4 pinging each other through a public member",
    )
    relay = via(mesh, "h3", "h4")
    assert relay in ("via h1", "via h2")
    # No NATed member is anyone's next hop.
    for host in PUBLIC + NATED:
        for row in mesh.node(host).peers():
            assert row.get("route") not in ("via h3", "via h4"), (host, row)
