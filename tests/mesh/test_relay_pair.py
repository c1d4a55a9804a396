"""Both ends of a relayed pair rank the relays alike (meshd.mesh.relay_pair)."""

from __future__ import annotations

from meshd.mesh.relay_pair import pair_rank
from meshd.trust.keys import WgKey

A, B, R1, R2 = (WgKey(bytes([i]) * 32) for i in range(1, 5))


def test_the_rank_is_the_same_at_both_ends_and_differs_per_relay() -> None:
    assert pair_rank(A, B, R1) == pair_rank(B, A, R1)
    assert pair_rank(A, B, R2) == pair_rank(B, A, R2)
    assert pair_rank(A, B, R1) != pair_rank(A, B, R2)
    assert pair_rank(A, R1, R2) != pair_rank(A, B, R2)  # another pair, another order


def test_pairs_spread_over_the_relays() -> None:
    members = [WgKey(bytes([100 + i]) * 32) for i in range(40)]
    chosen = {min((R1, R2), key=lambda r: pair_rank(A, m, r)) for m in members}
    assert chosen == {R1, R2}
