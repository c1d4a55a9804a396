"""Whom a pass dials, without reading every member's addresses each pass.

An announcement's libp2p addresses are read from its bytes (a msgpack decode) when asked.
A node with no member connected asks :class:`Rejoin` every second: at 10,000 members,
reading everyone's addresses made ~380 bytes a member of transient heap and a body decode
each, every pass. It reads the addresses of the few members it chooses, and the answer is
the one of before (the old algorithm is the oracle here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.daemon.rejoin_policy import Rejoin
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
        failures = rejoin._failures.get(key)
        if failures is not None and now < failures.next_try:
            continue
        due.append((failures.count if failures else 0, key, tuple(found)))
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
