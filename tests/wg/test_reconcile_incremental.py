"""At 1,000 peers, one member's change is one operation on its own peer, and the UAPI
request sent for it names that peer alone (benchmarks/memory.py times it on wireguard-go)."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from meshd.trust.keys import WgKey
from meshd.wg.model import DeviceState, PeerConfig, RemovePeer, UpdatePeer, key_to_hex
from meshd.wg.reconcile import apply_operations, plan
from meshd.wg.uapi_request import encode_set_request, parse_set_request_untrusted

PEERS = 1000
PREFIX = ipaddress.IPv6Network("fd00:6d65:6d6f::/48")


def peer(i: int, port: int = 51820) -> PeerConfig:
    return PeerConfig(
        bytes([i % 251 + 1]) + i.to_bytes(4, "big") + bytes(27),
        endpoint=f"198.18.{i >> 8 & 255}.{i & 255}:{port}",
        allowed_ips=(ipaddress.IPv6Network((PREFIX.network_address + i + 1, 128)),),
        persistent_keepalive=25,
    )


@pytest.fixture(scope="module")
def programmed() -> tuple[dict[WgKey, PeerConfig], DeviceState]:
    desired = {WgKey(p.public_key): p for p in map(peer, range(PEERS))}
    ops = plan(desired, DeviceState())
    assert len(ops) == PEERS
    device = apply_operations(DeviceState(), ops)
    assert plan(desired, device, desired) == []  # programmed: nothing left to do
    return desired, device


def sent_for(ops: list[RemovePeer | UpdatePeer]) -> tuple[bytes, list[str]]:
    """The set request and the peers it names."""
    request = encode_set_request(ops)
    lines = request.decode().splitlines()
    named = [line.split("=", 1)[1] for line in lines if line.startswith("public_key=")]
    return request, named


def test_a_new_endpoint_is_one_update_of_that_peer(
    programmed: tuple[dict[WgKey, PeerConfig], DeviceState],
) -> None:
    desired, device = programmed
    moved = peer(7, port=51999)
    ops = plan({**desired, WgKey(moved.public_key): moved}, device, desired)
    assert ops == [UpdatePeer(moved.public_key, update_only=True, endpoint="198.18.0.7:51999")]
    request, named = sent_for(ops)
    assert named == [key_to_hex(moved.public_key)]
    assert request.count(b"\n") < 8
    assert parse_set_request_untrusted(request) == ops


def test_new_allowed_ips_are_one_update_of_that_peer(
    programmed: tuple[dict[WgKey, PeerConfig], DeviceState],
) -> None:
    desired, device = programmed
    old = desired[WgKey(peer(500).public_key)]
    wider = dataclasses.replace(
        old, allowed_ips=(*old.allowed_ips, ipaddress.IPv6Network("fd00:6d65:6d6f:1f4::/64"))
    )
    ops = plan({**desired, WgKey(wider.public_key): wider}, device, desired)
    assert len(ops) == 1
    assert isinstance(ops[0], UpdatePeer)
    assert ops[0].public_key == wider.public_key
    assert ops[0].replace_allowed_ips
    assert ops[0].endpoint is None
    assert ops[0].persistent_keepalive is None
    assert sent_for(ops)[1] == [key_to_hex(wider.public_key)]


def test_a_member_leaving_is_one_removal(
    programmed: tuple[dict[WgKey, PeerConfig], DeviceState],
) -> None:
    desired, device = programmed
    gone = peer(999).public_key
    ops = plan({k: v for k, v in desired.items() if k != gone}, device, desired)
    assert ops == [RemovePeer(gone)]
    assert sent_for(ops)[1] == [key_to_hex(gone)]


def test_a_member_joining_is_one_creation(
    programmed: tuple[dict[WgKey, PeerConfig], DeviceState],
) -> None:
    desired, device = programmed
    new = peer(PEERS)
    ops = plan({**desired, WgKey(new.public_key): new}, device, desired)
    assert len(ops) == 1
    assert isinstance(ops[0], UpdatePeer)
    assert ops[0].public_key == new.public_key
    assert not ops[0].update_only
    assert sent_for(ops)[1] == [key_to_hex(new.public_key)]


def test_a_roamed_endpoint_is_left_alone(
    programmed: tuple[dict[WgKey, PeerConfig], DeviceState],
) -> None:
    desired, device = programmed
    roamed = apply_operations(
        device, [UpdatePeer(peer(3).public_key, update_only=True, endpoint="203.0.113.9:4500")]
    )
    assert plan(desired, roamed, desired) == []


def test_a_plan_of_peers_in_key_order_holds_no_pair_of_each() -> None:
    # A round's desired peers are kept in key order (PeersByKey): the plan reads them along,
    # not from a sorted list of (key, peer) pairs made of them, held for the round (at a
    # start with 10,000 members ~0.6 MiB of them, left as holes in Python's pools; the
    # interpreter keeps 2,000 pairs spare, so 5,000 here).
    import tracemalloc

    from meshd.mesh.desired import PeersByKey

    configs = [peer(i) for i in range(5 * PEERS)]
    ordered = PeersByKey(configs)
    shuffled = {WgKey(p.public_key): p for p in reversed(configs)}  # a table in no key order
    assert plan(ordered, DeviceState()) == plan(shuffled, DeviceState())
    tracemalloc.start()
    try:
        ops = plan(ordered, DeviceState())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(ops) == len(configs)
    assert peak / len(configs) < 135  # its operations (~117 bytes a peer); ~159 with pairs
