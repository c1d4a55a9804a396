"""Whom this node heard itself (liveness_policy.heard, pure): the same answer as the rule
written plainly (a table of every member's WireGuard key a call), without that table."""

from __future__ import annotations

import gc
import ipaddress
import tracemalloc
from collections.abc import Iterable, Mapping, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.daemon.liveness_policy import FRESH, heard
from meshd.membership import Member, MemberState
from meshd.trust.keys import NodeKey, WgKey

NOW = 1_800_000_000


def plain_heard(
    now: int,
    members: Sequence[Member],
    own_key: bytes,
    connected: Iterable[bytes],
    handshakes: Mapping[bytes, float],
    fresh: float = FRESH,
) -> dict[bytes, int]:
    """The rule as it was first written: every standing member by node key, every WireGuard
    key's holders."""
    standing: dict[bytes, Member] = {
        m.node_key: m for m in members if m.state is not MemberState.REVOKED
    }
    standing.pop(own_key, None)
    holders: dict[bytes, list[bytes]] = {}
    for member in standing.values():
        holders.setdefault(member.wg_key, []).append(member.node_key)
    out: dict[bytes, int] = {}
    for wg_key, at in handshakes.items():
        owners = holders.get(wg_key, [])
        if len(owners) != 1 or not at or now - at > fresh:
            continue
        out[owners[0]] = min(now, int(at))
    for key in connected:
        if key in standing:
            out[key] = now
    return out


def member(n: int, wg: int, state: MemberState) -> Member:
    return Member(
        NodeKey(n.to_bytes(2, "big") * 16),
        None,
        f"m{n}",
        WgKey(wg.to_bytes(2, "big") * 16),
        ipaddress.IPv6Address(0xFD00 << 112 | n + 1),
        state,
        "",
        NOW - 10_000,
        NOW + 10_000,
        None,
        None,
    )


STATES = st.sampled_from(list(MemberState))


@settings(max_examples=300, deadline=None)
@given(
    specs=st.lists(st.tuples(st.integers(0, 7), STATES), max_size=12),
    own=st.integers(0, 12),
    connected=st.lists(st.integers(0, 14), max_size=6),
    handshakes=st.dictionaries(
        st.integers(0, 9),
        st.one_of(st.just(0.0), st.floats(NOW - 2 * FRESH, NOW + 100, allow_nan=False)),
        max_size=8,
    ),
)
def test_heard_is_the_plain_rule(
    specs: list[tuple[int, MemberState]],
    own: int,
    connected: list[int],
    handshakes: dict[int, float],
) -> None:
    # Node keys unique (a membership's members are), WireGuard keys shared at will.
    members = [member(n, wg, state) for n, (wg, state) in enumerate(specs)]
    own_key = NodeKey(own.to_bytes(2, "big") * 16)
    keys = [NodeKey(k.to_bytes(2, "big") * 16) for k in connected]
    shakes: dict[bytes, float] = {w.to_bytes(2, "big") * 16: at for w, at in handshakes.items()}
    found = heard(NOW, members, own_key, iter(keys), shakes)
    assert found == plain_heard(NOW, members, own_key, keys, shakes)
    assert list(found) == list(plain_heard(NOW, members, own_key, keys, shakes))


def test_a_pass_makes_no_table_of_every_member() -> None:
    """At 2,000 members with a few fresh handshakes and connections, a pass allocates a few
    kilobytes at its peak, where the plain rule made a table of every member (~150 bytes a
    member)."""
    members = [member(n, n, MemberState.ADMITTED) for n in range(2_000)]
    shakes: dict[bytes, float] = {m.wg_key: float(NOW - 5) for m in members[:8]}
    connected = [m.node_key for m in members[10:14]]
    gc.collect()
    tracemalloc.start()
    try:
        found = heard(NOW, members, members[-1].node_key, connected, shakes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(found) == 12
    assert peak < 8_000, peak
