"""Martian prefixes in Babel Updates (multicast, loopback, link-local, unspecified,
IPv4-mapped, broadcast, "this network": babeld's list): refused on receipt, counted, never
installed, never announced again; and never originated."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network, ip_network

import pytest

from meshd.babel.codec import decode_packet_untrusted
from meshd.babel.core import BabelCore
from meshd.babel.expand import Route, build_updates, expand_routes, ihu
from meshd.babel.options import babel_config
from meshd.babel.packet import Packet
from meshd.babel.sources import IPNetwork
from meshd.babel.tlv import Hello
from meshd.errors import UsageError

ME = IPv6Address("fe80::1")
PEER = IPv6Address("fe80::2")
DOWNSTREAM = IPv6Address("fe80::3")
PEER_ID = bytes.fromhex("00000000000000aa")

MARTIANS = [
    "ff00::/8",
    "ff02::/16",
    "ff05::1:3/128",
    "fe80::/10",
    "fe80::/64",
    "fe80::1/128",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "::ffff:10.0.0.0/104",
    "224.0.0.0/4",
    "239.1.2.0/24",
    "224.0.0.251/32",
    "127.0.0.0/8",
    "127.0.0.1/32",
    "0.0.0.0/8",
    "0.0.0.0/32",
    "255.255.255.255/32",
]
ORDINARY = [
    "2001:db8:aa::/48",
    "::/0",  # covers martian ranges, claims none of them
    "fc00::/7",
    "fe00::/9",  # beside link-local
    "::2/128",
    "10.1.0.0/16",
    "0.0.0.0/0",
    "128.0.0.0/1",
    "255.255.255.254/32",
    "223.255.255.0/24",
]


def announced(datagrams: list[tuple[str, object, bytes]], interface: str) -> set[IPNetwork]:
    found: set[IPNetwork] = set()
    for name, _, payload in datagrams:
        if name == interface:
            packet = decode_packet_untrusted(payload)
            found.update(r.prefix for r in expand_routes(packet, DOWNSTREAM) if not r.retraction)
    return found


def test_martian_updates_are_refused_counted_and_never_announced() -> None:
    core = BabelCore(bytes.fromhex("0000000000000001"))
    core.add_interface("eth0", kind="wired", hello_interval=1.0, link_local=ME)
    core.add_interface("eth1", kind="wired", hello_interval=1.0, link_local=DOWNSTREAM)
    martians = [ip_network(t) for t in MARTIANS]
    ordinary = [ip_network(t) for t in ORDINARY]
    source_martian = Route(
        ip_network("2001:db8:bb::/48"), 3, 0, 400, PEER_ID, None, IPv6Network("ff00::/8")
    )
    routes = [Route(p, 3, 0, 400, PEER_ID, None) for p in martians + ordinary]
    sent: list[tuple[str, object, bytes]] = []
    now = 0.0
    for seqno in range(1, 8):  # a neighbour with a two-way link, repeating its Updates
        now = float(seqno)
        body = (Hello(seqno, 100), ihu(96, 300, ME), *build_updates([*routes, source_martian]))
        core.receive("eth0", PEER, Packet(body), now)
        core.handle_timer(now)
        sent += core.datagrams_to_send(now)
        core.handle_timer(now + 0.5)
        sent += core.datagrams_to_send(now + 0.5)
    installed = {view.prefix for view in core.routes()}
    events = []
    while (event := core.next_event()) is not None:
        events.append(getattr(event, "prefix", None))
    for prefix in martians:
        assert prefix not in installed, f"martian {prefix} installed"
        assert prefix not in events
    assert source_martian.prefix not in installed  # a martian source prefix
    assert set(ordinary) <= installed  # the others are taken
    downstream = announced(sent, "eth1")
    assert set(ordinary) <= downstream
    assert not downstream & set(martians)
    assert core.counters()["martians"] == 7 * (len(martians) + 1)


@pytest.mark.parametrize("text", ["ff05::/16", "224.0.0.0/24", "::1/128", "fe80::/64"])
def test_martians_are_never_originated(text: str) -> None:
    core = BabelCore(bytes.fromhex("0000000000000001"))
    with pytest.raises(ValueError, match="martian"):
        core.originate(ip_network(text))
    with pytest.raises(UsageError, match="martian"):
        babel_config(originate=[text])
    with pytest.raises(UsageError, match="martian"):
        babel_config(originate=[f"2001:db8::/48 from {text}"] if ":" in text else [text])
