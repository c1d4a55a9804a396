"""A node that lost every connection never gives up (pure, on a fake clock).

The scene of issue 11: every public member restarted, a NATed member's dials failed for two
minutes, every member expired in its view, and it stopped dialling altogether. Here: while
no member is connected, expired members' last addresses and the bootstrap addresses are
dialled for as long as the node runs, each after a backoff capped at a few seconds; once a
member is connected the ordinary policy (``degree``, 60 s cap) is back.
"""

from __future__ import annotations

import dataclasses
import random
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.daemon.bootstrap import (
    check_bootstrap,
    check_public_addr,
    invite_bootstrap,
    peer_id_text,
    peer_key,
    public_multiaddrs,
)
from meshd.daemon.config import DaemonConfig
from meshd.daemon.connect_policy import ConnectionPolicy, Peer, Standing
from meshd.daemon.rejoin_policy import ISOLATED_CAP, Rejoin, bootstrap_targets
from meshd.errors import CommandLineError
from meshd.gossip.backoff import DialBackoff
from meshd.gossip.enroll import GracePolicy
from meshd.gossip.peers import peer_id_of
from meshd.membership import MemberState
from meshd.trust.keys import NodeKey
from tests.daemon.test_policies import OWN, _Ann, _member

KEY = bytes(range(32))
PEER = peer_id_of(KEY)


def _policy() -> ConnectionPolicy:
    return ConnectionPolicy(
        GracePolicy(connect=10.0, enroll=30.0, attempts=3, cooldown=300.0),
        DialBackoff(cap=60.0),
        6,
        lambda key: f"peer{key[0]}",
        random.Random(1),
    )


def test_an_isolated_node_dials_expired_members_for_as_long_as_it_runs() -> None:
    policy = _policy()
    public = [_member(1, state=MemberState.EXPIRED), _member(2, state=MemberState.EXPIRED)]
    gone = _member(3, state=MemberState.REVOKED)
    members = [*public, gone, _member(0)]  # _member(0) is this node
    now, dials = 0.0, 0
    longest = 0.0
    last: dict[bytes, float] = {}
    while now < 3600.0:  # an hour of isolation on the fake clock, a pass every second
        for key, addrs in policy.sweep(now, [], members, OWN).dial:
            assert key in {m.node_key for m in public}  # never the revoked one, never us
            assert addrs == _member(key[0]).announcement.addrs  # type: ignore[union-attr]
            if key in last:
                longest = max(longest, now - last[key])
            last[key] = now
            dials += 1
            policy.dialled(key, addrs, False, now)
        now += 1.0
    assert longest <= ISOLATED_CAP * 1.5 + 1.0  # capped backoff, plus the pass interval
    assert dials >= 2 * 3600 / (ISOLATED_CAP * 1.5 + 1.0)  # on and on, for both


def test_the_first_dial_after_an_outage_ends_isolation_and_the_degree_policy_is_back() -> None:
    policy = _policy()
    members = [_member(i, state=MemberState.EXPIRED) for i in range(1, 4)]
    for i in range(10):  # a long outage: many failures each
        for key, addrs in policy.sweep(float(i * 10), [], members, OWN).dial:
            policy.dialled(key, addrs, False, float(i * 10))
    # One member answers: the others are no longer dialled every few seconds (expired ones
    # are not the degree policy's business: they come back when their announcements do).
    key, addrs = members[0].node_key, members[0].announcement.addrs  # type: ignore[union-attr]
    policy.dialled(key, addrs, True, 200.0)
    connected = [Peer("peer1", Standing.MEMBER, key)]
    assert policy.sweep(200.0, connected, members, OWN).dial == ()
    assert len(policy.rejoin) == 2  # the successful one was forgotten
    # All connections lost again: straight back to dialling everyone.
    assert {k for k, _ in policy.sweep(300.0, [], members, OWN).dial} == {
        m.node_key for m in members
    }


def test_bootstrap_addresses_are_dialled_while_isolated_merged_with_what_the_member_announced() -> (
    None
):
    boot = f"/ip4/198.51.100.7/tcp/7100/p2p/{PEER}"
    targets = bootstrap_targets(
        [boot, "/ip4/198.51.100.8/tcp/7100", f"/ip4/1.2.3.4/tcp/1/p2p/{PEER}/x", boot],
        lambda peer: KEY if peer == PEER else None,
    )
    assert targets == {KEY: (boot,)}  # no peer id, a malformed one, a duplicate: left out
    rejoin = Rejoin(bootstrap=targets)
    assert rejoin.targets(0.0, [], OWN) == [(KEY, (boot,))]  # a member we never heard of
    known = dataclasses.replace(_member(5), node_key=NodeKey(KEY))
    object.__setattr__(known, "announcement", _Ann(("/ip4/10.0.0.5/tcp/7100/p2p/x",)))
    assert rejoin.targets(0.0, [known], OWN) == [(KEY, ("/ip4/10.0.0.5/tcp/7100/p2p/x", boot))]
    known = dataclasses.replace(known, state=MemberState.REVOKED)
    assert rejoin.targets(0.0, [known], OWN) == []  # revoked since: not even its bootstrap
    assert rejoin.targets(0.0, [], KEY) == []  # our own address
    assert rejoin.targets(0.0, [], OWN, skip=[KEY]) == []  # being dialled


def test_at_most_limit_dials_in_flight_least_tried_first() -> None:
    rejoin = Rejoin(limit=3)
    members = [_member(i, state=MemberState.EXPIRED) for i in range(1, 8)]
    first = rejoin.targets(0.0, members, OWN)
    assert len(first) == 3
    for key, _ in first:
        rejoin.failed(key, 0.0, 1.0)
    second = rejoin.targets(0.0, members, OWN)
    assert not {k for k, _ in first} & {k for k, _ in second}
    in_flight = [k for k, _ in second]
    assert rejoin.targets(0.0, members, OWN, skip=in_flight[:2]) == second[2:3]  # 3 at most
    assert rejoin.targets(0.0, members, OWN, skip=in_flight) == []
    with pytest.raises(ValueError, match="positive"):
        Rejoin(cap=0)


def test_join_bootstrap_multiaddrs_are_checked_with_one_line_errors() -> None:
    good = f"/ip4/203.0.113.5/tcp/7100/p2p/{PEER}"
    assert check_bootstrap(good) == good
    assert check_bootstrap(f"/ip6/2001:db8::1/tcp/7100/p2p/{PEER}").startswith("/ip6/")
    assert peer_key(PEER) == KEY
    bad = [
        "203.0.113.5:7100",
        "/ip4/203.0.113.5/tcp/7100",  # no peer id
        f"/ip4/203.0.113.5/udp/7100/p2p/{PEER}",
        f"/ip4/2001:db8::1/tcp/7100/p2p/{PEER}",
        f"/ip4/203.0.113.5/tcp/70000/p2p/{PEER}",
        f"/ip4/0.0.0.0/tcp/7100/p2p/{PEER}",
        "/ip4/203.0.113.5/tcp/7100/p2p/QmNotAnEd25519PeerId",
        f"/ip4/203.0.113.5/tcp/7100/p2p/{PEER}0",
        "/ip4/" + "1" * 300,
        "",
    ]
    for text in bad:
        with pytest.raises(CommandLineError) as caught:
            check_bootstrap(text)
        assert "\n" not in str(caught.value)
        assert caught.value.exit_status == 2
    with pytest.raises(CommandLineError):
        DaemonConfig(state_dir=Path("/x"), bootstrap=(bad[1],))


def test_public_addrs_and_what_invites_carry() -> None:
    assert check_public_addr("203.0.113.5", 7100) == ("203.0.113.5", 7100)
    assert check_public_addr("203.0.113.5:7200", 7100) == ("203.0.113.5", 7200)
    assert check_public_addr("[2001:db8::1]:7200", 7100) == ("2001:db8::1", 7200)
    assert check_public_addr("2001:db8::1", 7100) == ("2001:db8::1", 7100)
    assert check_public_addr("/ip4/203.0.113.5/tcp/7300", 7100) == ("203.0.113.5", 7300)
    assert check_public_addr("mesh.example.org", 7100) == ("mesh.example.org", 7100)
    assert check_public_addr("/dns6/h.example/tcp/7300", 7100) == ("h.example", 7300)
    for bad in ["exa_mple.org", "10.0.0", "[h.example]:7100", "203.0.113.5:0", "127.0.0.1",
                "0.0.0.0", "[2001:db8::1", "/ip4/203.0.113.5/udp/1", "203.0.113.5:x",
                "224.0.0.1"]:  # fmt: skip
        with pytest.raises(CommandLineError):
            check_public_addr(bad, 7100)
    public = public_multiaddrs(
        [("203.0.113.5", 7100), ("2001:db8::1", 7100), ("h.example", 7100)], PEER
    )
    assert public == [
        f"/ip4/203.0.113.5/tcp/7100/p2p/{PEER}",
        f"/ip6/2001:db8::1/tcp/7100/p2p/{PEER}",
        f"/dns/h.example/tcp/7100/p2p/{PEER}",
    ]
    listen = [f"/ip4/192.168.1.10/tcp/7100/p2p/{PEER}", f"/ip4/0.0.0.0/tcp/7100/p2p/{PEER}"]
    carried = invite_bootstrap(public, listen)
    assert carried[:3] == public  # the public ones first: never only a private address
    assert carried[3:] == listen[:1]
    with pytest.raises(CommandLineError, match="relay"):
        DaemonConfig(state_dir=Path("/x"), relay="sometimes")


@given(st.text(max_size=80))
def test_peer_key_reads_any_text_without_raising(text: str) -> None:
    key = peer_key(text)
    assert key is None or (len(key) == 32 and peer_id_text(key) == text)


@given(st.binary(min_size=32, max_size=32))
def test_peer_ids_round_trip(key: bytes) -> None:
    assert peer_key(peer_id_text(key)) == key
    assert peer_id_text(key) == peer_id_of(key)  # what libp2p says


def test_what_an_isolated_node_keeps_of_a_member_it_failed_to_dial_is_one_number() -> None:
    # Isolated long enough, it has failed to dial every member: the connection policy's
    # backoff and the rejoin policy each kept a table of them, ~155 bytes a member at 1,000
    # (~85 + ~69); one table for both now, its entry one int.
    policy = _policy()
    keys = [i.to_bytes(32, "big") for i in range(1, 1001)]
    addrs = ("/ip4/198.18.0.1/tcp/7100",)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for at in (0.0, 1.0):  # a second failure replaces the first
            for key in keys:
                policy.dialled(key, addrs, False, at)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held / len(keys) < 100
    assert len(policy.rejoin) == len(policy.backoff) == len(keys)
    assert policy.rejoin.dials is policy.backoff


def test_the_rejoin_policy_waits_its_own_shorter_backoff_on_the_shared_table() -> None:
    # One table, two readers: a connected node's waits double from 2 s up to 60, an
    # isolated node's from 1 s up to ISOLATED_CAP, each times the same jitter.
    policy = _policy()
    member = _member(1, state=MemberState.EXPIRED)
    key, addrs = member.node_key, member.announcement.addrs  # type: ignore[union-attr]
    delays = []
    for failure in range(1, 6):
        delays.append(policy.dialled(key, addrs, False, 100.0))
        assert policy.rejoin.dials.isolated_wait(key, ISOLATED_CAP) == pytest.approx(
            min(ISOLATED_CAP, 2.0 ** (failure - 1)) * delays[-1] / min(60.0, 2.0**failure)
        )
    wait = policy.rejoin.dials.isolated_wait(key, ISOLATED_CAP)
    assert policy.rejoin.targets(100.0 + wait * 0.99, [member], OWN) == []
    assert policy.rejoin.targets(100.0 + wait, [member], OWN) == [(key, addrs)]
    assert not policy.backoff.due(key, addrs, 100.0 + wait)  # the connected node's: longer
    # Its addresses changed: the connected node's backoff starts again (the isolated one
    # keeps counting nothing new: the entry is gone once it is looked at with the new ones).
    assert policy.backoff.due(key, ("/ip4/198.18.0.2/tcp/7100",), 100.0)
    assert policy.rejoin.dials.isolated(key, 100.0, ISOLATED_CAP) == 0
