"""NATed members find direct paths through the daemon's punching, as root.

One lab for the module: h1 public (founder; it relays, as a public member does by
default), h2 and h3 behind one cone NAT, h4 behind another cone NAT, h5 and h6 each behind
its own symmetric NAT. With one public member, no reflexive candidate reaches K = 2: what
brings cone-NATed members together is the punch notice h1 forwards, with where it sees
each side (docs/nat.md).

* h2 <-> h4 (cone <-> cone): a direct WireGuard session, each at the other NAT's public
  address and port 51820;
* h2 <-> h3 (one NAT): a session at each other's LAN address;
* h5 <-> h6 (symmetric <-> symmetric): pings through h1;
* a hostile member (h3) floods h2 with punch notices and reports naming an address of its
  choosing: h2's endpoint for h4 never goes there, and h2 never announces it;
* h4's NAT changes its public port: h2 finds h4 at the new mapping, with no restart.
"""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Iterator

import pytest

from meshd.errors import MeshdError
from meshd.lab import Lab
from meshd.lab.demo import LabMesh, wait_for
from tests.lab.test_root_lab import traces
from tests.lab_mesh.test_root_nat_rejoin import log_of

pytestmark = pytest.mark.root

HOSTS = ["h1", "h2", "h3", "h4", "h5", "h6"]
EXTRA = ("--babel-hello-interval", "1")
EVIL = "198.51.100.77:51820"
PORT = 51820
# A member connected again is watched this long for a silent session (meshd.mesh.reconnect).
WATCHED = 12.0
FORMED: list[float] = []  # when every member had joined


@pytest.fixture(scope="module")
def mesh() -> Iterator[LabMesh]:
    with Lab(1) as lab:
        ca = lab.add_nat("ca", kind="cone")
        lab.add_host(behind=ca)
        lab.add_host(behind=ca)
        lab.add_host(behind=lab.add_nat("cb", kind="cone"))
        lab.add_host(behind=lab.add_nat("sa", kind="symmetric"))
        lab.add_host(behind=lab.add_nat("sb", kind="symmetric"))
        mesh = LabMesh(lab, network="natpaths", announce_interval="5s")
        try:
            for host in HOSTS:
                mesh.node(host).extra = EXTRA
            mesh.init("h1")
            mesh.up("h1")
            mesh.join_all("h1", HOSTS[1:])
            FORMED[:] = [time.monotonic()]
            yield mesh
        finally:
            mesh.close()
        assert not mesh.running()
    assert traces(lab.run_id) == []


def endpoint(mesh: LabMesh, host: str, peer: str) -> str | None:
    """The endpoint ``host``'s WireGuard shows for ``peer`` (None: none, or no such peer)."""
    key = mesh.node(peer).me()["wg_public_key"]
    found = mesh.wg_peers(host).get(key)
    return found.endpoint if found is not None else None


def path_state(mesh: LabMesh, host: str, peer: str) -> str | None:
    """What ``host``'s punching service holds of its path to ``peer`` (``meshd peers``'
    ``path_state``: trying, direct, relay or none; None if not shown)."""
    row = {r["name"]: r for r in mesh.node(host).peers()}.get(peer, {})
    state = row.get("path_state")
    return state if isinstance(state, str) else None


def traffic_flows(mesh: LabMesh, pairs: list[tuple[str, str]], count: int) -> bool:
    """Whether pings over the overlay get through for every pair (one lost is no failure);
    where they do not, what each side's WireGuard and routes show is printed first (an
    intermittent loss in CI left nothing to read but the endpoint)."""
    results = mesh.ping_pairs(pairs, count=count)
    if all(results.values()):
        return True
    for host in sorted({h for pair in pairs for h in pair}):
        print(f"--- {host}: pings {results}")
        for argv in (
            ["wg", "show", mesh.lab.wg_ifname(host), "dump"],
            ["ip", "-6", "route", "show", "table", "all"],
        ):
            done = mesh.lab.exec(host, argv, check=False)
            print("$ " + " ".join(argv) + "\n" + done.stdout + done.stderr)
        try:
            print(mesh.node(host).ask("peers"))
        except MeshdError as exc:  # the daemon may be down: say so, keep the rest
            print(f"peers: {exc}")
    return False


def test_cone_nated_members_get_a_direct_session(mesh: LabMesh) -> None:
    lab = mesh.lab
    want = {
        ("h2", "h4"): f"{lab.public_address_of('h4')}:{PORT}",
        ("h4", "h2"): f"{lab.public_address_of('h2')}:{PORT}",
    }
    started = time.monotonic()
    wait_for(
        lambda: all(endpoint(mesh, a, b) == e for (a, b), e in want.items()),
        40,
        "h2 and h4 at each other's NAT address",
    )
    print(f"cone <-> cone direct {time.monotonic() - started:.1f} s after the mesh formed")
    # Babel moves each side's route to the direct session within a few Hellos. The bound is
    # 20 s: in one CI run of two, with the direct endpoints found 9.3 s after the mesh formed,
    # the pair did not answer within 10 s (not understood yet: docs/nat.md, open questions).
    waited = wait_for(
        lambda: all(mesh.ping_pairs([("h2", "h4"), ("h4", "h2")]).values()), 20, "pings"
    )
    print(f"cone <-> cone pings answered {waited:.1f} s after the direct endpoints")
    assert endpoint(mesh, "h2", "h4") == want[("h2", "h4")]  # direct, not through h1


def test_members_behind_one_nat_talk_over_their_lan(mesh: LabMesh) -> None:
    lab = mesh.lab
    wait_for(
        lambda: (
            endpoint(mesh, "h2", "h3") == f"{lab.address_of('h3')}:{PORT}"
            and endpoint(mesh, "h3", "h2") == f"{lab.address_of('h2')}:{PORT}"
        ),
        20,
        "h2 and h3 at each other's LAN address",
    )
    wait_for(  # Babel moves each side's route to the direct session within a few Hellos
        lambda: all(mesh.ping_pairs([("h2", "h3"), ("h3", "h2")]).values()), 10, "pings"
    )
    assert endpoint(mesh, "h2", "h3") == f"{lab.address_of('h3')}:{PORT}"  # still the LAN


def test_symmetric_nated_members_talk_through_a_relay(mesh: LabMesh) -> None:
    wait_for(
        lambda: all(mesh.ping_pairs([("h5", "h6"), ("h6", "h5")]).values()),
        40,
        "pings between h5 and h6",
    )
    rows = {r["name"]: r for r in mesh.node("h5").peers()}
    assert rows["h6"].get("route") == "via h1"


def test_members_that_joined_are_not_taken_for_restarted_ones(mesh: LabMesh) -> None:
    """No daemon restarted here. Between members that do not relay no Babel Hellos flow,
    so a session is silent once its handshake is done: a member's first connection, after
    its session came up, is no sign of a restart, and no member says one restarted (a
    joining member was re-created and logged as "restarted?" by the members it reached)."""
    time.sleep(max(0.0, WATCHED - (time.monotonic() - FORMED[0])))
    said = {h: log_of(mesh, h).count("(restarted?)") for h in HOSTS}
    assert said == dict.fromkeys(HOSTS, 0)


def test_a_hostile_members_hints_do_not_move_a_third_partys_traffic(mesh: LabMesh) -> None:
    wanted = f"{mesh.lab.public_address_of('h4')}:{PORT}"
    wait_for(lambda: endpoint(mesh, "h2", "h4") == wanted, 40, "h2 direct to h4")
    # The endpoint is laid while a round still tries it: the notices below are refused as
    # disturbing a working path once h2's punching service holds the path direct.
    wait_for(lambda: path_state(mesh, "h2", "h4") == "direct", 20, "h2's path to h4 direct")
    status = mesh.node("h2").ask("status")
    victim = next(a for a in status["listen_addrs"] if a.startswith("/ip4/192.168."))
    third = base64.b64decode(mesh.node("h4").me()["node_key"]).hex()
    hostile = mesh.lab.spawn(
        "h3",
        [
            sys.executable,
            "-m",
            "tests.lab_mesh.nat_hostile",
            str(mesh.node("h3").state_dir),
            status["network_id"],
            "5",
            victim,
            third,
            EVIL,
        ],
    )
    seen: set[str | None] = set()
    states: list[str | None] = []  # what h2's punching service held of the path meanwhile
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        seen.add(endpoint(mesh, "h2", "h4"))
        states.append(path_state(mesh, "h2", "h4"))
        time.sleep(0.2)
    assert hostile.wait(20) == 0
    assert EVIL not in seen, seen
    assert endpoint(mesh, "h2", "h4") == wanted
    assert traffic_flows(mesh, [("h2", "h4")], count=3)  # one lost is no failure
    announced = {r["name"]: r for r in mesh.node("h1").peers()}["h2"]["endpoints"]
    assert EVIL not in announced
    shed = mesh.node("h2").ask("status")["shed"]  # refused, and counted by reason
    assert shed.get("nat_punchnotice:direct", 0) > 0, (shed, states)
    assert shed.get("nat_report:rate", 0) > 0, (shed, states)


def test_a_member_whose_nat_remaps_is_found_again(mesh: LabMesh) -> None:
    lab = mesh.lab
    wait_for(
        lambda: endpoint(mesh, "h2", "h4") == f"{lab.public_address_of('h4')}:{PORT}",
        40,
        "h2 direct to h4",
    )
    ports = lab.remap_nat("cb")
    started = time.monotonic()

    def moved() -> bool:
        found = endpoint(mesh, "h2", "h4")
        if found is None or not found.startswith(f"{lab.public_address_of('h4')}:"):
            return False
        return int(found.rsplit(":", 1)[1]) in range(ports[0], ports[1] + 1)

    wait_for(moved, 60, "h2 at h4's new mapping")
    print(f"found again {time.monotonic() - started:.1f} s after the remap")
    assert traffic_flows(mesh, [("h2", "h4"), ("h4", "h2")], count=2)
