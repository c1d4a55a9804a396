"""Whom a pass dials, without reading every member's addresses each pass.

An announcement's libp2p addresses are read from its bytes (a msgpack decode) when asked.
A node with no member connected asks :class:`Rejoin` every second, and a node short of its
``degree`` asks :class:`ConnectionPolicy`: at 10,000 members, reading everyone's addresses
made ~380 bytes a member of transient heap and a body decode each, every pass. Both read the
addresses of the few members they choose, and the answer is the one of before: ``Rejoin``'s
the same (the old algorithm is the oracle here), the policy's sample as uniform.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import random
from collections.abc import Iterable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.daemon.connect_policy import ConnectionPolicy, Peer, Standing
from meshd.daemon.rejoin_policy import Rejoin
from meshd.gossip.backoff import DialBackoff
from meshd.gossip.enroll import GracePolicy
from meshd.membership import Member, MemberState
from meshd.trust.keys import NodeKey
from tests.daemon.test_policies import OWN, _member


def _old_targets(
    rejoin: Rejoin, now: float, members: Sequence[Member], own_key: bytes, skip: Iterable[bytes]
) -> list[tuple[bytes, tuple[str, ...]]]:
    """``Rejoin.targets`` at 0423951: every member's addresses in a table, each pass."""
    skipped = set(skip)
    addrs: dict[bytes, list[str]] = {}
    revoked: set[bytes] = set()
    for member in members:
        if member.state is MemberState.REVOKED:
            revoked.add(member.node_key)
            continue
        announcement = member.announcement
        announced = () if announcement is None else announcement.addrs
        if announced:
            addrs[member.node_key] = list(announced)
    for key, extra in rejoin.bootstrap.items():
        known = addrs.setdefault(key, [])
        known.extend(a for a in extra if a not in known)
    due: list[tuple[int, bytes, tuple[str, ...]]] = []
    for key, found in addrs.items():
        if key == own_key or key in revoked or key in skipped or not found:
            continue
        failures = rejoin.dials.isolated(key, now, rejoin.cap)  # its own table, since
        if failures < 0:
            continue
        due.append((failures, key, tuple(found)))
    due.sort(key=lambda d: (d[0], d[1]))
    budget = max(0, rejoin.limit - len(skipped))
    return [(key, found) for _, key, found in due[:budget]]


class _Counted:
    """An announcement that counts how often its addresses are read."""

    reads = 0

    def __init__(self, addrs: tuple[str, ...]) -> None:
        self._addrs = addrs

    @property
    def addrs(self) -> tuple[str, ...]:
        _Counted.reads += 1
        return self._addrs


def _with(member: Member, addrs: tuple[str, ...] | None, state: MemberState) -> Member:
    member = dataclasses.replace(member, state=state)
    object.__setattr__(member, "announcement", None if addrs is None else _Counted(addrs))
    return member


def _many(n: int, state: MemberState) -> list[Member]:
    """``n`` members, keys 2 to n + 1, each announcing an address of its own."""
    return [
        _with(
            dataclasses.replace(_member(1), node_key=NodeKey(i.to_bytes(32, "big"))),
            (f"/ip4/10.0.0.1/tcp/{i}/p2p/x",),
            state,
        )
        for i in range(2, n + 2)
    ]


POOL = [f"/ip4/10.1.0.{i}/tcp/7100/p2p/x" for i in range(4)]
KEYS = st.integers(min_value=0, max_value=24)  # key i: bytes([i]) * 32; 0 is OWN


@st.composite
def _scenes(draw: st.DrawFn) -> tuple[Rejoin, float, list[Member], bytes, list[bytes]]:
    keys = draw(st.lists(KEYS, unique=True, max_size=20))
    members = [
        _with(
            _member(i),
            draw(st.none() | st.lists(st.sampled_from(POOL), max_size=3).map(tuple)),
            draw(st.sampled_from(MemberState)),
        )
        for i in keys
    ]
    bootstrap = {
        bytes([i]) * 32: tuple(draw(st.lists(st.sampled_from(POOL), unique=True, max_size=2)))
        for i in draw(st.lists(KEYS, unique=True, max_size=5))
    }
    rejoin = Rejoin(limit=draw(st.integers(min_value=1, max_value=8)), bootstrap=bootstrap)
    failures = st.tuples(KEYS, st.floats(0.0, 10.0), st.floats(0.5, 1.5))
    for i, at, jitter in draw(st.lists(failures, max_size=30)):
        rejoin.failed(bytes([i]) * 32, at, jitter)
    skip = [bytes([i]) * 32 for i in draw(st.lists(KEYS, unique=True, max_size=4))]
    own = bytes([draw(KEYS)]) * 32
    return rejoin, draw(st.floats(0.0, 12.0)), members, own, skip


@settings(max_examples=400)
@given(_scenes())
def test_rejoin_chooses_the_targets_of_before(
    scene: tuple[Rejoin, float, list[Member], bytes, list[bytes]],
) -> None:
    rejoin, now, members, own, skip = scene
    assert rejoin.targets(now, members, own, skip) == _old_targets(rejoin, now, members, own, skip)


def test_a_pass_of_rejoin_reads_the_addresses_of_the_members_it_dials_only() -> None:
    members = _many(2000, MemberState.EXPIRED)
    one = dataclasses.replace(_member(1), node_key=NodeKey((1).to_bytes(32, "big")))
    silent = _with(one, (), MemberState.ADMITTED)
    rejoin = Rejoin(limit=16)
    _Counted.reads = 0
    first = rejoin.targets(0.0, [silent, *members], OWN)  # silent: announces no address
    assert [k for k, _ in first] == [m.node_key for m in members[:16]]  # by key
    assert _Counted.reads == 17  # the 16 chosen and the silent one; the old pass read 2,001
    for key, _ in first:
        rejoin.failed(key, 0.0, 1.0)
    _Counted.reads = 0
    second = rejoin.targets(0.5, members, OWN, skip=[members[-1].node_key])
    assert [k for k, _ in second] == [m.node_key for m in members[16:31]]  # 15: one in flight
    assert _Counted.reads == 15


def _dialler(degree: int, seed: int = 1) -> ConnectionPolicy:
    return ConnectionPolicy(
        GracePolicy(connect=10.0, enroll=30.0, attempts=3, cooldown=300.0),
        DialBackoff(cap=60.0),
        degree,
        lambda key: f"peer{key[-1]}",
        random.Random(seed),
    )


def test_a_pass_short_of_its_degree_reads_the_addresses_of_a_few_members_only() -> None:
    members = _many(2000, MemberState.ADMITTED)
    connected = [Peer("peer1", Standing.MEMBER, members[0].node_key)]
    reads = []
    for seed in range(20):
        _Counted.reads = 0
        dial = _dialler(7, seed).sweep(0.0, connected, members, OWN).dial
        assert len(dial) == 6
        assert members[0].node_key not in {k for k, _ in dial}
        reads.append(_Counted.reads)
    # Expected about 6 + 6 ln(2000 / 6): 41; the old pass read all 2,000.
    assert max(reads) < 120, reads


def test_whom_a_pass_short_of_its_degree_dials_is_uniform_over_those_it_can_dial() -> None:
    members = [_member(i) for i in range(1, 13)]
    members[2] = _member(3, addrs=False)  # nothing to dial
    members[3] = _member(4, state=MemberState.EXPIRED)
    connected = [Peer("peer1", Standing.MEMBER, members[0].node_key)]
    dialable = {m.node_key for m in members} - {members[i].node_key for i in (0, 2, 3)}
    backed_off = members[4].node_key  # failed a moment ago
    dialable.discard(backed_off)
    policy = _dialler(4)
    pairs: collections.Counter[tuple[bytes, ...]] = collections.Counter()
    firsts: collections.Counter[bytes] = collections.Counter()
    runs = 6000
    for run in range(runs):
        policy.backoff.failed(backed_off, members[4].announcement.addrs, float(run), 1.0)  # type: ignore[union-attr]
        dial = policy.sweep(float(run), connected, members, OWN).dial
        keys = [key for key, _ in dial]
        assert len(keys) == 3
        assert set(keys) <= dialable
        pairs.update(itertools.combinations(sorted(keys), 2))
        firsts[keys[0]] += 1
        for key, addrs in dial:
            policy.dialled(key, addrs, True, float(run))
    assert set(firsts) == dialable  # 8 of them: each first 750 times, and in each pair
    assert all(abs(n - runs / 8) < 120 for n in firsts.values()), firsts
    expected = runs * 3 * 2 / (8 * 7)  # 3 pairs a run, over the 28 pairs
    assert len(pairs) == 28
    assert all(abs(n - expected) < 110 for n in pairs.values()), pairs
