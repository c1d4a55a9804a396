"""Whether a member relays is news: an announcement that changes only ``relays`` is an
Updated event (Babel on every member acts on it), on the hot path (no prefixes), the
general one (prefixes) and in a batch; a refresh that keeps it is none. The member's view
carries it: ``member.announcement.relays``."""

from __future__ import annotations

import ipaddress

import pytest

from meshd.membership import Membership, Updated
from meshd.records import Announcement
from tests.factory import T0, Net, Node

NOW = T0 + 100


def _network() -> tuple[Net, Node, Membership]:
    net = Net()
    founder = net.founder()
    state = net.state()
    state.ingest(founder.credential, NOW)
    return net, founder, state


def _relays_of(state: Membership, node: Node, now: int) -> bool:
    member = state.member(node.key.public, now)
    assert member is not None
    assert member.announcement is not None
    return member.announcement.relays


def _ingest(state: Membership, ann: Announcement, now: int, batch: bool) -> tuple[object, ...]:
    if batch:
        merged = state.merge_batch([ann], now)
        assert merged.new == 1
        return merged.events
    outcome = state.ingest(ann, now)
    assert outcome.new
    return outcome.events


@pytest.mark.parametrize("batch", [False, True], ids=["one", "batch"])
@pytest.mark.parametrize("with_prefixes", [False, True], ids=["hot-path", "general"])
def test_a_change_of_relays_alone_is_an_updated_event(batch: bool, with_prefixes: bool) -> None:
    net, founder, state = _network()
    own = ipaddress.IPv6Network(f"{state.member(founder.key.public, NOW).overlay}/128")  # type: ignore[union-attr]
    kw: dict[str, object] = {"endpoints": ["192.0.2.1:51820"]}
    if with_prefixes:
        kw["prefixes"] = [own]
    state.ingest(founder.announce(net, NOW, **kw), NOW)
    assert _relays_of(state, founder, NOW) is False
    now = NOW
    for relays in (True, True, False, False, True):
        now += 5
        before = _relays_of(state, founder, now)
        events = _ingest(state, founder.announce(net, now, relays=relays, **kw), now, batch)
        if relays != before:
            assert len(events) == 1
            assert isinstance(events[0], Updated)
            assert events[0].member.announcement is not None
            assert events[0].member.announcement.relays is relays
        else:
            assert events == ()  # a bare refresh
        assert _relays_of(state, founder, now) is relays
