"""A device read back as expected is the caller's own peers, not copies; how a reply's lines
and allowed-ips are read for that without costing more."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.addressing import host_prefix_of, interned
from meshd.daemon.wireguard import WireGuardMesh
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.errors import UapiDecodeError
from meshd.wg.model import DeviceState, PeerConfig, PeerStatus
from meshd.wg.reconcile import plan
from meshd.wg.uapi import UapiClient
from meshd.wg.uapi_reply import GetReplyParser, encode_get_reply, parse_get_reply_untrusted
from meshd.wg.uapi_syntax import _ipv6_packed
from tests.mesh.support import OVERLAY, key, member
from tests.wg.test_uapi import FakeDevice, run_against

LINK_LOCAL = int(ipaddress.IPv6Address("fe80::"))
OVERLAY_INT = int(OVERLAY.network_address)


def peers(n: int, port: int = 51820) -> dict[WgKey, PeerConfig]:
    """``n`` peers as the desired peers are: canonical endpoint, interned /128s, keepalive."""
    made = {}
    for i in range(n):
        wg_key = WgKey(bytes([i % 251 + 1]) + i.to_bytes(4, "big") + bytes(27))
        nets = (host_prefix_of(LINK_LOCAL + 7919 * i + 1), host_prefix_of(OVERLAY_INT + i + 1))
        made[wg_key] = PeerConfig(wg_key, f"198.18.{i >> 8}.{i & 255}:{port}", nets, 25)
    return made


def reply_of(
    configs: Mapping[WgKey, PeerConfig], handshake: float | None = None, rx_bytes: int = 0
) -> bytes:
    statuses = (PeerStatus(c, handshake, rx_bytes) for c in configs.values())
    return encode_get_reply(DeviceState(bytes(32), True, 51820, None, tuple(statuses)))


def test_a_peer_read_as_expected_is_the_expected_object() -> None:
    expected = peers(3)
    # The device's keys and texts are its own objects, equal to ours.
    state = parse_get_reply_untrusted(reply_of(expected), expected=dict(expected))
    for peer in state.peers:
        assert peer.config is expected[WgKey(peer.public_key)]
        assert peer.public_key is expected[WgKey(peer.public_key)].public_key
    # Handshakes and counters are the device's, on our configuration.
    moved = parse_get_reply_untrusted(reply_of(expected, 1000.5, 3), expected=expected)
    assert all(p.config is expected[WgKey(p.public_key)] for p in moved.peers)
    assert {(p.last_handshake, p.rx_bytes) for p in moved.peers} == {(1000.5, 3)}


def test_a_peer_read_otherwise_is_what_the_device_says() -> None:
    expected = peers(3)
    roamed = {k: replace(c, endpoint="203.0.113.9:4000") for k, c in expected.items()}
    reply = reply_of(roamed)
    state = parse_get_reply_untrusted(reply, expected=expected)
    assert state == parse_get_reply_untrusted(reply)
    for peer in state.peers:
        assert peer.config == roamed[WgKey(peer.public_key)]
        assert peer.config is not expected[WgKey(peer.public_key)]
        # Its endpoint alone moved: the allowed-ips are the networks we hold, not copies.
        assert peer.config.same_nets(expected[WgKey(peer.public_key)])
    # What the last read held is kept for those: the same objects again.
    again = parse_get_reply_untrusted(reply, expected=expected, known=state.peers_by_key())
    assert all(a is b for a, b in zip(again.peers, state.peers, strict=True))
    # A peer back to what we expect is our object again, whatever the last read said.
    back = parse_get_reply_untrusted(
        reply_of(expected), expected=expected, known=state.peers_by_key()
    )
    assert all(p.config is expected[WgKey(p.public_key)] for p in back.peers)


def test_a_peer_expected_does_not_hide_a_malformed_one() -> None:
    expected = peers(2)
    reply = reply_of(expected)
    bad = reply.replace(b":51820\n", b":0\n", 1)
    with pytest.raises(UapiDecodeError):
        parse_get_reply_untrusted(bad, expected=expected)
    first = next(iter(expected)).hex().encode()
    second = list(expected)[1].hex().encode()
    with pytest.raises(UapiDecodeError, match="twice"):
        parse_get_reply_untrusted(reply.replace(second, first), expected=expected)


def test_the_client_returns_the_peers_it_was_told_to_expect(tmp_path: Path) -> None:
    """After ``expect``, a ``get`` returns the caller's own configurations for the peers that
    read the same, and remembers only the others (a roamed peer) from one get to the next."""
    path = tmp_path / "wg0.sock"
    device = FakeDevice()
    desired = {WgKey(k): c for k, c in peers(20).items()}
    roamed_key = next(iter(desired))

    async def client_side() -> None:
        client = UapiClient(str(path))
        await client.set(plan(desired, await client.get()))
        client.expect(desired)
        state = await client.get()
        assert all(p.config is desired[WgKey(p.public_key)] for p in state.peers)
        roamed = replace(desired[roamed_key], endpoint="203.0.113.9:4000")
        device.state = DeviceState(
            peers=tuple(
                PeerStatus(roamed) if p.public_key == roamed_key else p for p in device.state.peers
            )
        )
        first = (await client.get()).peers_by_key()
        second = (await client.get()).peers_by_key()
        assert first[roamed_key].config == roamed
        assert second[roamed_key] is first[roamed_key]
        assert all(second[k].config is c for k, c in desired.items() if k != roamed_key)

    run_against(path, device, client_side)


def test_the_mesh_reads_its_desired_peers_back_as_the_same_objects(tmp_path: Path) -> None:
    """The reconcile loop tells the device what it wants: what it reads back is the desired
    peers themselves (one copy a member kept, not two)."""
    path = tmp_path / "wg1.sock"
    device = FakeDevice()
    members = [member(i, endpoints=(f"192.0.2.{i}:51820",)) for i in range(1, 6)]

    class Backend:
        ifname = "wg1"

        def __init__(self) -> None:
            self.client = UapiClient(str(path))
            self.get, self.set, self.expect = self.client.get, self.client.set, self.client.expect

    async def client_side() -> None:
        mesh = WireGuardMesh(
            Backend(),  # type: ignore[arg-type]
            kind="userspace",
            own_node_key=NodeKey(key("me")),
            own_wg_key=WgKey(key("me", "wg")),
            overlay=OVERLAY.network_address + 1,
            overlay_prefix=OVERLAY,
            listen_port=51820,
            poke=False,
        )
        mesh.set_members(members)
        for _ in range(3):
            assert await mesh.reconcile()
        state = await mesh.backend.get()
        desired = mesh._desired.peers
        assert len(state.peers) == len(desired) == 5
        assert all(p.config is desired[WgKey(p.public_key)] for p in state.peers)

    run_against(path, device, client_side)


@given(st.lists(st.integers(0, 150_000), max_size=10))
def test_a_long_reply_fed_in_any_pieces_parses_as_a_whole(cuts: list[int]) -> None:
    """Longer than a piece and than the windows a piece is split in, cut anywhere."""
    expected = peers(400)
    reply = reply_of(expected)
    assert len(reply) > 120_000
    parser = GetReplyParser(expected=expected)
    edges = [0, *sorted(c % len(reply) for c in cuts), len(reply)]
    done = [parser.receive_untrusted(reply[a:b]) for a, b in itertools.pairwise(edges)]
    assert done[-1]
    state = parser.finish()
    assert state == parse_get_reply_untrusted(reply)
    assert all(p.config is expected[WgKey(p.public_key)] for p in state.peers)


def test_a_long_reply_is_refused_for_what_is_wrong_anywhere_in_it() -> None:
    reply = reply_of(peers(100))
    middle = reply.index(b"allowed_ip=", len(reply) // 2)
    for wrong, error in [(b"\xff", "not ASCII"), (b"\n\n", "does not end with errno")]:
        bad = reply[:middle] + wrong + reply[middle:]
        with pytest.raises(UapiDecodeError, match=error):
            parse_get_reply_untrusted(bad)
    with pytest.raises(UapiDecodeError, match="is not key=value"):
        parse_get_reply_untrusted(reply[:middle] + b"x" * 9000 + b"\n" + reply[middle:])


def _forms(value: int) -> list[str]:
    address = ipaddress.IPv6Address(value)
    return [str(address), address.exploded, address.exploded.upper(), str(address).upper()]


@given(st.integers(0, 2**128 - 1) | st.sampled_from([0, 1, 2**128 - 1, 2**112, 2**16]))
def test_an_ipv6_address_is_read_as_ipaddress_reads_it(value: int) -> None:
    for text in _forms(value):
        packed = _ipv6_packed(text)
        assert packed is None or packed == ipaddress.IPv6Address(text).packed
    assert _ipv6_packed(str(ipaddress.IPv6Address(value))) == value.to_bytes(16, "big")


@given(st.text("0123456789abcdefA:.%", max_size=45))
def test_anything_else_is_left_to_ipaddress(text: str) -> None:
    packed = _ipv6_packed(text)
    if packed is not None:
        assert packed == ipaddress.IPv6Address(text).packed


def test_allowed_ips_held_elsewhere_are_found_from_their_text() -> None:
    wide = interned(ipaddress.IPv6Network("fd00:1:2::/64"))
    v4 = interned(ipaddress.IPv4Network("10.1.0.0/16"))
    host = host_prefix_of(OVERLAY_INT + 5)
    config = PeerConfig(bytes([7]) * 32, None, (v4, wide, host), None)
    state = parse_get_reply_untrusted(reply_of({WgKey(config.public_key): config}))
    read = state.peers[0].config.allowed_ips
    assert read == config.allowed_ips
    assert all(a is b for a, b in zip(read, config.allowed_ips, strict=True))
