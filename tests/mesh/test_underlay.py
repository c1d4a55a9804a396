"""Announced endpoints and concrete listen addresses from the interface addresses."""

from __future__ import annotations

import ipaddress

from meshd.mesh.underlay import (
    LocalAddress,
    default_endpoints,
    endpoint_hosts,
    expand_listen_addrs,
    underlay_of,
)

ADDRS = [
    LocalAddress("lo", ipaddress.ip_interface("127.0.0.1/8")),
    LocalAddress("lo", ipaddress.ip_interface("::1/128")),
    LocalAddress("eth0", ipaddress.ip_interface("192.0.2.10/24")),
    LocalAddress("eth0", ipaddress.ip_interface("fe80::1/64")),
    LocalAddress("eth0", ipaddress.ip_interface("2001:db8::10/64")),
    LocalAddress("eth1", ipaddress.ip_interface("10.0.0.2/8")),
    LocalAddress("meshd0", ipaddress.ip_interface("fd00:1:2::5/128")),
    LocalAddress("meshd0", ipaddress.ip_interface("fe80::99/64")),
]


def test_default_endpoints_skip_loopback_link_local_and_the_mesh_interface() -> None:
    assert default_endpoints(ADDRS, 51820, exclude=["meshd0"]) == (
        "10.0.0.2:51820",
        "192.0.2.10:51820",
        "[2001:db8::10]:51820",
    )


def test_underlay_families_and_networks() -> None:
    underlay = underlay_of(ADDRS, exclude=["meshd0"])
    assert underlay.families == frozenset({4, 6})
    assert underlay.networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("2001:db8::/64"),
    )
    only_v4 = underlay_of([a for a in ADDRS if a.address.version == 4], exclude=["meshd0"])
    assert only_v4.families == frozenset({4})


def test_wildcard_listen_addresses_become_concrete() -> None:
    hosts = endpoint_hosts(["192.0.2.10:51820", "[2001:db8::10]:51820", "junk", "192.0.2.10:1"])
    assert hosts == [ipaddress.ip_address("192.0.2.10"), ipaddress.ip_address("2001:db8::10")]
    listen = ["/ip4/0.0.0.0/tcp/7100/p2p/QmX", "/ip6/::/tcp/7100/p2p/QmX", "/ip4/10.0.0.2/tcp/1"]
    assert expand_listen_addrs(listen, hosts) == [
        "/ip4/192.0.2.10/tcp/7100/p2p/QmX",
        "/ip6/2001:db8::10/tcp/7100/p2p/QmX",
        "/ip4/10.0.0.2/tcp/1",
    ]
    # No host of the family: the wildcard is dropped rather than announced.
    assert expand_listen_addrs(["/ip4/0.0.0.0/tcp/7100"], []) == []
