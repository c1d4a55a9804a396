"""One object per prefix: the /128s a member's addresses make are shared, not made per module.

An ``ipaddress`` /128 network costs about 540 bytes; each member's link-local and overlay
/128 used to be made afresh by the membership, every reconcile round, the device read back
and Babel. These tests hold the sharing to what it promises: equal prefixes are the same
object wherever they come from, and a prefix nobody holds leaves the table (a /128 at the
table's next sweep).
"""

from __future__ import annotations

import bisect
import copy
import gc
import ipaddress
import itertools
import pickle
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshd import addressing
from meshd.addressing import (
    _OTHERS,
    HostPrefix,
    held,
    host_int,
    host_prefix,
    host_prefix_of,
    interned,
    ipv6_text,
    sweep,
)
from meshd.babel.prefix import AE_IPV6, to_network
from meshd.mesh.desired import base_allowed_ips, desired_peers
from meshd.mesh.paths import with_paths
from meshd.records import Announcement, decode_untrusted
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.model import PeerConfig, UpdatePeer
from meshd.wg.uapi_reply import parse_get_reply_untrusted
from tests.mesh.support import key, member

ME = NodeKey(key("me"))


def in_table(value: int) -> bool:
    return held(value.to_bytes(16, "big"), 128) is not None


def table_size() -> int:
    return len(addressing._hosts) - addressing._hosts.count(None)


MY_WG = WgKey(key("me", "wg"))


def test_equal_prefixes_are_one_object_and_families_never_mix() -> None:
    address = ipaddress.IPv6Address("fd00:6d65:7368::1")
    first = host_prefix(address)
    assert first == ipaddress.IPv6Network("fd00:6d65:7368::1/128")
    assert host_prefix(ipaddress.IPv6Address("fd00:6d65:7368::1")) is first
    assert interned(ipaddress.IPv6Network("fd00:6d65:7368::1/128")) is first
    # Same leading bytes, other family or length: other objects, each equal to itself.
    v4 = interned(ipaddress.IPv4Network("253.0.109.101/32"))
    assert v4 == ipaddress.IPv4Network("253.0.109.101/32")
    assert v4 is not first
    wider = interned(ipaddress.IPv6Network("fd00:6d65:7368::/64"))
    assert wider.prefixlen == 64
    assert wider is not first


def test_a_prefix_nobody_holds_leaves_the_table() -> None:
    prefix = host_prefix(ipaddress.IPv6Address("fd00:6d65:7368::dead"))
    value = int(prefix.network_address)
    kept = host_prefix(ipaddress.IPv6Address("fd00:6d65:7368::beef"))
    assert in_table(value)
    wider = interned(ipaddress.IPv6Network("fd00:6d65:7368:dead::/64"))
    key = wider.network_address.packed + b"\x40"
    assert key in _OTHERS
    sweep()
    assert in_table(value)  # still held
    del prefix, wider
    gc.collect()
    assert key not in _OTHERS  # weak: at once
    assert in_table(value)  # a /128: at the next sweep
    assert sweep() >= 1
    assert not in_table(value)
    assert held(kept.network_address.packed, 128) is kept
    # What was let go is made again, equal, when asked for.
    again = host_prefix(ipaddress.IPv6Address("fd00:6d65:7368::dead"))
    assert again == ipaddress.IPv6Network("fd00:6d65:7368::dead/128")
    assert list(again.hosts()) == [again.network_address]


def test_the_table_of_host_prefixes_sweeps_itself_as_it_grows() -> None:
    base = int(ipaddress.IPv6Address("fd00:6d65:7368:5eed::"))
    sweep()
    before = table_size()
    kept = [host_prefix_of(base + i) for i in range(3000)]
    for rounds in range(10):  # members come and go: 10 x 3,000 made, none held
        for i in range(3000):
            host_prefix_of(base + 10_000 * (rounds + 1) + i)
    # Never more than twice what is held (and the first sweep's threshold) beside it.
    assert table_size() <= 2 * (before + len(kept)) + 1536
    # The held ones were never let go: asked for again, each is the same object.
    assert all(host_prefix_of(base + i) is p for i, p in enumerate(kept))


def test_desired_peers_share_the_prefixes_across_rounds_and_with_other_modules() -> None:
    members = [member(i) for i in range(5)]
    one = desired_peers(members, own_node_key=ME, own_wg_key=MY_WG)
    two = desired_peers(members, own_node_key=ME, own_wg_key=MY_WG)
    assert one.peers == two.peers
    for wg_key, config in one.peers.items():
        again = two.peers[wg_key].allowed_ips
        assert all(a is b for a, b in zip(config.allowed_ips, again, strict=True))
    m = members[0]
    link_local, overlay = base_allowed_ips(m)
    assert overlay is host_prefix(m.overlay)  # the membership's grants use host_prefix
    assert link_local in one.peers[m.wg_key].allowed_ips
    assert any(p is link_local for p in one.peers[m.wg_key].allowed_ips)


def test_the_device_read_back_and_babel_share_the_desired_prefixes() -> None:
    m = member(1)
    link_local, overlay = base_allowed_ips(m)
    reply = (
        f"public_key={m.wg_key.hex()}\nallowed_ip={overlay}\nallowed_ip={link_local}\nerrno=0\n\n"
    ).encode()
    state = parse_get_reply_untrusted(reply)
    read = state.peers[0].config.allowed_ips
    assert {id(p) for p in read} == {id(link_local), id(overlay)}
    assert to_network(AE_IPV6, 128, overlay.network_address.packed) is overlay
    planned = UpdatePeer(m.wg_key, allowed_ips=(overlay, link_local))
    assert all(p is q for p, q in zip(planned.allowed_ips, read, strict=True))
    assert PeerConfig(m.wg_key, allowed_ips=(overlay,)).allowed_ips[0] is overlay


def test_desired_peers_made_again_from_the_last_round_are_those_objects() -> None:
    """A round's peers are the last round's objects where nothing changed, and hold the last
    round's allowed-ips (the same networks) where only the endpoint did: not copies each round."""
    members = [member(i) for i in range(4)]
    one = desired_peers(members, own_node_key=ME, own_wg_key=MY_WG).peers
    moved = [member(0, endpoints=("198.51.100.7:4000",)), *members[1:]]
    two = desired_peers(moved, own_node_key=ME, own_wg_key=MY_WG, previous=one).peers
    assert two == desired_peers(moved, own_node_key=ME, own_wg_key=MY_WG).peers
    first = members[0].wg_key
    assert two[first].endpoint == "198.51.100.7:4000"
    assert two[first].same_nets(one[first])
    assert all(two[m.wg_key] is one[m.wg_key] for m in members[1:])


def test_a_peer_remade_from_another_shares_its_allowed_ips() -> None:
    """A path's endpoint laid over a desired peer remakes it (``with_paths``): the new peer
    holds the same allowed-ips, not copies; one given them in another order or as
    other (equal) objects holds them the canonical way."""
    m = member(1)
    desired = desired_peers([m], own_node_key=ME, own_wg_key=MY_WG)
    one = desired.peers[m.wg_key]
    path = with_paths(desired, {m.wg_key: ("203.0.113.9:4000", None, None)})
    assert path.peers[m.wg_key].endpoint == "203.0.113.9:4000"
    assert path.peers[m.wg_key].same_nets(one)
    swapped = PeerConfig(m.wg_key, None, one.allowed_ips[::-1])
    assert swapped.allowed_ips == one.allowed_ips
    assert all(a is b for a, b in zip(swapped.allowed_ips, one.allowed_ips, strict=True))
    copies = tuple(ipaddress.IPv6Network(str(n)) for n in one.allowed_ips)
    made = UpdatePeer(m.wg_key, allowed_ips=copies).allowed_ips
    assert made == one.allowed_ips
    assert made is not copies
    assert all(a is b for a, b in zip(made, one.allowed_ips, strict=True))


def test_decoded_records_share_prefixes_and_the_network_id() -> None:
    from meshd.records import make_announcement
    from meshd.trust.keys import SigningKey

    network_id = bytes(range(16))
    prefix = interned(ipaddress.IPv6Network("fd00:6d65:7368:1::/64"))
    raws = [
        make_announcement(
            SigningKey(bytes([i]) * 32),
            network_id=network_id,
            seq=1,
            issued_at=1000,
            endpoints=("192.0.2.1:51820",),
            addrs=(),
            prefixes=(ipaddress.IPv6Network("fd00:6d65:7368:1::/64"),),
        ).raw
        for i in (1, 2)
    ]
    one, two = (decode_untrusted(raw, Announcement) for raw in raws)
    assert one.network_id == network_id
    assert one.network_id is two.network_id
    assert one.prefixes[0] is prefix
    assert two.prefixes[0] is prefix


def test_a_peers_endpoint_is_the_string_its_member_announced() -> None:
    m = member(1, endpoints=("192.0.2.1:51820",))
    assert m.announcement is not None
    announced = m.announcement.endpoints[0]
    config = desired_peers([m], own_node_key=ME, own_wg_key=MY_WG).peers[m.wg_key]
    assert config.endpoint is announced
    # Not canonical: written the canonical way, as before.
    odd = member(2, endpoints=("[2001:DB8::1]:51820",))
    config = desired_peers([odd], own_node_key=ME, own_wg_key=MY_WG).peers[odd.wg_key]
    assert config.endpoint == "[2001:db8::1]:51820"
    assert PeerConfig(m.wg_key, endpoint="[2001:DB8:0::1]:7").endpoint == "[2001:db8::1]:7"


def test_an_interned_host_prefix_is_a_plain_network_with_its_one_host() -> None:
    prefix = host_prefix(ipaddress.IPv6Address("fd00:6d65:7368::beef"))
    plain = ipaddress.IPv6Network("fd00:6d65:7368::beef/128")
    # An IPv6Network (HostPrefix: without a ``hosts`` closure of its own), equal, hashed and
    # shown as the standard one.
    assert isinstance(prefix, ipaddress.IPv6Network)
    assert (prefix, hash(prefix), repr(prefix)) == (plain, hash(plain), repr(plain))
    assert list(prefix.hosts()) == list(plain.hosts()) == [plain.network_address]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1), st.integers(0, 128))
def test_an_interned_host_prefix_is_a_standard_ipv6_network_in_all_it_does(
    value: int, other: int, length: int
) -> None:
    found = host_prefix_of(value)
    standard = ipaddress.IPv6Network((value, 128))
    wider = ipaddress.IPv6Network((other, length), strict=False)
    assert isinstance(found, ipaddress.IPv6Network)
    assert found == standard
    assert standard == found
    assert hash(found) == hash(standard)
    assert repr(found) == repr(standard)
    assert str(found) == str(standard)
    assert list(found.hosts()) == list(standard.hosts()) == [standard.network_address]
    assert list(found) == list(standard)
    for name in (
        "broadcast_address",
        "hostmask",
        "netmask",
        "num_addresses",
        "prefixlen",
        "with_netmask",
        "exploded",
        "compressed",
        "is_private",
        "is_global",
        "is_link_local",
        "is_multicast",
        "is_loopback",
        "is_reserved",
        "is_site_local",
        "is_unspecified",
        "max_prefixlen",
        "version",
        "with_prefixlen",
        "with_hostmask",
    ):
        assert getattr(found, name) == getattr(standard, name), name
    assert found.compare_networks(standard) == 0
    assert (found < standard, found > standard, found <= standard) == (False, False, True)
    assert found in {standard}
    assert standard in {found}
    assert ipaddress.get_mixed_type_key(found) == ipaddress.get_mixed_type_key(standard)
    assert copy.copy(found) is found
    assert list(found.subnets(new_prefix=128)) == list(standard.subnets(new_prefix=128))
    assert found.subnet_of(wider) == standard.subnet_of(wider)
    assert found.overlaps(wider) == standard.overlaps(wider)
    assert (found < wider) == (standard < wider)
    assert (wider < found) == (wider < standard)
    assert found.supernet() == standard.supernet()
    assert standard.network_address in found
    assert (wider.network_address in found) == (wider.network_address in standard)
    assert copy.deepcopy(found) == standard
    assert pickle.loads(pickle.dumps(found)) is found
    assert list(ipaddress.collapse_addresses([found, standard])) == [standard]
    # What the standard methods make through the class is the standard network of its length.
    up = found.supernet(new_prefix=length)
    assert up == standard.supernet(new_prefix=length)
    assert repr(up) == repr(standard.supernet(new_prefix=length))
    first = list(itertools.islice(standard.supernet(new_prefix=length).hosts(), 3))
    assert list(itertools.islice(up.hosts(), 3)) == first
    assert pickle.loads(pickle.dumps(up)) == up
    assert list(found.address_exclude(found)) == list(standard.address_exclude(standard))


def test_an_interned_host_prefix_has_no_hosts_of_its_own() -> None:
    # The standard /128 makes a closure for ``hosts`` per instance (240 bytes), and setting
    # a bound method instead cost 64 bytes and a reference cycle: two a member.
    found = host_prefix_of(0xFD00_6D65_7368 << 80 | 0xBEEF)
    assert "hosts" not in vars(found)
    assert list(found.hosts()) == [found.network_address]


def test_an_interned_host_prefix_keeps_its_address_and_nothing_else() -> None:
    """Its netmask and length are its class's, its address is made when asked, and what a
    standard network caches in its ``__dict__`` (broadcast address, hostmask) is read
    through the class: asked everything the membership, WireGuard and Babel ask of a /128,
    it has nothing in its ``__dict__`` (its address's int is the /128 itself, no address
    object kept)."""
    found = host_prefix_of(0xFD00_6D65_7368 << 80 | 0xF00D)
    wider = ipaddress.IPv6Network("fd00::/8")
    assert found.subnet_of(wider)
    assert found.network_address in found
    assert found.broadcast_address == found.network_address
    assert found.network_address is not found.network_address  # made when asked
    assert found.hostmask == ipaddress.IPv6Address(0)
    assert sorted([wider, found])[1] is found
    assert hash(found) == hash(ipaddress.IPv6Network(str(found)))
    assert sorted([found, host_prefix_of(0xFD00_6D65_7368 << 80 | 0xF00E), wider])[1] is found
    assert vars(found) == {}
    assert id(host_int(found)) == id(found)  # itself, not a copy
    assert host_int(found) == int(found.network_address)
    # Anything other than an int given to the class is a standard network.
    assert type(HostPrefix("fd00::1/128")) is ipaddress.IPv6Network
    assert type(found.supernet()) is ipaddress.IPv6Network


def test_a_host_prefix_takes_under_90_bytes() -> None:
    """Measured on 10,000 made (its value, an int a member's key gives, aside): 72 bytes
    traced on CPython 3.11 (an int subclass of that value: the int is the /128), against 80
    when it kept its int in the inline values of its ``__dict__``, 136 when it kept its
    address (an object of 56) and 153 when it kept a network's three attributes."""
    values = [0xFD00_6D65_7368 << 80 | i << 16 | 0xC0DE for i in range(10_000)]
    made: list[ipaddress.IPv6Network] = []
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        made.extend(HostPrefix(v) for v in values)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    list_size = 8 * len(values) * 9 // 8  # the list's pointers, at most 1/8 more
    assert (after - before - list_size) / len(values) < 90
    assert all(int(p.network_address) == v for p, v in zip(made, values, strict=True))


def test_interned_host_prefixes_with_their_table_take_under_110_bytes() -> None:
    """10,000 interned: 72 bytes each (80 before they were their ints) and 13 of the
    table's (8 a slot, 16,384 slots), where a dict's entries cost 30 (its value aside, as
    above)."""
    values = [0xFD00_6D65_7368 << 80 | i << 16 | 0x7AB1 for i in range(10_000)]
    made: list[ipaddress.IPv6Network] = []
    sweep()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        made.extend(host_prefix_of(v) for v in values)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    list_size = 8 * len(values) * 9 // 8
    assert (after - before - list_size) / len(values) < 110
    assert all(host_prefix_of(v) is p for p, v in zip(made, values, strict=True))


def test_a_members_two_host_prefixes_are_their_ints() -> None:
    """A member's overlay and link-local /128s made as the membership and WireGuard make
    them (from its keys, their ints made on the way and not kept): each /128 is its
    address's int, one object of 68 bytes (72 traced), where the /128 kept its int in its
    attribute storage (80 bytes beside the int's 44). 10,000 members' two /128s and the
    table's share: ~162 bytes a member, against ~266."""
    from meshd.addressing import overlay_address
    from meshd.wg.addresses import link_local_prefix

    root = bytes(range(32))
    keys = [i.to_bytes(4, "big") * 8 for i in range(10_000)]
    made: list[tuple[ipaddress.IPv6Network, ipaddress.IPv6Network]] = []
    sweep()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for node in keys:
            made.append((host_prefix(overlay_address(root, node)), link_local_prefix(node[::-1])))
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    pairs = 64 * len(keys) + 8 * len(keys) * 9 // 8  # the test's tuples of two and list
    assert (after - before - pairs) / len(keys) < 190
    overlay, link_local = made[0]
    assert overlay == ipaddress.IPv6Network((int(overlay_address(root, keys[0])), 128))
    assert host_int(overlay) == int(overlay.network_address)
    assert host_int(link_local) == int(link_local.network_address)


def test_an_interned_host_prefix_is_an_int_only_where_meshd_reads_one() -> None:
    """Truth, ``format`` and pickling are a network's, not an int's; against another
    /128 or an address's int (Babel's tables, bisected) it compares as its int."""
    zero, one = host_prefix_of(0), host_prefix_of(1)
    plain = ipaddress.IPv6Network("::/128")
    assert bool(zero) is bool(plain) is True
    assert format(zero, "") == format(plain, "") == f"{zero}" == "::/128"
    for network in (zero, plain):
        with pytest.raises(TypeError):
            format(network, "x")
    assert pickle.loads(pickle.dumps(one)) is one
    assert type(pickle.loads(pickle.dumps(one, protocol=0))) is HostPrefix
    assert sorted([one, zero]) == [zero, one]
    keys = (host_int(zero), host_int(one))
    assert bisect.bisect_left(keys, 1) == 1
    assert keys[1] == 1
    assert type(zero.network_address._ip) is int  # type: ignore[attr-defined]
    assert zero != plain.supernet()
    assert (zero <= plain, zero >= plain, plain <= zero, zero != plain) == (True, True, True, False)


def _with_zero_hextets(value: int, zeros: int) -> int:
    for i in range(8):
        if zeros >> i & 1:
            value &= ~(0xFFFF << 16 * i)
    return value


SPECIAL = [0, 1, 0xFFFF << 32 | 0x0102_0304, 1 << 112, 0x0001_0000_0000_0001_0000_0000_0000_0001]


@settings(max_examples=2_000, deadline=None)
@given(
    st.one_of(
        st.sampled_from(SPECIAL),
        st.builds(_with_zero_hextets, st.integers(0, 2**128 - 1), st.integers(0, 255)),
    )
)
def test_an_address_is_written_as_the_standard_library_writes_it(value: int) -> None:
    """Runs of zero hextets (the first longest one as ``::``, a lone one kept), IPv4-mapped
    and compatible addresses, the unspecified and the loopback address."""
    assert ipv6_text(value) == str(ipaddress.IPv6Address(value))
    prefix = host_prefix_of(value)
    assert str(prefix) == str(ipaddress.IPv6Network((value, 128)))
    assert repr(prefix) == repr(ipaddress.IPv6Network((value, 128)))


def test_a_desired_peer_keeps_its_networks_without_a_tuple() -> None:
    """A member's peer holds its two /128s (or its one) in its own slots, not in a tuple of
    them: the desired peers of 1,000 members keep ~88 bytes a member beside the /128s (the
    peer and its place in two tuples), where the peer and its tuple kept ~136. Read, the
    allowed-ips are the tuple they were, of the same networks, and pickle as they were."""
    members = [member(i) for i in range(1_000)]
    held = [base_allowed_ips(m) for m in members]  # the /128s: the membership's, Babel's
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        mesh = desired_peers(members, own_node_key=ME, own_wg_key=MY_WG)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept / len(members) < 100
    for m, (link_local, overlay) in zip(members, held, strict=True):
        peer = mesh.peers[m.wg_key]
        assert peer.allowed_ips == (overlay, link_local)
        assert peer.allowed_ips[0] is overlay
        assert peer.allowed_ips[1] is link_local
        assert pickle.loads(pickle.dumps(peer)) == peer
    one = PeerConfig(members[0].wg_key, None, (held[0][0],))
    assert one.allowed_ips == (held[0][0],)
    assert one != PeerConfig(members[0].wg_key, None, held[0])
    assert PeerConfig(members[0].wg_key).allowed_ips == ()
    three = (*held[0], ipaddress.IPv6Network("2001:db8::/64"))
    assert len(PeerConfig(members[0].wg_key, None, three).allowed_ips) == 3
    assert PeerConfig(members[0].wg_key, None, iter(held[0])).allowed_ips == held[0][::-1]  # type: ignore[arg-type]
