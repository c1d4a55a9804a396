"""The peers a stopping daemon keeps for its next start (meshd.mesh.kept_peers): the format,
and which of them a start may use."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.encoding import pack
from meshd.errors import DecodeError
from meshd.mesh.kept_peers import (
    KeptPeer,
    KeptPeers,
    decode_kept_peers_untrusted,
    encode_kept_peers,
)
from meshd.wg.addresses import link_local_from_wg_key
from tests.mesh.support import OVERLAY, key

NOW = 1_700_000_000
OTHER = ipaddress.IPv6Network("fd00:9:9::/48")


def peer(
    seed: int, *, until: int = NOW + 3600, endpoint: str | None = "192.0.2.1:51820"
) -> KeptPeer:
    return KeptPeer(key(seed, "wg"), until, int(OVERLAY.network_address) + seed + 1, endpoint)


def kept(*peers: KeptPeer, valid_until: int = NOW + 600, written_at: int = NOW - 60) -> KeptPeers:
    return KeptPeers(OVERLAY, valid_until, written_at, tuple(sorted(peers, key=lambda p: p.wg_key)))


def test_a_list_reads_back_as_it_was_written() -> None:
    written = kept(peer(1), peer(2, endpoint=None), peer(3, endpoint="[2001:db8::7]:4000"))
    assert decode_kept_peers_untrusted(encode_kept_peers(written)) == written


def test_a_kept_peer_is_programmed_with_its_two_addresses_and_no_keepalive() -> None:
    p = peer(5)
    config = p.config()
    assert config.public_key == p.wg_key
    assert config.endpoint == p.endpoint
    assert config.persistent_keepalive is None
    wanted = {
        ipaddress.IPv6Network((p.overlay, 128)),
        ipaddress.IPv6Network((link_local_from_wg_key(p.wg_key), 128)),
    }
    assert set(config.allowed_ips) == wanted


def test_a_start_uses_a_list_only_in_its_network_and_within_its_validity() -> None:
    peers = (peer(1), peer(2, until=NOW - 1))
    listed = kept(*peers)
    # The peers whose credential has not ended, in the network's overlay, within the window.
    assert [p.wg_key for p in listed.usable(NOW, OVERLAY)] == [peers[0].wg_key]
    assert listed.usable(NOW, OTHER) == ()  # another network's list
    assert listed.usable(NOW + 600, OVERLAY) == ()  # the judgements could have changed since
    assert listed.usable(NOW - 61, OVERLAY) == ()  # before it was written: a clock set back


def test_a_list_out_of_key_order_or_with_a_key_twice_is_refused() -> None:
    a, b = peer(1), peer(2)
    first, second = sorted((a, b), key=lambda p: p.wg_key)
    data = encode_kept_peers(kept(a, b))
    value = [1, OVERLAY.network_address.packed, 48, NOW + 600, NOW - 60]
    rows = [[p.wg_key, p.until, p.overlay.to_bytes(16, "big"), p.endpoint] for p in (first, second)]
    assert pack([*value, rows]) == data
    for wrong in (rows[::-1], [rows[0], rows[0]]):
        with pytest.raises(DecodeError):
            decode_kept_peers_untrusted(pack([*value, wrong]))


@pytest.mark.parametrize(
    "endpoint",
    [
        "224.0.0.1:51820",
        "[fe80::1%eth0]:51820",
        "0.0.0.0:1",
        "[fd00:1:2::5]:51820",
        "nonsense",
        "192.0.2.01:51820",
    ],
)
def test_an_endpoint_an_announcement_could_not_give_is_refused(endpoint: str) -> None:
    with pytest.raises(DecodeError):
        decode_kept_peers_untrusted(encode_kept_peers(kept(peer(1, endpoint=endpoint))))


def test_an_address_outside_the_overlay_is_refused() -> None:
    outside = KeptPeer(key(1, "wg"), NOW + 60, int(OTHER.network_address) + 1, None)
    with pytest.raises(DecodeError):
        decode_kept_peers_untrusted(encode_kept_peers(kept(outside)))


@given(st.binary(max_size=600))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_kept_peers_untrusted(data)


@given(st.data())
def test_a_written_list_changed_anywhere_decodes_or_raises_decode_error(
    data: st.DataObject,
) -> None:
    raw = bytearray(encode_kept_peers(kept(peer(1), peer(2, endpoint=None))))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_kept_peers_untrusted(bytes(raw))
    except DecodeError:
        return
    assert encode_kept_peers(decoded) == bytes(raw)  # what reads is what it writes
