"""A member admitted by one whose membership has ended (it ran out, left, or was revoked
with the member listed) keeps standing on every node: running, restarted, or joined later.

Sponsorship is judged without dates, so the running nodes held the member admitted; but an
ended credential was refused as it was merged, and a load of the store, or a sync, reads the
sponsor's credential before what it countersigned: the sponsor's row was refused and deleted,
the member's admission waited for a sponsor that never came, and it was deleted too. So the
member vanished from every node that restarted or joined, for good (anti-entropy could not
bring the ended credential back). Now an ended credential is kept aside, and merged once a
record that waits for its key comes.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from meshd.membership import Membership, MemberState, Outcome
from meshd.node.store import Store
from meshd.records import Record, Role, make_leave, make_renewal, make_revocation
from meshd.trust.invites import enroll
from meshd.trust.keys import SigningKey, WireGuardKey
from tests.factory import DAY, T0
from tests.trust.test_hostile import World

NOW = T0 + 41 * DAY


def _network(how: str) -> tuple[World, Membership, list[Outcome], bytes, bytes]:
    """M joined for 30 days and admitted H (a year) on day 10; the root renewed M on day
    25 to day 120; on day 40 M is revoked (listing H), leaves, or (``ends``) is left to
    run out without the renewal."""
    w = World()
    w.state = state = w.net.state()
    stored = [state.ingest(w.founder.credential, T0 + 5)]  # what the store is given
    short = w.net.invite(uses=1, lifetime=DAY, member_ttl=30 * DAY)
    m = w.net.join(state, w.founder, short, "M", at=T0 + 10)
    stored.append(state.ingest(m.credential, T0 + 20))
    invite = w.net.invite(uses=1, lifetime=20 * DAY, at=T0 + 5 * DAY)
    enrollment = enroll(
        invite, node_key=SigningKey.generate().public, wg_key=WireGuardKey.generate().public,
        name="H", now=T0 + 10 * DAY,
    )  # fmt: skip
    h = state.sponsor(m.key, enrollment, T0 + 10 * DAY)
    stored.append(state.ingest(h, T0 + 10 * DAY))
    if how != "ends":
        renewal = make_renewal(
            w.net.root, network_id=w.nid, subject=m.key.public,
            issued_at=T0 + 25 * DAY, not_after=T0 + 120 * DAY,
        )  # fmt: skip
        stored.append(state.ingest(renewal, T0 + 25 * DAY))
    day40 = T0 + 40 * DAY
    if how == "revoked":
        last: Record = make_revocation(
            w.net.root, network_id=w.nid, target=m.key.public, target_role=Role.MEMBER,
            issued_at=day40, expires_at=2**64 - 1, reason="", chain=(),
            sponsored=state.sponsored_by(m.key.public),
        )  # fmt: skip
    elif how == "left":
        last = make_leave(m.key, network_id=w.nid, issued_at=day40, reason="bye")
    else:
        return w, state, stored, m.key.public, enrollment.node_key
    stored.append(state.ingest(last, day40))
    return w, state, stored, m.key.public, enrollment.node_key


def _state_of(state: Membership, key: bytes) -> MemberState | None:
    member = state.member(key, NOW)
    return None if member is None else member.state


@pytest.mark.parametrize("how", ["revoked", "left", "ends"])
def test_a_member_admitted_by_an_ended_sponsor_stands_after_a_restart(
    tmp_path: Path, how: str
) -> None:
    w, running, stored, _, h = _network(how)
    store = Store(tmp_path / "meshd.db")
    store.set_meta("network", w.net.network.raw)
    store.apply(stored)  # written as the records came
    store.close()
    running.tick(NOW)
    assert _state_of(running, h) is MemberState.ADMITTED
    store = Store(tmp_path / "meshd.db")
    restarted = w.net.state()
    store.load_into(restarted, NOW)
    assert _state_of(restarted, h) is MemberState.ADMITTED  # before: unknown (deleted)
    store.close()
    store = Store(tmp_path / "meshd.db")  # and it stays in the store for the next one
    again = w.net.state()
    store.load_into(again, NOW)
    store.close()
    assert _state_of(again, h) is MemberState.ADMITTED
    assert again.digest() == restarted.digest()


@pytest.mark.parametrize("how", ["revoked", "left", "ends"])
def test_a_node_that_joins_later_holds_the_member_whatever_the_order(how: str) -> None:
    w, running, _, m, h = _network(how)
    held = [raw for rid in running.record_ids() if (raw := running.record(rid)) is not None]
    orders = list(itertools.permutations(held)) if len(held) <= 5 else []
    rng = random.Random(3)
    orders += [tuple(rng.sample(held, len(held))) for _ in range(20)]
    digests = set()
    for order in orders:
        joined = w.net.state()
        joined.ingest_batch(list(order), NOW)
        assert _state_of(joined, h) is MemberState.ADMITTED, order
        digests.add(joined.digest())
        # One record at a time, as gossip brings them (a batch takes credentials first):
        # a revocation of the sponsor before its member must not drop its credential kept
        # aside (it dropped the sponsor's own records waiting, this one with them).
        joined = w.net.state()
        for raw in order:
            joined.ingest_batch([raw], NOW)
        assert _state_of(joined, h) is MemberState.ADMITTED, order
        assert _state_of(joined, m) is not MemberState.ADMITTED
        digests.add(joined.digest())
    assert len(digests) == 1
