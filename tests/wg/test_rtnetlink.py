"""meshd's own rtnetlink messages (meshd.wg.rtnetlink) and socket (meshd.wg.rtnl_socket, netlink).

The decoder of the kernel's replies raises only DecodeError, whatever the bytes; what it
decodes encodes back to the same message; requests say what the kernel is to match (a
removal of meshd's WireGuard routes names their protocol and priority). The socket reads
this machine's real links and addresses (dumps need no privilege).
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.errors import DecodeError
from meshd.wg import rtnetlink as rt
from meshd.wg.netlink import Netlink, _ours
from meshd.wg.rtnetlink import Ack, Address, Done, Link, Route, decode_messages_untrusted
from meshd.wg.rtnl_socket import RTPROT_MESHD, RtnlSocket, route_priority

u8 = st.integers(0, 255)
u32 = st.integers(0, 2**32 - 1)
v4 = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
v6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))


def ips(family: int) -> st.SearchStrategy[rt.IPAddress]:
    return v4 if family == rt.AF_INET else v6


@st.composite
def addresses(draw: st.DrawFn) -> Address:
    family = draw(st.sampled_from([rt.AF_INET, rt.AF_INET6]))
    ip = ips(family)
    return Address(
        family,
        draw(st.integers(0, 32 if family == rt.AF_INET else 128)),
        draw(u32),
        draw(st.none() | ip),
        draw(st.none() | ip),
        draw(u32),
        draw(u8),
        draw(u32),
    )


@st.composite
def routes(draw: st.DrawFn) -> Route:
    family = draw(st.sampled_from([rt.AF_INET, rt.AF_INET6]))
    ip = ips(family)
    bits = 32 if family == rt.AF_INET else 128
    return Route(
        family,
        draw(st.integers(0, bits)),
        draw(st.integers(0, bits)),
        draw(st.none() | ip),
        draw(st.none() | ip),
        draw(st.none() | u32),
        draw(st.none() | ip),
        draw(st.none() | ips(rt.AF_INET) | ips(rt.AF_INET6)),
        draw(st.none() | u32),
        draw(u32),
        draw(u8),
        draw(u8),
        draw(u8),
        draw(u32),
    )


names = st.text(st.characters(min_codepoint=1, max_codepoint=0xD7FF))
links = st.builds(
    Link,
    index=st.integers(-(2**31), 2**31 - 1),
    name=st.none() | names.filter(lambda name: len(name) <= 15),
    flags=u32,
    change=u32,
    seq=u32,
    mtu=st.none() | u32,
)
messages = (
    links
    | addresses()
    | routes()
    | st.builds(Ack, st.integers(0, 2**31), u32)
    | st.builds(Done, st.integers(0, 2**31), u32)
)


@settings(max_examples=100, deadline=None)
@given(st.lists(messages, max_size=5))
def test_what_is_encoded_decodes_to_the_same_messages(found: list[rt.Message]) -> None:
    data = b"".join(rt.encode_message(m) for m in found)
    assert decode_messages_untrusted(data) == found


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        decoded = decode_messages_untrusted(data)
    except DecodeError:
        return
    assert all(m.seq >= 0 for m in decoded)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), u8)
def test_any_bytes_tell_of_lost_routes_or_raise_decode_error(data: bytes, protocol: int) -> None:
    try:
        lost = rt.routes_lost_untrusted(data, protocol)
    except DecodeError:
        return
    assert lost in (True, False)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(messages, st.booleans()), max_size=5), u8)
def test_routes_are_lost_with_a_deletion_of_their_protocol_or_a_link_change(
    found: list[tuple[rt.Message, bool]], protocol: int
) -> None:
    """A datagram of notifications: routes of ``protocol`` may be lost when one of its
    routes was deleted or a link changed; not for added routes, other protocols' deletions,
    addresses or acknowledgements. Whatever decodes whole is read by the scanner too."""
    data = b"".join(
        rt.encode_message(m, type=rt.RTM_DELROUTE if deleted and isinstance(m, Route) else None)
        for m, deleted in found
    )
    expected = any(
        isinstance(m, Link) or (isinstance(m, Route) and deleted and m.protocol == protocol)
        for m, deleted in found
    )
    assert rt.routes_lost_untrusted(data, protocol) == expected


@given(st.binary(max_size=300))
def test_any_bytes_tell_of_a_default_route_or_raise_decode_error(data: bytes) -> None:
    try:
        changed = rt.default_routes_changed_untrusted(data)
    except DecodeError:
        return
    assert changed in (True, False)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(messages, st.booleans()), max_size=5))
def test_a_default_route_added_or_deleted_is_told_and_nothing_else(
    found: list[tuple[rt.Message, bool]],
) -> None:
    """A datagram of notifications tells of a default route changing when a route of prefix
    length 0 was added or deleted (in any table); not for other routes, links, addresses or
    acknowledgements."""
    data = b"".join(
        rt.encode_message(m, type=rt.RTM_DELROUTE if deleted and isinstance(m, Route) else None)
        for m, deleted in found
    )
    expected = any(isinstance(m, Route) and m.dst_len == 0 for m, _ in found)
    assert rt.default_routes_changed_untrusted(data) == expected


def test_default_routes_told_by_their_prefix_length() -> None:
    default = Route(rt.AF_INET, 0, gateway=IPv4Address("192.0.2.1"), oif=2)
    other = Route(rt.AF_INET6, 64, dst=IPv6Address("2001:db8::"), oif=2)
    told = rt.default_routes_changed_untrusted
    assert told(rt.encode_message(default))
    assert told(rt.encode_message(other) + rt.encode_message(default, type=rt.RTM_DELROUTE))
    assert not told(rt.encode_message(other) + rt.encode_message(Link(2, "eth0")))
    assert not told(b"")
    short = (20).to_bytes(4, "little") + rt.encode_message(default)[4:20]
    with pytest.raises(DecodeError):
        told(short)


def test_a_deleted_route_too_short_for_its_header_is_refused() -> None:
    data = rt.encode_message(Route(rt.AF_INET6, protocol=42), type=rt.RTM_DELROUTE)
    short = (20).to_bytes(4, "little") + data[4:20]
    with pytest.raises(DecodeError):
        rt.routes_lost_untrusted(short, 42)


@settings(max_examples=100, deadline=None)
@given(st.lists(messages, min_size=1, max_size=3), st.data())
def test_damaged_messages_decode_or_raise_decode_error(
    found: list[rt.Message], data: st.DataObject
) -> None:
    raw = bytearray(b"".join(rt.encode_message(m) for m in found))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(u8)
    cut = data.draw(st.integers(0, len(raw)))
    with contextlib.suppress(DecodeError):
        decode_messages_untrusted(bytes(raw[:cut]))


@pytest.mark.parametrize(
    "data",
    [
        bytes(15),  # shorter than a header
        rt.encode_message(Link(1, "wg0"))[:-1],  # length past the end
        b"\x0f" + bytes(15),  # a length below the header's
        rt.encode_message(Ack(0))[:17],  # an error message without its errno
        rt.encode_message(Route(rt.AF_INET, 33)),  # a prefix longer than IPv4's
    ],
)
def test_malformed_replies_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_messages_untrusted(data)


def test_an_address_of_the_wrong_size_is_a_decode_error() -> None:
    # An IPv6 route whose RTA_DST holds 4 bytes.
    wrong = rt.encode_message(Route(rt.AF_INET, 32, dst=IPv4Address("10.0.0.1")))
    wrong = wrong[:16] + bytes([rt.AF_INET6]) + wrong[17:]
    with pytest.raises(DecodeError, match="RTA_DST"):
        decode_messages_untrusted(wrong)


def test_other_families_and_types_are_ignored() -> None:
    multicast = rt.encode_message(Route(128, 0))  # RTNL_FAMILY_IPMR: not asked for
    neighbour = rt.encode_message(Done(0, 7), type=28)  # RTM_NEWNEIGH
    assert decode_messages_untrusted(multicast + neighbour) == [
        rt.Ignored(rt.RTM_NEWROUTE, 0),
        rt.Ignored(28, 7),
    ]


@pytest.mark.parametrize("prefix", [IPv6Network("fd5a:1::/48"), IPv4Network("10.9.0.0/24")])
def test_meshds_routes_name_their_protocol_and_priority(prefix: IPv6Network) -> None:
    route = _ours(prefix, 7)
    (decoded,) = decode_messages_untrusted(rt.encode_message(route, type=rt.RTM_DELROUTE))
    assert isinstance(decoded, Route)
    assert decoded.protocol == RTPROT_MESHD
    assert decoded.priority == route_priority(prefix) == (1024 if prefix.version == 6 else 0)
    assert decoded.oif == 7
    assert (decoded.dst, decoded.dst_len) == (prefix.network_address, prefix.prefixlen)


def test_the_socket_reads_this_machines_links_and_addresses() -> None:
    with RtnlSocket() as rtnl:
        index = rtnl.link_index("lo")
        assert index is not None
        assert rtnl.link_index("no-such-link0") is None
        assert rtnl.names()[index] == "lo"
        lo = rtnl.link("lo")
        assert lo is not None
        assert lo.index == index
        assert lo.mtu == int(Path("/sys/class/net/lo/mtu").read_text())
        assert rtnl.link_at(index) == dataclasses.replace(lo, seq=lo.seq + 1)
        assert rtnl.link_at(2**31 - 1) is None
        assert rtnl.addresses(scopes=(rt.RT_SCOPE_HOST,))  # lo's 127.0.0.1 (and ::1)
    found = trio.run(Netlink().addresses)
    assert any(name == "lo" for name, _ in found)
    # lo's addresses are the host's own (scope host): not among those of global scope.
    reachable = trio.run(Netlink().addresses, (rt.RT_SCOPE_UNIVERSE, rt.RT_SCOPE_SITE))
    assert not any(name == "lo" for name, _ in reachable)


def _address_dump(*found: Address, seq: int = 3) -> bytes:
    multi = rt.NLM_F_MULTI
    return b"".join(rt.encode_message(m, flags=multi) for m in found) + rt.encode_message(
        Done(0, seq), flags=multi
    )


def test_the_address_scanner_decodes_only_the_scopes_asked_for() -> None:
    """A dump's addresses of the scopes asked for, in order, and its end; other dumps'
    messages passed over; with no scopes, every address of the dump."""
    link_local = Address(rt.AF_INET6, 64, 5, IPv6Address("fe80::1"), None, 0, rt.RT_SCOPE_LINK, 3)
    public = Address(rt.AF_INET, 24, 2, IPv4Address("192.0.2.7"), IPv4Address("192.0.2.7"),
                     0, rt.RT_SCOPE_UNIVERSE, 3)  # fmt: skip
    own = Address(rt.AF_INET, 8, 1, IPv4Address("127.0.0.1"), None, 0, rt.RT_SCOPE_HOST, 3)
    elsewhere = Address(rt.AF_INET, 24, 2, IPv4Address("198.51.100.1"), None, 0, 0, 9)
    data = _address_dump(link_local, public, elsewhere, own)
    found, ended = rt.addresses_untrusted(data, 3, scopes=(rt.RT_SCOPE_UNIVERSE, rt.RT_SCOPE_SITE))
    assert found == [public]
    assert ended == Done(0, 3)
    every, _ = rt.addresses_untrusted(data, 3)
    assert every == [link_local, public, own]
    # One link's: its index read from the header, the others' not decoded.
    assert rt.addresses_untrusted(data, 3, index=2)[0] == [public]
    assert rt.addresses_untrusted(data, 3, scopes=(rt.RT_SCOPE_LINK,), index=5)[0] == [link_local]
    assert rt.addresses_untrusted(data, 3, scopes=(rt.RT_SCOPE_LINK,), index=2)[0] == []
    assert rt.addresses_untrusted(data[: -len(rt.encode_message(Done(0, 3)))], 3)[1] is None


def test_an_address_asked_for_must_decode_one_passed_over_is_not_decoded() -> None:
    """An address of a scope not asked for is passed over on its header alone (its broken
    prefix length is never looked at); asked for, it is a DecodeError. A header too short
    to hold its scope is refused either way."""
    broken = bytearray(rt.encode_message(
        Address(rt.AF_INET6, 64, 5, IPv6Address("fe80::1"), None, 0, rt.RT_SCOPE_LINK, 3)
    ))  # fmt: skip
    broken[16 + 1] = 200  # ifa_prefixlen: over IPv6's 128
    data = bytes(broken) + rt.encode_message(Done(0, 3))
    assert rt.addresses_untrusted(data, 3, scopes=(rt.RT_SCOPE_UNIVERSE,)) == ([], Done(0, 3))
    with pytest.raises(DecodeError, match="prefix length"):
        rt.addresses_untrusted(data, 3)
    short = struct.pack("=IHHII", 16 + 2, rt.RTM_NEWADDR, 0, 3, 0) + b"\n\x40\0\0"
    with pytest.raises(DecodeError, match="truncated"):
        rt.addresses_untrusted(short, 3, scopes=(rt.RT_SCOPE_UNIVERSE,))


@given(st.binary(max_size=256), st.sampled_from([None, (0,), (0, 200), (253,)]))
def test_any_bytes_scan_for_addresses_or_raise_decode_error(
    data: bytes, scopes: tuple[int, ...] | None
) -> None:
    with contextlib.suppress(DecodeError):
        rt.addresses_untrusted(data, 3, scopes=scopes)
