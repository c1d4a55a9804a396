"""The lab's naming rule and address plan (pure; no root needed)."""

from __future__ import annotations

import ipaddress

import pytest

from meshd.lab import naming


def test_run_ids_are_six_hex_digits() -> None:
    ids = {naming.new_run_id() for _ in range(50)}
    assert all(naming.RUN_ID_PATTERN.fullmatch(i) for i in ids)
    assert len(ids) > 1
    assert naming.check_run_id("0a1b2c") == "0a1b2c"
    for bad in ("", "0A1B2C", "0a1b2", "0a1b2c3", "../etc"):
        with pytest.raises(ValueError, match="six lowercase hex digits"):
            naming.check_run_id(bad)


def test_interface_names_fit_ifnamsiz_up_to_the_last_host() -> None:
    run_id = "abcdef"
    for index in (1, 9, 10, 99, 100, naming.MAX_HOSTS):
        names = [
            naming.host_ifname(run_id, index),
            naming.router_ifname(run_id, index),
            naming.wg_ifname(run_id, index),
        ]
        assert all(len(name) <= naming.IFNAME_MAX for name in names)
        assert all(run_id in name for name in names)
        assert len(set(names)) == 3
    assert naming.host_ifname(run_id, 7) == "mlabcdefh7"
    assert naming.router_ifname(run_id, 7) == "mlabcdefr7"
    assert naming.wg_ifname(run_id, 7) == "mwabcdefh7"


def test_host_numbers_are_checked() -> None:
    for bad in (0, -1, naming.MAX_HOSTS + 1):
        with pytest.raises(ValueError, match="host numbers"):
            naming.host_name(bad)


def test_namespace_names_carry_the_run_id() -> None:
    assert naming.router_netns("abcdef") == "meshdlab-abcdef-r"
    assert naming.host_netns("abcdef", 12) == "meshdlab-abcdef-h12"
    assert naming.run_id_of_netns("meshdlab-abcdef-r") == "abcdef"
    assert naming.run_id_of_netns("meshdlab-abcdef-h12") == "abcdef"
    for other in ("meshd-wg-abcd-a", "meshdlab-abcdef-x", "meshdlab-abcdef-h", "meshdlab-ABCDEF-r"):
        assert naming.run_id_of_netns(other) is None


def test_ownership_of_interface_names_is_by_run_id() -> None:
    assert naming.owns_ifname("abcdef", "mlabcdefh1")
    assert naming.owns_ifname("abcdef", "mwabcdefh1.sock")
    assert not naming.owns_ifname("abcdef", "mlabcdeeh1")
    assert not naming.owns_ifname("abcdef", "eth0")


def test_address_plan() -> None:
    first, last = naming.subnet(1), naming.subnet(naming.MAX_HOSTS)
    assert first.ipv4 == ipaddress.IPv4Network("10.77.1.0/24")
    assert first.ipv6 == ipaddress.IPv6Network("fd6c:6162:0:1::/64")
    assert str(first.router4) == "10.77.1.1/24"
    assert str(first.host4) == "10.77.1.2/24"
    assert str(first.router6) == "fd6c:6162:0:1::1/64"
    assert str(first.host6) == "fd6c:6162:0:1::2/64"
    assert last.ipv4 == ipaddress.IPv4Network("10.77.250.0/24")
    assert last.ipv6 == ipaddress.IPv6Network("fd6c:6162:0:fa::/64")
    subnets = [naming.subnet(i) for i in range(1, naming.MAX_HOSTS + 1)]
    assert len({s.ipv4 for s in subnets}) == len({s.ipv6 for s in subnets}) == naming.MAX_HOSTS
    assert all(s.ipv4.subnet_of(naming.IPV4_BASE) for s in subnets)
    assert all(s.ipv6.subnet_of(naming.IPV6_BASE) for s in subnets)


def test_public_subnets_are_in_documentation_ranges_and_count_as_public() -> None:
    from meshd.lab import nat
    from meshd.mesh.candidates import is_public

    first, last = naming.subnet(1, public=True), naming.subnet(naming.MAX_PUBLIC_HOSTS, True)
    assert str(first.router4) == "203.0.113.5/30"
    assert str(first.host4) == "203.0.113.6/30"
    assert str(first.host6) == "2001:db8:77:1::2/64"
    assert str(last.host4) == "203.0.113.254/30"
    subnets = [naming.subnet(i, True) for i in range(1, naming.MAX_PUBLIC_HOSTS + 1)]
    assert len({s.ipv4 for s in subnets}) == naming.MAX_PUBLIC_HOSTS  # no overlap
    assert all(is_public(s.host4.ip) and is_public(s.host6.ip) for s in subnets)
    with pytest.raises(ValueError, match="at most"):
        naming.subnet(naming.MAX_PUBLIC_HOSTS + 1, public=True)
    wan4, wan6 = nat.wan_subnet(2, public=True)
    assert (str(wan4), str(wan6)) == ("198.51.100.8/30", "2001:db8:78:2::/64")
    assert is_public(wan4[2])
    assert is_public(wan6[2])
    assert not is_public(naming.subnet(1).host4.ip)  # the default plan stays private
