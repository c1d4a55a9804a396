"""A new endpoint for a never-answered peer re-creates it (fresh handshake state); of two
members that learn each other together, the lower WireGuard key does it first."""

from __future__ import annotations

import ipaddress
import sys

from meshd.mesh.handshake import DEFER, FirstHandshakes, recreate_unanswered
from meshd.trust.keys import WgKey
from meshd.wg.model import (
    DeviceState,
    IPNetwork,
    PeerConfig,
    PeerStatus,
    RemovePeer,
    UpdatePeer,
)
from meshd.wg.reconcile import apply_operations, plan

A, B = WgKey(b"\x0a" * 32), WgKey(b"\x0b" * 32)
NETS = (ipaddress.ip_network("fd00::a/128"),)


def test_only_never_answered_peers_with_a_new_endpoint_are_recreated() -> None:
    want = {
        A: PeerConfig(A, "192.0.2.1:1", NETS, 25),
        B: PeerConfig(B, "192.0.2.2:1", (ipaddress.ip_network("fd00::b/128"),), 25),
    }
    device = DeviceState(
        peers=(
            PeerStatus(PeerConfig(A, None, NETS, 25)),  # never answered
            PeerStatus(PeerConfig(B, None, want[B].allowed_ips, 25), last_handshake=1.0),
        )
    )
    ops = recreate_unanswered(plan(want, device), want, device)
    assert ops == [
        RemovePeer(A),
        UpdatePeer(A, endpoint="192.0.2.1:1", persistent_keepalive=25,
                   replace_allowed_ips=True, allowed_ips=NETS),
        UpdatePeer(B, update_only=True, endpoint="192.0.2.2:1"),
    ]  # fmt: skip
    after = apply_operations(device, ops)
    assert after.peer_configs() == want
    assert recreate_unanswered(plan(want, after, want), want, after) == []


LOW, HIGH = WgKey(b"\x01" * 32), WgKey(b"\xfe" * 32)
LOW_NETS = (ipaddress.ip_network("fd00::1/128"),)
HIGH_NETS = (ipaddress.ip_network("fd00::fe/128"),)


def unanswered(key: bytes, nets: tuple[IPNetwork, ...], endpoint: str | None = None) -> DeviceState:
    return DeviceState(peers=(PeerStatus(PeerConfig(key, endpoint, nets, 25)),))


def answered(key: bytes, nets: tuple[IPNetwork, ...], endpoint: str) -> DeviceState:
    return DeviceState(peers=(PeerStatus(PeerConfig(key, endpoint, nets, 25), last_handshake=9.0),))


def recreation(config: PeerConfig) -> list[RemovePeer | UpdatePeer]:
    return [
        RemovePeer(config.public_key),
        UpdatePeer(config.public_key, endpoint=config.endpoint, persistent_keepalive=25,
                   replace_allowed_ips=True, allowed_ips=config.allowed_ips),
    ]  # fmt: skip


def test_of_two_members_learning_each_other_only_the_lower_key_recreates_at_once() -> None:
    # Each end learns the other's endpoint at t=0 and has a never-answered peer for it.
    low_side, high_side = FirstHandshakes(LOW), FirstHandshakes(HIGH)
    want_high = {HIGH: PeerConfig(HIGH, "192.0.2.254:1", HIGH_NETS, 25)}
    want_low = {LOW: PeerConfig(LOW, "192.0.2.1:1", LOW_NETS, 25)}
    at_low, at_high = unanswered(HIGH, HIGH_NETS), unanswered(LOW, LOW_NETS)

    assert low_side.ops(plan(want_high, at_low), want_high, at_low, 0.0) == recreation(
        want_high[HIGH]
    )
    assert low_side.deadline() is None
    # The higher key leaves its peer alone: it answers the lower key's initiation as it is.
    assert high_side.ops(plan(want_low, at_high), want_low, at_high, 0.0) == []
    assert high_side.deadline() == DEFER
    assert high_side.ops(plan(want_low, at_high, want_low), want_low, at_high, 0.5) == []

    # The handshake completed (WireGuard learnt the endpoint from the initiation): nothing
    # is re-created, then or later.
    done = answered(LOW, LOW_NETS, "192.0.2.1:1")
    assert high_side.ops(plan(want_low, done, want_low), want_low, done, 0.6) == []
    assert high_side.deadline() is None
    assert high_side.ops(plan(want_low, done, want_low), want_low, done, 5.0) == []


def test_the_higher_key_initiates_itself_when_the_lower_one_stays_silent() -> None:
    high_side = FirstHandshakes(HIGH)
    want = {LOW: PeerConfig(LOW, "192.0.2.1:1", LOW_NETS, 25)}
    device = unanswered(LOW, LOW_NETS)
    assert high_side.ops(plan(want, device), want, device, 10.0) == []
    assert high_side.ops(plan(want, device, want), want, device, 10.0 + DEFER - 0.01) == []
    # Due: re-created (fresh handshake state, an initiation at once), once.
    due = 10.0 + DEFER
    assert high_side.ops(plan(want, device, want), want, device, due) == recreation(want[LOW])
    assert high_side.deadline() is None


def test_an_initiation_answered_but_never_completed_is_recreated_when_due() -> None:
    # The lower key's initiation reached us (the device learnt its endpoint), but our answer
    # was lost: the plan has nothing to do, and the re-creation still comes when due.
    high_side = FirstHandshakes(HIGH)
    want = {LOW: PeerConfig(LOW, "192.0.2.1:1", LOW_NETS, 25)}
    before = unanswered(LOW, LOW_NETS)
    assert high_side.ops(plan(want, before), want, before, 0.0) == []
    learnt = unanswered(LOW, LOW_NETS, endpoint="192.0.2.1:1")
    assert plan(want, learnt, want) == []
    assert high_side.ops([], want, learnt, 0.2) == []
    assert high_side.ops([], want, learnt, DEFER) == recreation(want[LOW])


def test_held_back_updates_keep_their_other_changes_and_new_peers_are_created_at_once() -> None:
    high_side = FirstHandshakes(HIGH)
    other = WgKey(b"\x05" * 32)
    want = {
        LOW: PeerConfig(LOW, "192.0.2.1:1", LOW_NETS + HIGH_NETS, 25),
        other: PeerConfig(other, "192.0.2.5:1", (ipaddress.ip_network("fd00::5/128"),), 25),
    }
    device = unanswered(LOW, LOW_NETS)
    ops = high_side.ops(plan(want, device), want, device, 0.0)
    assert ops == [
        UpdatePeer(LOW, update_only=True, replace_allowed_ips=True,
                   allowed_ips=LOW_NETS + HIGH_NETS),
        UpdatePeer(other, endpoint="192.0.2.5:1", persistent_keepalive=25,
                   replace_allowed_ips=True, allowed_ips=want[other].allowed_ips),
    ]  # fmt: skip
    # A peer that leaves is forgotten.
    assert high_side.ops([], {}, device, 0.1) == []
    assert high_side.deadline() is None


def test_the_higher_key_checks_back_on_a_peer_it_created_with_an_endpoint() -> None:
    # Both ends create (or the lower key re-creates) their peers with the endpoint at the same
    # moment: both initiate at once and the initiations may cross. The higher key re-creates
    # its peer if it is still unanswered after the deferral; the lower key never checks back,
    # so the two never initiate again together.
    want_low = {LOW: PeerConfig(LOW, "192.0.2.1:1", LOW_NETS, 25)}
    want_high = {HIGH: PeerConfig(HIGH, "192.0.2.254:1", HIGH_NETS, 25)}
    high_side, low_side = FirstHandshakes(HIGH), FirstHandshakes(LOW)
    empty = DeviceState(peers=())
    created = plan(want_low, empty)
    assert high_side.ops(created, want_low, empty, 0.0) == created  # at once, as before
    assert high_side.deadline() == DEFER
    assert low_side.ops(plan(want_high, empty), want_high, empty, 0.0) == plan(want_high, empty)
    assert low_side.deadline() is None

    crossed = unanswered(LOW, LOW_NETS, endpoint="192.0.2.1:1")
    assert plan(want_low, crossed, want_low) == []
    assert high_side.ops([], want_low, crossed, DEFER - 0.01) == []
    assert high_side.ops([], want_low, crossed, DEFER) == recreation(want_low[LOW])
    assert high_side.deadline() is None
    assert high_side.ops([], want_low, crossed, DEFER + 5.0) == []  # once


def test_a_peer_created_with_an_endpoint_that_answers_is_left_alone() -> None:
    high_side = FirstHandshakes(HIGH)
    want = {LOW: PeerConfig(LOW, "192.0.2.1:1", LOW_NETS, 25)}
    empty = DeviceState(peers=())
    high_side.ops(plan(want, empty), want, empty, 0.0)
    done = answered(LOW, LOW_NETS, "192.0.2.1:1")
    assert high_side.ops([], want, done, 0.1) == []
    assert high_side.deadline() is None
    assert high_side.ops([], want, done, DEFER) == []


def test_a_waiting_peer_whose_endpoint_went_is_no_longer_due() -> None:
    # The member announced again without an endpoint before it answered: there is nothing to
    # re-create it with, and a deadline left in the past woke the round loop at once, every
    # time, for as long as the peer stayed unanswered (a round and a device read back to back).
    high_side = FirstHandshakes(HIGH)
    want = {LOW: PeerConfig(LOW, "192.0.2.1:1", LOW_NETS, 25)}
    empty = DeviceState(peers=())
    high_side.ops(plan(want, empty), want, empty, 0.0)
    assert high_side.deadline() == DEFER
    gone = {LOW: PeerConfig(LOW, None, LOW_NETS, 25)}
    crossed = unanswered(LOW, LOW_NETS, endpoint="192.0.2.1:1")
    assert high_side.ops([], gone, crossed, DEFER + 1.0) == []
    assert high_side.deadline() is None


def test_a_waiting_peer_whose_endpoint_comes_back_is_recreated_then() -> None:
    # Without an endpoint for a moment (parked, out of the deadline): once it has one again
    # and is still unanswered, the check back happens then. Dropped, as it was, the tie-break
    # was lost for good and crossed initiations waited for WireGuard's retry (5 s).
    high_side = FirstHandshakes(HIGH)
    want = {LOW: PeerConfig(LOW, "192.0.2.1:1", LOW_NETS, 25)}
    empty = DeviceState(peers=())
    high_side.ops(plan(want, empty), want, empty, 0.0)
    gone = {LOW: PeerConfig(LOW, None, LOW_NETS, 25)}
    crossed = unanswered(LOW, LOW_NETS, endpoint="192.0.2.1:1")
    assert high_side.ops([], gone, crossed, 0.5) == []
    assert high_side.deadline() is None
    assert high_side.waiting() == frozenset({LOW})
    assert high_side.ops([], want, crossed, DEFER + 0.5) == recreation(want[LOW])
    assert high_side.waiting() == frozenset()
    # Answered while parked: it leaves the tables.
    high_side.ops(plan(want, empty), want, empty, 10.0)
    high_side.ops([], gone, crossed, 10.5)
    high_side.ops([], gone, answered(LOW, LOW_NETS, "192.0.2.1:1"), 11.0)
    assert high_side.waiting() == frozenset()


def test_many_peers_due_together_are_each_recreated_once_in_one_pass() -> None:
    # A start from a large store: every peer was created before any answered, and all come
    # due in the same round. Each is re-created exactly once, in key order, and nothing else
    # planned for them is left in the round (the pass over the round is one, not one a peer).
    high_side = FirstHandshakes(HIGH)
    keys = [WgKey(bytes([1, i // 256, i % 256]) + b"\x00" * 29) for i in range(2000)]
    nets = {k: (ipaddress.ip_network(f"fd00::1:{i:x}/128"),) for i, k in enumerate(keys)}
    want = {k: PeerConfig(k, f"192.0.2.1:{1000 + i}", nets[k], 25) for i, k in enumerate(keys)}
    device = DeviceState(peers=tuple(PeerStatus(PeerConfig(k, None, nets[k], 25)) for k in keys))
    held = high_side.ops(plan(want, device), want, device, 0.0)
    assert all(isinstance(op, UpdatePeer) and op.endpoint is None for op in held)
    assert high_side.waiting() == frozenset(keys)
    # The next round sets the keepalives (nothing about endpoints): every peer is due, its
    # keepalive update goes, its re-creation (which carries the keepalive) comes instead.
    keepalives = [UpdatePeer(k, update_only=True, persistent_keepalive=25) for k in keys]
    out = high_side.ops(keepalives, want, device, DEFER)
    assert out == [op for k in keys for op in recreation(want[k])]
    assert high_side.deadline() is None


def _thousand_peers() -> tuple[
    list[WgKey], dict[WgKey, tuple[ipaddress.IPv6Network, ...]], dict[WgKey, PeerConfig]
]:
    """A start's 1,000 peers (all on the high key's side): keys, /128s, desired configs."""
    keys = [WgKey(bytes([1, i // 256, i % 256]) + b"\x00" * 29) for i in range(1000)]
    nets: dict[WgKey, tuple[ipaddress.IPv6Network, ...]] = {
        k: (ipaddress.IPv6Network(f"fd00::2:{i:x}/128"),) for i, k in enumerate(keys)
    }
    want = {k: PeerConfig(k, f"192.0.2.2:{1000 + i}", nets[k], 25) for i, k in enumerate(keys)}
    return keys, nets, want


def test_peers_held_back_in_one_round_share_one_deadline_object() -> None:
    # At a start from the store every member's peer waits: one deadline object for the
    # round's peers, not a float each (24 bytes a member).
    high_side = FirstHandshakes(HIGH)
    keys, nets, want = _thousand_peers()
    empty = DeviceState(peers=())
    high_side.ops(plan(want, empty), want, empty, 0.5)
    device = DeviceState(peers=tuple(PeerStatus(PeerConfig(k, None, nets[k], 25)) for k in keys))
    high_side.ops([], want, device, 0.7)
    due = high_side._waiting.values()
    assert len(due) == len(keys)
    assert len({id(at) for at in due}) == 1
    assert high_side.deadline() == 0.5 + DEFER


def test_the_table_of_waiting_peers_is_made_again_once_they_are_recreated() -> None:
    # At a start every peer held back waits in one table; once a round re-creates them, the
    # table does not keep the size it had for all of them (~15-30 bytes a member at 10,000
    # until the next round, which is ~10 s away there).
    high_side = FirstHandshakes(HIGH)
    keys, _, want = _thousand_peers()
    empty = DeviceState(peers=())
    high_side.ops(plan(want, empty), want, empty, 0.0)
    assert len(high_side._waiting) == len(keys)
    device = DeviceState(peers=tuple(PeerStatus(want[k]) for k in keys))
    out = high_side.ops([], want, device, DEFER)
    assert out == [op for k in keys for op in recreation(want[k])]
    assert high_side.deadline() is None
    assert sys.getsizeof(high_side._waiting) < 100  # 36,952 bytes before (1,000 entries)
