"""The candidate and punch cores driving real WireGuard through the lab's NATs, as root.

What the daemon will do, done by hand here: two public members observe each NATed member's
WireGuard endpoint (``wg show`` on the public side), the NATed member keeps the reflexive
candidate that both agree on (meshd/mesh/candidates.py), the other NATed member gets the
announced candidates and both start a round at once, as a punch request would make them
(meshd/mesh/punch.py), and each side applies the policy's actions with ``wg set``.

Cone <-> cone: both settle on a direct path at the other NAT's public address. Symmetric <->
symmetric: the two observers see different mappings, so no reflexive candidate reaches K = 2;
the private LAN candidate fails and both fall back to relay. Bounded: one policy step per
side every 0.2 s, at most 40 s.
"""

from __future__ import annotations

import base64
import ipaddress
import time
from collections.abc import Iterator

import pytest

from meshd.lab import Lab
from meshd.mesh import candidates as cand
from meshd.mesh.punch import Action, DirectPath
from tests.lab.test_root_lab import traces
from tests.lab.test_root_nat import WG_PORT, wg_up

pytestmark = pytest.mark.root


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab(2) as built:
        yield built
    assert traces(built.run_id) == []


def key_bytes(text: str) -> bytes:
    return base64.b64decode(text)


def peer_state(lab: Lab, host: str, ifname: str, peer_key: str) -> tuple[float | None, str | None]:
    """The peer's latest handshake (on the monotonic clock) and endpoint, as ``wg`` shows."""
    for line in lab.exec(host, ["wg", "show", ifname, "dump"]).stdout.splitlines()[1:]:
        fields = line.split("\t")
        if fields[0] == peer_key:
            wall = int(fields[4])
            endpoint = None if fields[2] == "(none)" else fields[2]
            offset = time.time() - time.monotonic()
            return (wall - offset if wall else None), endpoint
    raise AssertionError(f"{host} has no peer {peer_key}")


def apply(lab: Lab, host: str, ifname: str, peer_key: str, action: Action) -> None:
    if action.kick and action.endpoint is not None:
        lab.exec(host, ["wg", "set", ifname, "peer", peer_key, "endpoint", action.endpoint,
                        "persistent-keepalive", str(action.keepalive or 1)])  # fmt: skip


@pytest.mark.parametrize(("kind", "direct"), [("cone", True), ("symmetric", False)])
def test_the_cores_punch_between_cone_nats_and_fall_back_to_relay_between_symmetric(
    lab: Lab, kind: str, direct: bool
) -> None:
    a = lab.add_host(behind=lab.add_nat("a", kind=kind))
    b = lab.add_host(behind=lab.add_nat("b", kind=kind))
    hosts = ["h1", "h2", a.name, b.name]
    wg = {h: wg_up(lab, h, f"10.99.0.{n}") for n, h in enumerate(hosts, start=1)}
    overlay = {h: f"10.99.0.{n}/32" for n, h in enumerate(hosts, start=1)}
    public = {h: f"{lab.address_of(h)}:{WG_PORT}" for h in ("h1", "h2")}
    # Public members peer with everyone; NATed ones know the public ones' endpoints and keep
    # their sessions up; the two NATed members know each other's key, no endpoint yet.
    for host in hosts:
        for peer in hosts:
            if peer == host or (host in ("h1", "h2") and peer in ("h1", "h2")):
                continue
            argv = ["wg", "set", wg[host][0], "peer", wg[peer][1],
                    "allowed-ips", overlay[peer]]  # fmt: skip
            if peer in public:
                argv += ["endpoint", public[peer], "persistent-keepalive", "1"]
            lab.exec(host, argv)
        lab.exec(host, ["ip", "link", "set", wg[host][0], "up"])

    # Each NATed member learns what the two public members observe of it.
    deadline = time.monotonic() + 15
    announced: dict[str, list[cand.Candidate]] = {}
    for me in (a, b):
        seen = cand.Observations(overlay=None, listen_port=WG_PORT)
        while True:
            now = time.monotonic()
            for observer in ("h1", "h2"):
                _, endpoint = peer_state(lab, observer, wg[observer][0], wg[me.name][1])
                if endpoint is not None:
                    assert (
                        seen.observe(key_bytes(wg[observer][1]), "wireguard", endpoint, now) is None
                    )
            if len(seen) == 2:
                break
            assert now < deadline, "the public members never saw the NATed ones"
            time.sleep(0.1)
        local = [cand.Candidate("local", me.ipv4.ip, WG_PORT)]
        reflexive = seen.reflexive(time.monotonic())
        assert [c.endpoint for c in reflexive] == (
            [f"{lab.public_address_of(me)}:{WG_PORT}"] if direct else []
        )
        announced[me.name] = cand.own_candidates(configured=[], reflexive=reflexive, local=local)

    # The announcement crosses the mesh as (kind, endpoint) pairs; each side ranks them.
    started = time.monotonic()
    paths: dict[str, tuple[DirectPath, str]] = {}
    for me, other in ((a, b), (b, a)):
        wire = [(c.kind, c.endpoint) for c in announced[other.name]]
        theirs, refused = cand.parse_announced(wire, None)
        assert refused == []
        paths[me.name] = (
            DirectPath(
                theirs,
                started,
                families=frozenset({4}),
                networks=[me.ipv4.network],
                behind_nat=True,
            ),
            other.name,
        )
    actions: dict[str, Action] = {}
    while True:
        now = time.monotonic()
        for name, (path, peer_name) in paths.items():
            handshake, endpoint = peer_state(lab, name, wg[name][0], wg[peer_name][1])
            actions[name] = path.update(now, handshake, endpoint)
            apply(lab, name, wg[name][0], wg[peer_name][1], actions[name])
        states = {action.path for action in actions.values()}
        if states == {"direct"} or states == {"relay"}:
            break
        assert now - started < 40, actions
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    if direct:
        assert states == {"direct"}
        assert actions[a.name].endpoint == f"{lab.public_address_of(b)}:{WG_PORT}"
        assert actions[b.name].endpoint == f"{lab.public_address_of(a)}:{WG_PORT}"
        assert all(action.keepalive == 25 for action in actions.values())
        assert all(not action.relay for action in actions.values())
        ping = ["ping", "-n", "-q", "-c1", "-W2", str(ipaddress.ip_interface(overlay[b.name]).ip)]
        assert lab.exec(a.name, ping, check=False).returncode == 0
    else:
        assert states == {"relay"}
        assert all(action.relay for action in actions.values())
    print(f"{kind} <-> {kind}: {sorted(states)[0]} after {elapsed:.2f} s")
