"""UAPI requests and replies: golden bytes, both dialects, and garbage that must not escape."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.errors import BackendError
from meshd.wg.errors import UapiDecodeError, UapiErrnoError, UapiError
from meshd.wg.model import (
    DeviceState,
    Operation,
    PeerConfig,
    PeerStatus,
    RemovePeer,
    ReplacePeers,
    SetFwmark,
    SetListenPort,
    SetPrivateKey,
    UpdatePeer,
)
from meshd.wg.uapi_reply import (
    GetReplyParser,
    encode_errno_reply,
    encode_get_reply,
    parse_errno_untrusted,
    parse_get_reply_untrusted,
)
from meshd.wg.uapi_request import (
    encode_get_request,
    encode_set_request,
    parse_set_request_untrusted,
)
from meshd.wg.uapi_syntax import Dialect

PEER_A = bytes.fromhex("a9d4afe536f318714f3ee09e3d6081390ebfd63460d2b8ad1c9da304c9f0bf5a")
PEER_B = bytes.fromhex("309384fc6ca1710fe11ef0ebd271961a5e45d8f9765de1f9d5f9cfad27f4530b")

# Captured from wireguard-go 0.0.20220316 (Debian) after
# `wg set IF private-key K listen-port 51820 peer A endpoint [2001:db8::1]:51820
#  allowed-ips 10.1.0.0/16,fd00::/64 persistent-keepalive 25 peer B allowed-ips 10.2.0.0/24`.
WIREGUARD_GO_REPLY = b"""\
private_key=780e418bde2858385ddfddabca2ab1a80341a466caa36e11c508f6df85d01a5b
listen_port=51820
public_key=a9d4afe536f318714f3ee09e3d6081390ebfd63460d2b8ad1c9da304c9f0bf5a
preshared_key=0000000000000000000000000000000000000000000000000000000000000000
protocol_version=1
endpoint=[2001:db8::1]:51820
last_handshake_time_sec=0
last_handshake_time_nsec=0
tx_bytes=0
rx_bytes=0
persistent_keepalive_interval=25
allowed_ip=10.1.0.0/16
allowed_ip=fd00::/64
public_key=309384fc6ca1710fe11ef0ebd271961a5e45d8f9765de1f9d5f9cfad27f4530b
preshared_key=0000000000000000000000000000000000000000000000000000000000000000
protocol_version=1
last_handshake_time_sec=0
last_handshake_time_nsec=0
tx_bytes=0
rx_bytes=0
persistent_keepalive_interval=0
allowed_ip=10.2.0.0/24
errno=0

"""
# `wg pubkey` of the private key above.
DEVICE_PUBLIC = bytes.fromhex("70579be19d318e6e1a7ed464006e25380a3c05f68fd4a1ff1acdcbf556411a41")

# Written after boringtun's api_get (boringtun/src/device/api.rs): own_public_key, no
# private key, keepalive only when set, handshake as an age, rx before tx.
BORINGTUN_REPLY = (
    b"own_public_key=" + DEVICE_PUBLIC.hex().encode() + b"\n"
    b"listen_port=51820\n"
    b"fwmark=7\n"
    b"public_key=" + PEER_A.hex().encode() + b"\n"
    b"persistent_keepalive_interval=25\n"
    b"endpoint=192.0.2.7:51820\n"
    b"allowed_ip=10.1.0.0/16\n"
    b"last_handshake_time_sec=3\n"
    b"last_handshake_time_nsec=500000000\n"
    b"rx_bytes=10\n"
    b"tx_bytes=20\n"
    b"errno=0\n\n"
)


def test_parse_wireguard_go_reply() -> None:
    state = parse_get_reply_untrusted(WIREGUARD_GO_REPLY)
    assert state.public_key == DEVICE_PUBLIC
    assert state.has_private_key
    assert state.listen_port == 51820
    assert state.fwmark is None
    peers = state.peers_by_key()
    a = peers[PEER_A]
    assert a.config.endpoint == "[2001:db8::1]:51820"
    assert a.config.persistent_keepalive == 25
    assert a.config.allowed_ips == (
        ipaddress.ip_network("10.1.0.0/16"),
        ipaddress.ip_network("fd00::/64"),
    )
    assert a.last_handshake is None
    b = peers[PEER_B]
    assert b.config.endpoint is None
    assert b.config.persistent_keepalive is None


def test_parse_boringtun_reply() -> None:
    state = parse_get_reply_untrusted(BORINGTUN_REPLY, dialect=Dialect.BORINGTUN, now=1000.0)
    assert state.public_key == DEVICE_PUBLIC
    assert state.has_private_key
    assert state.fwmark == 7
    (peer,) = state.peers
    assert peer.last_handshake == pytest.approx(996.5)
    assert (peer.rx_bytes, peer.tx_bytes) == (10, 20)
    assert peer.config.endpoint == "192.0.2.7:51820"


def test_parse_empty_device_and_errnos() -> None:
    state = parse_get_reply_untrusted(b"errno=0\n\n")
    assert state.peers == ()
    assert not state.has_private_key
    assert parse_errno_untrusted(b"errno=0\n\n") == 0
    assert parse_errno_untrusted(b"errno=-22\n\n") == 22  # wireguard-go
    assert parse_errno_untrusted(b"errno=22\n\n") == 22  # boringtun
    with pytest.raises(UapiErrnoError) as info:
        parse_get_reply_untrusted(b"errno=-5\n\n")
    assert info.value.errno == 5


@pytest.mark.parametrize(
    "reply",
    [
        b"",
        b"errno=0\n",  # truncated
        b"errno=0",
        b"listen_port=1\n",
        b"listen_port=1\n\n",  # no errno
        b"errno=zero\n\n",
        b"errno=0\n\nerrno=0\n\n",
        b"\xff\xfe\n\n",
        b"listen_port=70000\nerrno=0\n\n",
        b"public_key=abc\nerrno=0\n\n",
        b"public_key=" + PEER_A.hex().encode() + b"\nallowed_ip=10.0.0.0/99\nerrno=0\n\n",
        b"public_key=" + PEER_A.hex().encode() + b"\nendpoint=host:1\nerrno=0\n\n",
        b"public_key=" + PEER_A.hex().encode() + b"\nlisten_port=1\nerrno=0\n\n",
        (b"public_key=" + PEER_A.hex().encode() + b"\n") * 2 + b"errno=0\n\n",
        b"no equals sign\nerrno=0\n\n",
    ],
)
def test_malformed_replies_raise_decode_error(reply: bytes) -> None:
    with pytest.raises(UapiDecodeError):
        parse_get_reply_untrusted(reply)


@given(st.binary(max_size=300))
def test_garbage_raises_only_uapi_errors(data: bytes) -> None:
    assert issubclass(UapiError, BackendError)
    for parse in (parse_get_reply_untrusted, parse_errno_untrusted):
        with contextlib.suppress(UapiError):
            parse(data)


@given(
    st.lists(
        st.sampled_from(
            [
                *(b"errno=0", b"errno=-22", b"public_key=" + PEER_A.hex().encode()),
                *(b"rx_bytes=1", b"endpoint=[::1]:1", b"allowed_ip=::/0", b"listen_port=9"),
                b"x=\x00",
            ]
        ),
        max_size=8,
    )
)
def test_line_soup_raises_only_uapi_errors(lines: list[bytes]) -> None:
    with contextlib.suppress(UapiError):
        parse_get_reply_untrusted(b"\n".join(lines) + b"\n\n")


def test_encode_requests() -> None:
    assert encode_get_request() == b"get=1\n\n"
    ops: list[Operation] = [
        SetPrivateKey(bytes(range(32))),
        SetListenPort(51820),
        ReplacePeers(),
        UpdatePeer(
            PEER_A,
            update_only=True,
            endpoint="[2001:db8:0::1]:51820",
            persistent_keepalive=0,
            replace_allowed_ips=True,
            allowed_ips=(ipaddress.ip_network("fd00::/64"), ipaddress.ip_network("10.0.0.0/8")),
        ),
        RemovePeer(PEER_B),
    ]
    assert encode_set_request(ops) == (
        b"set=1\n"
        b"private_key=" + bytes(range(32)).hex().encode() + b"\n"
        b"listen_port=51820\n"
        b"replace_peers=true\n"
        b"public_key=" + PEER_A.hex().encode() + b"\n"
        b"update_only=true\n"
        b"endpoint=[2001:db8::1]:51820\n"
        b"persistent_keepalive_interval=0\n"
        b"replace_allowed_ips=true\n"
        b"allowed_ip=10.0.0.0/8\n"
        b"allowed_ip=fd00::/64\n"
        b"public_key=" + PEER_B.hex().encode() + b"\n"
        b"remove=true\n\n"
    )
    boringtun = encode_set_request([UpdatePeer(PEER_A, update_only=True)], Dialect.BORINGTUN)
    assert b"update_only" not in boringtun


def test_device_operation_after_peer_is_refused() -> None:
    with pytest.raises(ValueError, match="before the peer operations"):
        encode_set_request([RemovePeer(PEER_A), SetListenPort(1)])


keys = st.binary(min_size=32, max_size=32)
networks = st.sampled_from(
    [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "192.0.2.1/32", "::/0", "fd00:1::/64")]
)
endpoints = st.none() | st.sampled_from(["192.0.2.1:1", "[2001:db8::1]:51820", "[::1]:9"])
update_peers = st.builds(
    UpdatePeer,
    keys,
    update_only=st.booleans(),
    endpoint=endpoints,
    persistent_keepalive=st.none() | st.integers(0, 65535),
    replace_allowed_ips=st.booleans(),
    allowed_ips=st.lists(networks).map(tuple),
)
device_ops = st.lists(
    st.builds(SetPrivateKey, keys)
    | st.builds(SetListenPort, st.integers(0, 65535))
    | st.builds(SetFwmark, st.integers(0, 2**32 - 1))
    | st.just(ReplacePeers())
)


@given(device_ops, st.lists(update_peers | st.builds(RemovePeer, keys)))
def test_set_request_round_trip(device: list[Operation], peers: list[Operation]) -> None:
    ops = device + peers
    assert parse_set_request_untrusted(encode_set_request(ops)) == ops


@given(
    st.lists(
        st.builds(
            PeerStatus,
            st.builds(PeerConfig, keys, endpoints, st.lists(networks).map(tuple)),
            st.none() | st.integers(1, 10**9).map(float),
            st.integers(0, 2**64 - 1),
            st.integers(0, 2**64 - 1),
        ),
        unique_by=lambda p: p.public_key,
    ),
    st.none() | st.integers(1, 65535),
    st.sampled_from(Dialect),
)
def test_get_reply_round_trip(peers: list[PeerStatus], port: int | None, dialect: Dialect) -> None:
    state = DeviceState(listen_port=port, peers=tuple(peers))
    now = 2e9
    reply = encode_get_reply(state, dialect, now=now)
    assert parse_get_reply_untrusted(reply, dialect=dialect, now=now) == state
    assert encode_errno_reply(22, dialect) == (
        b"errno=-22\n\n" if dialect is Dialect.WIREGUARD_GO else b"errno=22\n\n"
    )


@given(st.lists(st.integers(0, len(WIREGUARD_GO_REPLY)), max_size=12))
def test_a_reply_fed_in_any_pieces_parses_as_a_whole(cuts: list[int]) -> None:
    """The client parses a reply as it arrives: where the pieces end does not matter."""
    parser = GetReplyParser()
    edges = [0, *sorted(cuts), len(WIREGUARD_GO_REPLY)]
    done = [parser.receive_untrusted(WIREGUARD_GO_REPLY[a:b]) for a, b in itertools.pairwise(edges)]
    assert done[-1]
    assert parser.finish() == parse_get_reply_untrusted(WIREGUARD_GO_REPLY)


def test_a_reply_cut_short_or_going_on_is_refused_as_it_comes() -> None:
    parser = GetReplyParser()
    assert not parser.receive_untrusted(b"listen_port=1\nerrno=0\n")
    with pytest.raises(UapiDecodeError, match="truncated"):
        parser.finish()
    assert parser.receive_untrusted(b"\n")
    assert parser.finish().listen_port == 1
    with pytest.raises(UapiDecodeError, match="goes on"):
        parser.receive_untrusted(b"listen_port=2\n")
    with pytest.raises(UapiDecodeError, match="goes on after errno"):
        GetReplyParser().receive_untrusted(b"errno=0\nlisten_port=2\n\n")
    # A line that cannot end well is refused before the rest of it is kept.
    with pytest.raises(UapiDecodeError, match="too long"):
        GetReplyParser().receive_untrusted(b"endpoint=" + b"1" * 400)


def test_a_peer_read_again_unchanged_is_the_same_object() -> None:
    """Reading an unchanged device again makes nothing new; a peer whose counters moved
    keeps its configuration object; one whose configuration changed gets a new one."""
    first = parse_get_reply_untrusted(WIREGUARD_GO_REPLY)
    known = first.peers_by_key()
    again = parse_get_reply_untrusted(WIREGUARD_GO_REPLY, known=known)
    assert again == first
    assert all(a is b for a, b in zip(again.peers, first.peers, strict=True))
    moved = WIREGUARD_GO_REPLY.replace(
        b"rx_bytes=0\npersistent_keepalive_interval=25",
        b"rx_bytes=7\npersistent_keepalive_interval=25",
    )
    counted = parse_get_reply_untrusted(moved, known=known).peers_by_key()[PEER_A]
    assert counted.rx_bytes == 7
    assert counted.config is known[PEER_A].config
    assert counted.public_key is known[PEER_A].public_key
    roamed = WIREGUARD_GO_REPLY.replace(b"[2001:db8::1]:51820", b"[2001:db8::2]:51820")
    config = parse_get_reply_untrusted(roamed, known=known).peers_by_key()[PEER_A].config
    assert config.endpoint == "[2001:db8::2]:51820"
    assert config.allowed_ips == known[PEER_A].config.allowed_ips
    # An endpoint written another way than the canonical one is a new (canonical) config.
    odd = WIREGUARD_GO_REPLY.replace(b"[2001:db8::1]:51820", b"[2001:DB8:0::1]:51820")
    state = parse_get_reply_untrusted(odd, known=known)
    assert state == first


def test_a_known_peer_does_not_hide_a_malformed_one() -> None:
    known = parse_get_reply_untrusted(WIREGUARD_GO_REPLY).peers_by_key()
    bad = WIREGUARD_GO_REPLY.replace(b"[2001:db8::1]:51820", b"[2001:db8::1]:0")
    with pytest.raises(UapiDecodeError):
        parse_get_reply_untrusted(bad, known=known)
    twice = WIREGUARD_GO_REPLY.replace(
        b"public_key=" + PEER_B.hex().encode(), b"public_key=" + PEER_A.hex().encode()
    )
    with pytest.raises(UapiDecodeError, match="twice"):
        parse_get_reply_untrusted(twice, known=known)


def test_a_large_set_request_is_written_without_a_line_for_each_field_held() -> None:
    """A request re-creating 2,000 peers (what a failed punching round writes at 10,000
    members, a fifth of it): at its peak the encoding holds the buffer and its copy, about
    twice the request, not a string per line, their join and its encoding (~4 times)."""
    import gc
    import tracemalloc

    ops: list[Operation] = []
    for i in range(2000):
        key = i.to_bytes(4, "big") * 8
        nets = (
            ipaddress.IPv6Network(f"fd00::{i:x}/128"),
            ipaddress.IPv6Network(f"fe80::{i:x}/128"),
        )
        ops.append(RemovePeer(key))
        ops.append(UpdatePeer(key, endpoint=f"198.18.{i >> 8}.{i & 255}:51820",
                              persistent_keepalive=0, replace_allowed_ips=True,
                              allowed_ips=nets))  # fmt: skip
    gc.collect()
    tracemalloc.start()
    try:
        request = encode_set_request(ops)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert request.count(b"remove=true\n") == 2000
    assert peak < 2.6 * len(request), (peak, len(request))
