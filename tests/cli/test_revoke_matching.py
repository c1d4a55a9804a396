"""Which member ``meshd revoke REF`` names: :func:`matching` reads each member's fields only
when its stage comes (names, then WireGuard keys, then node ids), and picks what
:func:`resolve_member` picks from a candidate made of every member (the daemon made one of
each of 10,000: ~0.1 s)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from meshd.cli.output import b64
from meshd.cli.revoking import _Candidate, matching, resolve_member
from meshd.errors import UsageError


@dataclass(frozen=True)
class Seen:
    """A member's view as matching reads it, counting the node ids worked out."""

    name: str
    wg_key: bytes
    node_key: bytes
    node_id_text: str
    asked: list[str]

    @property
    def node_id(self) -> str:
        self.asked.append(self.name)
        return self.node_id_text


KEYS = [bytes([i]) * 32 for i in range(4)]
IDS = ["abcd1234", "abcd9999", "ffff0000", "0123aaaa"]
NAMES = ["alpha", "beta", "abcd", "gamma"]


def _members(picks: list[tuple[int, int, int]], asked: list[str]) -> list[Seen]:
    return [
        Seen(NAMES[n], KEYS[k], bytes([i]) * 32, IDS[i % len(IDS)], asked)
        for i, (n, k, _) in enumerate(picks)
    ]


def _outcome(candidates: list[_Candidate], ref: str) -> bytes | str:
    try:
        return resolve_member(candidates, ref).node_key
    except UsageError as exc:
        return str(exc)


REFS = st.sampled_from(
    [*NAMES, *(b64(k) for k in KEYS), "abcd", "ABCD12", "ffff", "abc", "zzzz", b64(KEYS[0])[:-1]]
)


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)), max_size=8), REFS
)
def test_matching_picks_what_resolving_every_member_picks(
    picks: list[tuple[int, int, int]], ref: str
) -> None:
    asked: list[str] = []
    members = _members(picks, asked)

    def candidate(m: Seen) -> _Candidate:
        return _Candidate(m.node_key, m.node_id_text, m.name, b64(m.wg_key))

    every = _outcome([candidate(m) for m in members], ref)
    assert _outcome([candidate(m) for m in matching(members, ref)], ref) == every


def test_a_name_found_reads_no_node_id() -> None:
    asked: list[str] = []
    members = _members([(0, 0, 0), (1, 1, 1), (2, 2, 2)], asked)
    assert [m.name for m in matching(members, "beta")] == ["beta"]
    assert [m.name for m in matching(members, b64(KEYS[2]))] == ["abcd"]
    assert asked == []  # no node id worked out for either
    assert matching(members, "ffff0") == [members[2]]
    assert len(asked) == 3
