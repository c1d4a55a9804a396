"""The lab's NAT address plan, names and nftables rules (pure; no root needed)."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from meshd.lab import naming, nat
from meshd.lab.commands import LabError


def test_nat_names_fit_ifnamsiz_and_belong_to_the_run() -> None:
    for index in (1, 99, nat.MAX_NATS):
        names = [
            naming.nat_wan_ifname("abcdef", index),
            naming.nat_upstream_ifname("abcdef", index),
            naming.nat_lan_ifname("abcdef", index),
        ]
        assert all(len(n) <= naming.IFNAME_MAX for n in names)
        assert all(naming.owns_ifname("abcdef", n) for n in names)
        assert not any(naming.owns_ifname("abcde0", n) for n in names)
    assert naming.run_id_of_netns(naming.nat_netns("abcdef", 7)) == "abcdef"


def test_address_plan() -> None:
    assert nat.wan_subnet(3) == (
        ipaddress.IPv4Network("10.78.3.0/24"),
        ipaddress.IPv6Network("fd6c:6178:0:3::/64"),
    )
    assert nat.lan_address(3, 2) == (
        ipaddress.IPv4Interface("192.168.3.2/24"),
        ipaddress.IPv6Interface("fd6c:6192:0:3::2/64"),
    )
    with pytest.raises(LabError):
        nat.lan_address(3, nat.MAX_LAN_DEVICES + 2)
    with pytest.raises(LabError):
        nat.wan_subnet(nat.MAX_NATS + 1)


def make(kind: nat.NatKind) -> nat.Nat:
    wan4, wan6 = nat.wan_subnet(1)
    lan4, lan6 = nat.lan_address(1, 1)
    return nat.Nat(
        name="n1", index=1, kind=kind, netns="meshdlab-abcdef-n1", wan_ifname="mlabcdefw1",
        upstream_ifname="mlabcdefu1", upstream_netns="meshdlab-abcdef-r",
        lan_ifname="mlabcdefb1", wan4=ipaddress.IPv4Interface(f"{wan4[2]}/24"),
        wan6=ipaddress.IPv6Interface(f"{wan6[2]}/64"), gateway4=wan4[1], gateway6=wan6[1],
        lan4=lan4, lan6=lan6,
    )  # fmt: skip


def test_rules_per_kind() -> None:
    assert nat.masquerade_rules(make("cone"), None) == ['oifname "mlabcdefw1" masquerade']
    assert nat.masquerade_rules(make("symmetric"), None) == [
        'oifname "mlabcdefw1" masquerade random'
    ]
    assert nat.masquerade_rules(make("cone"), (21000, 21999))[0] == (
        'oifname "mlabcdefw1" meta l4proto { tcp, udp } masquerade to :21000-21999'
    )
    with pytest.raises(ValueError, match="port range"):
        nat.masquerade_rules(make("cone"), (2, 1))
    table = nat.ruleset(make("cone"))
    # Unasked packets on the WAN are dropped before conntrack confirms them (see nat.py).
    assert 'iifname "mlabcdefw1" meta l4proto { tcp, udp } drop' in table
    assert "ct state established,related accept" in table


def test_remap_ranges_stay_below_wireguards_port() -> None:
    ranges = [nat.next_ports(n) for n in range(1, 200)]
    assert ranges[0] == (21000, 21999)
    assert all(low < high < 51820 for low, high in ranges)
    assert all(a != b for a, b in itertools.pairwise(ranges))


def test_names_and_kinds_are_checked() -> None:
    assert nat.check_kind("cone") == "cone"
    for bad in ("Cone", "full-cone", ""):
        with pytest.raises(ValueError, match="a NAT is one of"):
            nat.check_kind(bad)
    assert nat.check_name("home-1") == "home-1"
    for bad in ("", "1home", "Home", "a" * 17, "a b", "h\u00e9"):
        with pytest.raises(ValueError, match="a NAT name"):
            nat.check_name(bad)
