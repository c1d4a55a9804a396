"""The work a store's load does per member (10,000 members are 20,000 records): each
credential's end worked out and its date read from its bytes as few times as will do, no
spreading through countersignatures from a certificate that leads nowhere, and a batch's
newer announcements compared with the member's once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import meshd.records.announcement as announcement_module
import meshd.trust.credential as credential_module
from meshd.membership import Membership, MemberState
from meshd.membership.lifecycle import Renewals
from meshd.membership.sponsor_graph import SponsorGraph
from meshd.records import Record, decode_record_untrusted
from meshd.records.body import not_after_at, not_after_of, seq_at, seq_of
from tests.factory import T0, Net, Node

NOW = T0 + 100
MEMBERS = 100


def _store(members: int = MEMBERS) -> tuple[Net, list[Node], list[Record]]:
    """What a node's store holds of ``members`` members the root certified, each with an
    announcement: decoded, as a load decodes them."""
    net = Net()
    nodes = [net.founder(f"m{i}") for i in range(members)]
    raws = [n.credential.raw for n in nodes]
    raws += [
        n.announce(net, NOW, endpoints=[f"198.18.0.{i}:51820"]).raw for i, n in enumerate(nodes)
    ]
    return net, nodes, [decode_record_untrusted(raw) for raw in raws]


def _counted(calls: list[int], function: Callable[..., Any]) -> Callable[..., Any]:
    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return function(*args, **kwargs)

    return counting


def _loaded(net: Net, records: list[Record]) -> Membership:
    state = net.state()
    batch = state.load(records, NOW, signatures_trusted=True)
    assert not batch.rejected
    return state


def test_a_load_works_out_each_members_end_once(monkeypatch: pytest.MonkeyPatch) -> None:
    net, nodes, records = _store()
    ends, reads, spreads = [0], [0], [0]
    monkeypatch.setattr(Renewals, "end", _counted(ends, Renewals.end))
    monkeypatch.setattr(SponsorGraph, "_spread", _counted(spreads, SponsorGraph._spread))
    monkeypatch.setattr(credential_module, "not_after_of", _counted(reads, not_after_of))
    # Read where it lies in its bytes held elided (meshd.records.elide): counted the same.
    monkeypatch.setattr(credential_module, "not_after_at", _counted(reads, not_after_at))
    state = _loaded(net, records)
    # Its end once a member as its certificate is merged (its date as decoded, not read
    # again), once as the set is settled (standing), and judging takes that one: it was
    # four times (merged, standing, judged twice); its date was read seven times.
    assert ends[0] == 2 * MEMBERS
    # Read as standing extends it, as it is judged, and as its announcement refreshes.
    assert reads[0] == 3 * MEMBERS
    # A certificate of a member that countersigned nothing spreads nowhere (it was twice).
    assert spreads[0] == 0
    # The members' views: judged on the ends the load worked out, not worked out again.
    assert [m.state for m in state.members(NOW)] == [MemberState.ADMITTED] * MEMBERS
    assert ends[0] == 2 * MEMBERS
    for node in nodes:
        entry = state._members[node.key.public]
        assert entry.standing is entry.credentials  # no renewal: the credential itself


def test_judging_again_works_out_no_end_while_the_judgements_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, _nodes, records = _store()
    state = _loaded(net, records)
    ends = [0]
    monkeypatch.setattr(Renewals, "end", _counted(ends, Renewals.end))
    assert state.tick(NOW + 10) == ()
    assert len(state.members(NOW + 10)) == MEMBERS
    assert ends[0] == 0  # it was two a member, each time


def test_a_batch_compares_each_newer_announcement_with_the_members_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, nodes, records = _store()
    state = _loaded(net, records)
    newer = [
        decode_record_untrusted(n.announce(net, NOW + 5, endpoints=[f"198.18.1.{i}:51820"]).raw)
        for i, n in enumerate(nodes)
    ]
    reads = [0]
    monkeypatch.setattr(announcement_module, "seq_of", _counted(reads, seq_of))
    monkeypatch.setattr(announcement_module, "seq_at", _counted(reads, seq_at))
    batch = state.merge_batch(newer, NOW + 5, announcements_checked=True)
    assert batch.new == MEMBERS
    assert not batch.rejected
    assert len(batch.events) == MEMBERS  # each says something new: Updated
    # Each new one's seq and the member's held one: read once each (it was twice each).
    assert reads[0] == 2 * MEMBERS
    for node, ann in zip(nodes, newer, strict=True):
        assert state._members[node.key.public].announcement is ann
    # Again: in the set already, left before anything is read.
    reads[0] = 0
    again = state.merge_batch(newer, NOW + 6, announcements_checked=True)
    assert again.new == 0
    assert reads[0] == 0


def _invited(members: int) -> tuple[Net, list[Record]]:
    """A founder's store of ``members`` members admitted under invites of ten uses, each
    countersigned by the founder or a member admitted before it (chains of sponsors)."""
    net = Net()
    state = net.state()
    founder = net.founder()
    state.ingest(founder.credential, T0 + 5)
    nodes = [founder]
    invite = net.invite(uses=10)
    for i in range(members):
        if i and i % 10 == 0:
            invite = net.invite(uses=10)
        node = net.join(state, nodes[i // 2], invite, f"m{i}")
        state.ingest(node.credential, T0 + 10)
        nodes.append(node)
    return net, [decode_record_untrusted(n.credential.raw) for n in nodes]


def test_a_load_of_members_admitted_under_invites_spreads_from_none_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, records = _invited(60)
    spreads = [0]
    monkeypatch.setattr(SponsorGraph, "_spread", _counted(spreads, SponsorGraph._spread))
    state = _loaded(net, records)
    # Each admission leads nowhere as it comes and its invite has uses left: placed one step
    # past its sponsor in one pass, not spread (it was spread twice: candidates, then uses).
    assert spreads[0] == 0
    assert len(state.members(NOW)) == 61
    # What spreading from the certificates finds.
    graph = state._standing
    candidate, distance = dict(graph._candidate), dict(graph._distance)
    assert len(distance) == 60
    assert max(distance.values()) == 5  # a tree of sponsors
    graph._recompute()
    assert (graph._candidate, graph._distance) == (candidate, distance)
