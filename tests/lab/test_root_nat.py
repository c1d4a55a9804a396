"""NAT routers in the lab, as root: what each kind of NAT does to plain UDP and to WireGuard.

These are the facts the daemon's NAT traversal relies on, measured on this kernel: a cone NAT
keeps a flow's port and maps every destination the same; a symmetric NAT does not; two cone
NATs let a simultaneous exchange through (a hole punch) and two symmetric ones do not; hosts
behind one NAT talk over their LAN and not through the NAT's public address (no hairpin); a
NAT behind a NAT behaves as the outer one; WireGuard with each other's public endpoint and a
persistent keepalive gets a session between two cone-NATed hosts; a remapped NAT shows a new
public port. Traffic stays inside the namespaces built here; every exchange is bounded (at
most a few hundred datagrams, every wait has a timeout).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meshd.lab import Lab, LabError
from meshd.lab.teardown import WG_SOCKET_DIR
from tests.lab.test_root_lab import run_cli, traces

pytestmark = pytest.mark.root

WG_PORT = 51820
REFLECT_PORTS = (7100, 7101)

#: Answers every datagram with the source ip:port it came from; says "ready" once bound.
REFLECTOR = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    host = peer[0].removeprefix("::ffff:")
    s.sendto(f"{host}:{peer[1]}".encode(), peer)
"""

#: From local port argv[1], asks each reflector argv[2:] (ip:port) where it saw us from;
#: prints the answers as a JSON list (null where none came in three tries of 0.5 s).
PROBE = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(0.5)
seen = []
for target in sys.argv[2:]:
    host, port = target.rsplit(":", 1)
    answer = None
    for _ in range(3):
        s.sendto(b"probe", (host, int(port)))
        try:
            data, peer = s.recvfrom(2048)
        except TimeoutError:
            continue
        if peer == (host, int(port)):
            answer = data.decode()
            break
    seen.append(answer)
print(json.dumps(seen))
"""

#: From local port argv[1], sends to argv[2] (ip:port) every 50 ms for up to argv[3] seconds
#: and answers what comes back; prints {"got": bool, "from": "ip:port" or null}. Once
#: something came from the peer, goes on sending for 0.5 s so that the peer hears us too.
PUNCH = """
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
host, port = sys.argv[2].rsplit(":", 1)
peer = (host, int(port))
s.settimeout(0.05)
end = time.monotonic() + float(sys.argv[3])
got = None
while time.monotonic() < end:
    s.sendto(b"punch", peer)
    try:
        data, source = s.recvfrom(2048)
    except TimeoutError:
        continue
    if got is None:
        got = f"{source[0]}:{source[1]}"
        end = min(end, time.monotonic() + 0.5)
print(json.dumps({"got": got is not None, "from": got}))
"""


@pytest.fixture
def lab() -> Iterator[Lab]:
    """Two public hosts (h1, h2) running reflectors on two ports each."""
    with Lab(2) as built:
        for host in ("h1", "h2"):
            for port in REFLECT_PORTS:
                server = built.spawn(
                    host, [sys.executable, "-c", REFLECTOR, str(port)], stdout=subprocess.PIPE
                )
                assert server.stdout is not None
                assert server.stdout.readline() == b"ready\n"
        yield built
    assert traces(built.run_id) == []


def reflectors(lab: Lab) -> list[str]:
    """Three destinations: h1 on two ports and h2."""
    h1, h2 = str(lab.address_of("h1")), str(lab.address_of("h2"))
    return [f"{h1}:{REFLECT_PORTS[0]}", f"{h1}:{REFLECT_PORTS[1]}", f"{h2}:{REFLECT_PORTS[0]}"]


def probe(lab: Lab, host: str, targets: list[str], port: int = WG_PORT) -> list[str | None]:
    done = lab.exec(host, [sys.executable, "-c", PROBE, str(port), *targets], timeout=15)
    seen = json.loads(done.stdout)
    assert isinstance(seen, list)
    return seen


def punch(lab: Lab, pairs: list[tuple[str, str]], seconds: float = 3.0) -> list[dict[str, object]]:
    """Start every (host, peer ip:port) exchange at once; each one's result."""
    started = [
        lab.spawn(
            host,
            [sys.executable, "-c", PUNCH, str(WG_PORT), target, str(seconds)],
            stdout=subprocess.PIPE,
        )
        for host, target in pairs
    ]
    results = []
    for process in started:
        out, _ = process.communicate(timeout=seconds + 10)
        assert process.returncode == 0
        results.append(json.loads(out))
    return results


def public(lab: Lab, host: str, port: int = WG_PORT) -> str:
    return f"{lab.public_address_of(host)}:{port}"


def test_cone_nat_keeps_the_port_and_maps_every_destination_alike(lab: Lab) -> None:
    nat = lab.add_nat("home", kind="cone")
    host = lab.add_host(behind=nat)
    assert host.behind == "home"
    assert str(host.ipv4) == "192.168.1.2/24"
    assert lab.public_address_of(host) == nat.wan4.ip != lab.address_of(host)
    seen = probe(lab, host.name, reflectors(lab))
    assert seen == [public(lab, host.name)] * 3


def test_symmetric_nat_gives_each_destination_its_own_port(lab: Lab) -> None:
    host = lab.add_host(behind=lab.add_nat(kind="symmetric"))
    seen = probe(lab, host.name, reflectors(lab))
    assert all(s is not None for s in seen), seen
    addresses = {str(s).rsplit(":", 1)[0] for s in seen}
    ports = [int(str(s).rsplit(":", 1)[1]) for s in seen]
    assert addresses == {str(lab.public_address_of(host))}
    assert len(set(ports)) == 3, seen


@pytest.mark.parametrize(
    ("kinds", "direct"),
    [
        (("cone", "cone"), True),
        (("symmetric", "symmetric"), False),
        (("cone", "symmetric"), False),
    ],
)
def test_hole_punching_between_two_nats(lab: Lab, kinds: tuple[str, str], direct: bool) -> None:
    a = lab.add_host(behind=lab.add_nat("a", kind=kinds[0])).name
    b = lab.add_host(behind=lab.add_nat("b", kind=kinds[1])).name
    # Each learns its reflexive address from a public host, as members will from each other.
    h1 = reflectors(lab)[0]
    (seen_a,) = probe(lab, a, [h1])
    (seen_b,) = probe(lab, b, [h1])
    assert seen_a is not None
    assert seen_b is not None
    # One side alone is filtered out: b's NAT drops what it did not ask for.
    (alone,) = punch(lab, [(a, seen_b)], seconds=1.0)
    assert alone == {"got": False, "from": None}
    # Both at once: the punch.
    result_a, result_b = punch(lab, [(a, seen_b), (b, seen_a)])
    if direct:
        assert result_a == {"got": True, "from": seen_b}
        assert result_b == {"got": True, "from": seen_a}
    else:
        assert (result_a["got"], result_b["got"]) == (False, False), (result_a, result_b)


def test_hosts_behind_one_nat_talk_over_their_lan_not_through_its_address(lab: Lab) -> None:
    nat = lab.add_nat(kind="cone")
    a, b = lab.add_host(behind=nat), lab.add_host(behind=nat)
    lan_a, lan_b = f"{a.ipv4.ip}:{WG_PORT}", f"{b.ipv4.ip}:{WG_PORT}"
    assert punch(lab, [(a.name, lan_b), (b.name, lan_a)]) == [
        {"got": True, "from": lan_b},
        {"got": True, "from": lan_a},
    ]
    # The same port on the NAT's public address does not come back inside (no hairpin).
    both_public = public(lab, a.name)
    assert probe(lab, a.name, [reflectors(lab)[0]]) == [both_public]
    assert probe(lab, b.name, [reflectors(lab)[0]], port=WG_PORT + 1) == [
        public(lab, b.name, WG_PORT + 1)
    ]
    result = punch(lab, [(a.name, public(lab, b.name, WG_PORT + 1))], seconds=1.0)
    assert result == [{"got": False, "from": None}]


def test_a_nat_behind_a_nat_behaves_as_the_outer_one(lab: Lab) -> None:
    carrier_cone = lab.add_nat("cgn1", kind="cone")
    carrier_symmetric = lab.add_nat("cgn2", kind="symmetric")
    behind_cone = lab.add_host(behind=lab.add_nat("home1", kind="cone", behind=carrier_cone))
    behind_symmetric = lab.add_host(
        behind=lab.add_nat("home2", kind="cone", behind=carrier_symmetric)
    )
    assert lab.nat("home1").behind == "cgn1"
    assert lab.public_address_of(behind_cone) == carrier_cone.wan4.ip
    assert probe(lab, behind_cone.name, reflectors(lab)) == [public(lab, behind_cone.name)] * 3
    seen = probe(lab, behind_symmetric.name, reflectors(lab))
    assert all(s is not None and s.startswith(f"{carrier_symmetric.wan4.ip}:") for s in seen)
    assert len(set(seen)) == 3, seen
    # Two hosts behind double cone NATs still punch through.
    other = lab.add_host(behind=lab.add_nat("home3", kind="cone", behind=carrier_cone)).name
    (seen_other,) = probe(lab, other, [reflectors(lab)[0]])
    assert seen_other is not None
    mine = public(lab, behind_cone.name)
    # Both behind the same carrier NAT, which does not hairpin: only their own LANs differ,
    # so no punch; a host of another carrier does get through.
    assert punch(lab, [(behind_cone.name, seen_other), (other, mine)], seconds=1.5) == [
        {"got": False, "from": None},
        {"got": False, "from": None},
    ]
    far = lab.add_host(behind=lab.add_nat("far", kind="cone")).name
    (seen_far,) = probe(lab, far, [reflectors(lab)[0]])
    assert seen_far is not None
    assert punch(lab, [(behind_cone.name, seen_far), (far, mine)]) == [
        {"got": True, "from": seen_far},
        {"got": True, "from": mine},
    ]


def test_remapping_a_nat_changes_the_public_port_and_keeps_it_cone(lab: Lab) -> None:
    nat = lab.add_nat(kind="cone")
    host = lab.add_host(behind=nat).name
    assert probe(lab, host, reflectors(lab)) == [public(lab, host)] * 3
    lab.flush_nat(nat)
    assert probe(lab, host, reflectors(lab)) == [public(lab, host)] * 3
    low, high = lab.remap_nat(nat)
    assert (low, high) == (21000, 21999)
    seen = probe(lab, host, reflectors(lab))
    assert len(set(seen)) == 1, seen
    address, port = str(seen[0]).rsplit(":", 1)
    assert address == str(nat.wan4.ip)
    assert low <= int(port) <= high
    assert lab.remap_nat(nat, (30000, 30000)) == (30000, 30000)
    assert probe(lab, host, reflectors(lab)) == [f"{nat.wan4.ip}:30000"] * 3


def wg_up(lab: Lab, host: str, address: str) -> tuple[str, str]:
    """wireguard-go on a host with a fresh key; its interface name and public key."""
    ifname = lab.wg_ifname(host)
    lab.spawn(host, ["wireguard-go", ifname], env={"WG_PROCESS_FOREGROUND": "1"})
    deadline = time.monotonic() + 10
    while not os.path.exists(f"{WG_SOCKET_DIR}/{ifname}.sock"):
        assert time.monotonic() < deadline, "wireguard-go did not start"
        time.sleep(0.05)
    private = lab.exec(host, ["wg", "genkey"]).stdout.strip()
    key_file: Path = lab.state_dir(host) / "wg.key"
    key_file.write_text(private + "\n")
    key_file.chmod(0o600)
    lab.exec(host, ["wg", "set", ifname, "listen-port", str(WG_PORT), "private-key", str(key_file)])
    lab.exec(host, ["ip", "address", "add", f"{address}/24", "dev", ifname])
    public_key = lab.exec(host, ["wg", "pubkey"], input=private + "\n").stdout.strip()
    return ifname, public_key


def test_wireguard_between_two_cone_nats_with_each_others_public_endpoint(lab: Lab) -> None:
    a = lab.add_host(behind=lab.add_nat("a", kind="cone")).name
    b = lab.add_host(behind=lab.add_nat("b", kind="cone")).name
    if_a, key_a = wg_up(lab, a, "10.99.0.1")
    if_b, key_b = wg_up(lab, b, "10.99.0.2")
    started = time.monotonic()
    for host, ifname, key, peer, overlay in (
        (a, if_a, key_b, b, "10.99.0.2"),
        (b, if_b, key_a, a, "10.99.0.1"),
    ):
        lab.exec(host, ["wg", "set", ifname, "peer", key, "endpoint", public(lab, peer),
                        "persistent-keepalive", "1", "allowed-ips", f"{overlay}/32"])  # fmt: skip
        lab.exec(host, ["ip", "link", "set", ifname, "up"])
    deadline = started + 30
    handshakes = {a: 0, b: 0}
    while not all(handshakes.values()):
        assert time.monotonic() < deadline, f"no handshake in 30 s: {handshakes}"
        time.sleep(0.2)
        for host, ifname in ((a, if_a), (b, if_b)):
            line = lab.exec(host, ["wg", "show", ifname, "latest-handshakes"]).stdout.split()
            handshakes[host] = int(line[1])
    elapsed = time.monotonic() - started
    # Each sees the other at its NAT's public address and WireGuard's own port: direct.
    assert lab.exec(a, ["wg", "show", if_a, "endpoints"]).stdout.split()[1] == public(lab, b)
    assert lab.exec(b, ["wg", "show", if_b, "endpoints"]).stdout.split()[1] == public(lab, a)
    assert lab.exec(a, ["ping", "-n", "-q", "-c2", "-W2", "10.99.0.2"], check=False).returncode == 0
    print(f"handshake between two cone NATs after {elapsed:.2f} s")


def test_cli_up_with_nats_lists_and_removes_them() -> None:
    up = run_cli("up", "--hosts", "1", "--nat", "cone:2", "--nat", "symmetric", "--keep", "--json")
    assert up.returncode == 0, up.stderr
    described = json.loads(up.stdout)
    run_id = described["run_id"]
    try:
        assert [(n["name"], n["kind"]) for n in described["nats"]] == [
            ("n1", "cone"),
            ("n2", "symmetric"),
        ]
        assert [h["behind"] for h in described["hosts"]] == [None, "n1", "n1", "n2"]
        listed = json.loads(run_cli("list", "--json").stdout)
        (mine,) = [run for run in listed if run["run_id"] == run_id]
        assert len(mine["namespaces"]) == 7  # router, 4 hosts, 2 NATs
        assert run_cli("down", run_id).returncode == 0
        assert traces(run_id) == []
        bad = run_cli("up", "--nat", "full-cone")
        assert bad.returncode == 2
        assert "KIND[:HOSTS]" in bad.stderr
    finally:
        run_cli("down", run_id)


def test_nat_misuse_is_refused_cut_works_behind_a_nat_and_close_removes_all() -> None:
    lab = Lab(1).build()
    nat = lab.add_nat("x", kind="cone")
    lab.add_host(behind=nat)
    with pytest.raises(LabError, match="already has"):
        lab.add_nat("x")
    with pytest.raises(LabError, match="behind NAT x"):
        lab.block_udp("h1", "h2")
    lab.cut("h2")
    assert lab.exec("h2", ["ping", "-n", "-c1", "-W1", str(nat.lan4.ip)], check=False).returncode
    lab.heal("h2")
    assert lab.close() == []
    assert traces(lab.run_id) == []


def wait_for(what: str, check: Callable[[], bool], seconds: float) -> float:
    """Poll ``check`` every 0.1 s; the time it took, or fail after ``seconds``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, f"{what}: not within {seconds} s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_wireguard_after_a_nat_remap_needs_the_new_mapping_told_to_a_natted_peer(
    lab: Lab,
) -> None:
    """A member whose NAT changes its public port (a laptop on another network): a public
    peer finds it by itself (WireGuard roaming), a cone-NATed peer does not (its NAT drops
    packets from the new mapping, and the old mapping is gone) until it is told the new
    mapping a public member observes. That telling is the mesh's job (docs/nat.md)."""
    nat = lab.add_nat("laptop", kind="cone")
    a = lab.add_host(behind=nat).name
    b = lab.add_host(behind=lab.add_nat("home", kind="cone")).name
    interfaces = {
        host: wg_up(lab, host, overlay)
        for host, overlay in (("h1", "10.99.0.1"), (a, "10.99.0.2"), (b, "10.99.0.3"))
    }
    overlay = {"h1": "10.99.0.1", a: "10.99.0.2", b: "10.99.0.3"}
    endpoint = {"h1": f"{lab.address_of('h1')}:{WG_PORT}", a: public(lab, a), b: public(lab, b)}
    for host, peers in (("h1", [a]), (a, ["h1", b]), (b, [a])):
        ifname = interfaces[host][0]
        for peer in peers:
            lab.exec(host, ["wg", "set", ifname, "peer", interfaces[peer][1],
                            "endpoint", endpoint[peer], "persistent-keepalive", "1",
                            "allowed-ips", f"{overlay[peer]}/32"])  # fmt: skip
        lab.exec(host, ["ip", "link", "set", ifname, "up"])

    def pings(src: str, dst: str) -> bool:
        done = lab.exec(src, ["ping", "-n", "-q", "-c1", "-W1", overlay[dst]], check=False)
        return done.returncode == 0

    def seen_by(host: str, peer: str) -> str:
        out = lab.exec(host, ["wg", "show", interfaces[host][0], "endpoints"]).stdout
        table = dict(line.split("\t") for line in out.splitlines())
        return table[interfaces[peer][1]]

    wait_for("a <-> h1", lambda: pings(a, "h1"), 15)
    wait_for("a <-> b", lambda: pings(a, b), 15)
    assert seen_by("h1", a) == public(lab, a)

    low, high = lab.remap_nat(nat)
    # The public member finds the laptop at its new mapping by itself.
    moved = wait_for("h1 sees a's new mapping", lambda: seen_by("h1", a) != public(lab, a), 10)
    address, port = seen_by("h1", a).rsplit(":", 1)
    assert address == str(nat.wan4.ip)
    assert low <= int(port) <= high
    assert pings(a, "h1")
    # The NATed peer does not: a's packets come from a mapping b's NAT never opened.
    assert not any(pings(a, b) for _ in range(3))
    assert seen_by(b, a) == public(lab, a)
    # Told what h1 observes, b reaches a again (and b's NAT now lets a's packets in).
    lab.exec(b, ["wg", "set", interfaces[b][0], "peer", interfaces[a][1],
                 "endpoint", seen_by("h1", a)])  # fmt: skip
    back = wait_for("a <-> b after telling b", lambda: pings(b, a) and pings(a, b), 15)
    print(f"public peer followed the remap in {moved:.2f} s; NATed peer back {back:.2f} s after")
