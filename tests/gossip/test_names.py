"""Host names in the addresses a node dials to find its network (meshd.gossip.names, pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.gossip.names import (
    MAX_RESOLVED,
    NamedAddr,
    check_host_name,
    is_named,
    named_addr,
    resolved_multiaddrs,
)

PEER = "/p2p/12D3KooWLRPJAA5o6Z6yajEjX4WR8fcaHd4tTfTDKBMR8vXHJnDg"


@pytest.mark.parametrize(
    "name",
    ["localhost", "mesh.example.org", "mesh.example.org.", "a-b.c0", "x" * 63 + ".io", "h1.2a"],
)
def test_host_names_are_taken(name: str) -> None:
    assert check_host_name(name) == name.rstrip(".")


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "empty"),
        (".", "empty"),
        ("a..b", "1-63"),
        ("x" * 64 + ".io", "1-63"),
        (".".join(["abcdefgh"] * 29) + ".com", "at most 253"),
        ("-a.org", "not a host name"),
        ("a-.org", "not a host name"),
        ("exa_mple.org", "not a host name"),
        ("exämple.org", "ASCII form"),
        ("例え.jp", "xn--"),
        ("1.2.3.4", "neither an IP address"),
        ("10.0.0", "neither an IP address"),
        ("a b", "not a host name"),
    ],
)
def test_what_is_not_a_host_name_is_refused_saying_why(name: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        check_host_name(name)


def test_named_multiaddrs_are_read_and_others_are_not_theirs() -> None:
    assert named_addr(f"/dns4/mesh.example.org/tcp/7100{PEER}") == NamedAddr(
        "dns4", "mesh.example.org", 7100, PEER
    )
    assert named_addr("/dns/h.example/tcp/1") == NamedAddr("dns", "h.example", 1, "")
    assert str(named_addr(f"/dns6/h.example/tcp/65535{PEER}")) == f"/dns6/h.example/tcp/65535{PEER}"
    assert named_addr(f"/ip4/192.0.2.1/tcp/7100{PEER}") is None
    assert named_addr("/dnsaddr/h.example") is None  # another protocol, not ours to read
    assert not is_named("dns4/h.example/tcp/1")
    for bad, says in [
        ("/dns4/h.example/udp/1", "/tcp/"),
        ("/dns4/h.example", "/tcp/"),
        ("/dns/h.example/tcp/0", "1-65535"),
        ("/dns/h.example/tcp/65536", "1-65535"),
        ("/dns/h.example/tcp/٣", "1-65535"),  # a digit to str.isdigit, not to a port
        ("/dns/h_x/tcp/1", "host name"),
    ]:
        with pytest.raises(ValueError, match=says):
            named_addr(bad)


@given(st.text(max_size=300))
def test_reading_any_text_raises_only_a_value_error(text: str) -> None:
    for addr in (text, "/dns/" + text, "/dns4/h.example/tcp/" + text):
        try:
            named = named_addr(addr)
        except ValueError:
            continue
        if named is not None:  # what it read is what it writes back, read again
            assert named_addr(str(named)) == named


def test_what_a_name_resolved_to_is_dialled_once_each_of_its_versions_at_most_eight() -> None:
    named = NamedAddr("dns", "h.example", 7100, PEER)
    found = [
        (4, "192.0.2.1"),
        (6, "2001:db8::1"),
        (4, "192.0.2.1"),  # the resolver's one line for each socket type: once
        (4, "0.0.0.0"),  # names no host
        (6, "ff02::1"),  # multicast
        (6, "fe80::1%eth0"),  # link-local with its zone: no way to dial it from here
        (4, "not an address"),
        (6, "192.0.2.9"),  # told as the other version
    ]
    assert resolved_multiaddrs(named, found) == [
        f"/ip4/192.0.2.1/tcp/7100{PEER}",
        f"/ip6/2001:db8::1/tcp/7100{PEER}",
    ]
    only4 = NamedAddr("dns4", "h.example", 1, "")
    assert resolved_multiaddrs(only4, found) == ["/ip4/192.0.2.1/tcp/1"]
    many = [(4, f"192.0.2.{i}") for i in range(1, 50)]
    assert len(resolved_multiaddrs(only4, many)) == MAX_RESOLVED
