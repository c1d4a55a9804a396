"""KeySets (meshd/membership/key_sets.py) against a dict of ordered sets, by property."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshd.membership.key_sets import KeySets

KEYS = st.sampled_from([bytes([i]) * 4 for i in range(4)])
OPS = st.lists(st.tuples(st.booleans(), KEYS, KEYS), max_size=60)


@given(OPS)
def test_key_sets_hold_what_a_dict_of_ordered_sets_holds(
    ops: list[tuple[bool, bytes, bytes]],
) -> None:
    sets = KeySets()
    model: dict[bytes, dict[bytes, None]] = {}
    for add, key, member in ops:
        if add:
            sets.add(key, member)
            model.setdefault(key, {})[member] = None
        else:
            sets.discard(key, member)
            if key in model:
                model[key].pop(member, None)
                if not model[key]:
                    del model[key]
        assert list(sets) == list(model)
        assert len(sets) == len(model)
        for key_ in {k for _, k, _ in ops}:
            assert list(sets.get(key_)) == list(model.get(key_, ()))
            assert sets.count(key_) == len(model.get(key_, ()))
            assert (key_ in sets) == (key_ in model)


def test_a_key_with_one_member_holds_that_member_alone() -> None:
    sets = KeySets()
    a, b = b"a" * 32, b"b" * 32
    sets.add(b"k", a)
    sets.add(b"k", a)
    assert sets._table[b"k"] is a  # no dict of one
    sets.add(b"k", b)
    assert sets.get(b"k") == {a: None, b: None}
    sets.discard(b"k", a)
    assert sets._table[b"k"] is b  # back to the member alone
    sets.discard(b"k", b)
    assert b"k" not in sets
    assert sets.get(b"k") == ()
