"""A wireguard-go peer read whole, and one whose text is as at the last read not read again
(meshd.wg.uapi_peers): the same statuses as a reply read line by line, on random devices,
reads that follow each other and texts damaged at random."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshd.addressing import interned
from meshd.trust.keys import WgKey
from meshd.wg.errors import UapiError
from meshd.wg.model import DeviceState, PeerConfig, PeerStatus
from meshd.wg.uapi_peers import ReadMemo
from meshd.wg.uapi_reply import GetReplyParser, encode_get_reply

NETWORKS = [
    interned(ipaddress.ip_network(text))
    for text in ("fe80::1/128", "fd00:1::5/128", "fd00:1::/48", "10.1.0.0/16", "0.0.0.0/0")
] + [ipaddress.ip_network("fd00:2::7/128"), ipaddress.ip_network("192.0.2.0/24")]
ENDPOINTS = ["192.0.2.1:51820", "[2001:db8::1]:51820", "[fe80::1%eth0]:9", "10.0.0.1:1"]
KEYS = [bytes([i]) * 32 for i in range(1, 9)]

configs = st.builds(
    PeerConfig,
    st.sampled_from(KEYS),
    st.none() | st.sampled_from(ENDPOINTS),
    st.lists(st.sampled_from(NETWORKS), max_size=3).map(tuple),
    st.none() | st.sampled_from([1, 25, 65535]),
)
counters = st.integers(0, 2**64 - 1) | st.integers(0, 400)
statuses = st.builds(
    PeerStatus,
    configs,
    st.none() | st.sampled_from([1.0, 1_700_000_000.25, 2.5e9]),
    counters,
    counters,
)
devices = st.lists(statuses, max_size=6, unique_by=lambda s: s.public_key).map(
    lambda peers: DeviceState(bytes(32), True, 51820, None, tuple(peers))
)


def read_whole(
    reply: bytes,
    pieces: list[int],
    expected: Mapping[WgKey, PeerConfig],
    known: Mapping[bytes, PeerStatus],
    memo: ReadMemo,
) -> tuple[DeviceState, ReadMemo]:
    """Read as the client reads: in pieces (of the sizes given, over and over)."""
    parser = GetReplyParser(expected=expected, known=known, memo=memo)
    start, i = 0, 0
    while start < len(reply):
        size = pieces[i % len(pieces)]
        parser.receive_untrusted(reply[start : start + size])
        start, i = start + size, i + 1
    return parser.finish(), parser.memo()


def read_lines(
    reply: bytes, expected: Mapping[WgKey, PeerConfig], known: Mapping[bytes, PeerStatus]
) -> DeviceState:
    """A byte at a time: every line is read alone, no peer whole (no memo is made)."""
    parser = GetReplyParser(expected=expected, known=known)
    for i in range(len(reply)):
        parser.receive_untrusted(reply[i : i + 1])
    assert not parser.memo().prints
    return parser.finish()


def same(a: DeviceState, b: DeviceState, expected: Mapping[WgKey, PeerConfig]) -> None:
    assert a == b
    for x, y in zip(a.peers, b.peers, strict=True):
        # Read as expected: that very object, both ways; otherwise neither.
        mine = expected.get(WgKey(x.public_key))
        assert (x.config is mine) == (y.config is mine)


def expectation(device: DeviceState, pick: list[int]) -> dict[WgKey, PeerConfig]:
    """For each peer of ``device``, by ``pick``: what it holds (an equal object), another
    endpoint, or nothing expected."""
    out: dict[WgKey, PeerConfig] = {}
    for peer, choice in zip(device.peers, pick, strict=False):
        config = peer.config
        if choice == 0:
            out[WgKey(peer.public_key)] = replace(config)
        elif choice == 1:
            out[WgKey(peer.public_key)] = replace(config, endpoint="198.51.100.7:7")
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(devices, min_size=1, max_size=4),
    st.lists(st.lists(st.integers(0, 2), min_size=6, max_size=6), min_size=4, max_size=4),
    st.lists(st.integers(1, 700), min_size=1, max_size=4),
    st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_reads_in_a_row_read_as_line_by_line(
    states: list[DeviceState],
    picks: list[list[int]],
    pieces: list[int],
    keep_expected: list[bool],
) -> None:
    memo = ReadMemo()
    known: dict[bytes, PeerStatus] = {}
    expected: dict[WgKey, PeerConfig] = {}
    for n, state in enumerate(states):
        reply = encode_get_reply(state)
        # The same objects expected again (as the desired peers are, round after round),
        # or new ones (equal, or not).
        if not keep_expected[n] or not expected:
            expected = expectation(state, picks[n])
        whole, memo = read_whole(reply, pieces, expected, known, memo)
        lines = read_lines(reply, expected, known)
        same(whole, lines, expected)
        # Read again, unchanged: the memo knows every peer read as expected.
        again, memo = read_whole(reply, pieces, expected, known, memo)
        same(again, lines, expected)
        known = {
            p.public_key: p
            for p in again.peers
            if p.config is not expected.get(WgKey(p.public_key))
        }


@settings(max_examples=300, deadline=None)
@given(devices, st.integers(0, 10**6), st.binary(min_size=1, max_size=3), st.integers(1, 700))
@example(DeviceState(bytes(32), True, 51820, None, ()), 11580, b"1", 1)  # errno=0 -> errno=1
def test_a_damaged_text_reads_as_line_by_line(
    state: DeviceState, where: int, junk: bytes, piece: int
) -> None:
    reply = encode_get_reply(state)
    expected = {WgKey(p.public_key): p.config for p in state.peers}
    _, memo = read_whole(reply, [piece], expected, {}, ReadMemo())
    at = where % len(reply)
    damaged = reply[:at] + junk + reply[at + len(junk) :]
    try:
        lines: DeviceState | UapiError = read_lines(damaged, expected, {})
    except UapiError as exc:  # malformed, or an errno the damage wrote (errno=1)
        lines = exc
    if isinstance(lines, UapiError):
        with pytest.raises(type(lines)):
            read_whole(damaged, [piece], expected, {}, memo)
    else:
        whole, _ = read_whole(damaged, [piece], expected, {}, memo)
        same(whole, lines, expected)


def test_a_peer_read_whole_is_its_expected_object_and_remembered() -> None:
    peers = [
        PeerStatus(PeerConfig(key, ENDPOINTS[0], (NETWORKS[0], NETWORKS[1]), 25), None, 0, 148)
        for key in KEYS
    ]
    reply = encode_get_reply(DeviceState(bytes(32), True, 51820, None, tuple(peers)))
    expected = {WgKey(p.public_key): p.config for p in peers}
    state, memo = read_whole(reply, [16384], expected, {}, ReadMemo())
    assert all(p.config is expected[WgKey(p.public_key)] for p in state.peers)
    assert len(memo.prints) == len(KEYS)
    assert set(map(id, memo.configs)) == set(map(id, expected.values()))
    # Another object expected for a peer whose text did not change: not the memo's.
    moved = dict(expected)
    moved[WgKey(KEYS[0])] = replace(expected[WgKey(KEYS[0])], persistent_keepalive=None)
    state, memo = read_whole(reply, [16384], moved, {}, memo)
    first = state.peers_by_key()[KEYS[0]]
    assert first.config == expected[WgKey(KEYS[0])]
    assert first.config is not moved[WgKey(KEYS[0])]
    assert len(memo.prints) == len(KEYS) - 1
