"""A programmed member's state is one object (its direct path and what the device showed
of it), and every path of the service shares one record of our side, set once a step."""

from __future__ import annotations

import gc
import ipaddress
import time
import tracemalloc
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from meshd.daemon import punch_restarts
from meshd.daemon.laid_paths import UNLAID
from meshd.daemon.punch_peer import _Peer
from meshd.mesh.candidates import Candidate
from meshd.mesh.desired import Underlay, choose_endpoint
from meshd.mesh.punch import KEEPALIVE, DirectPath
from meshd.wg.model import PeerConfig, PeerStatus
from tests.daemon.punching_support import who
from tests.daemon.test_punching_scale import service

LAN = Candidate("local", ipaddress.ip_address("192.168.1.7"), 51820)


def test_a_peer_is_its_own_path_without_a_dict() -> None:
    peer = _Peer(who(bytes(32), "b"), [LAN], 0.0, rx_at=3.0)
    assert isinstance(peer, DirectPath)
    assert peer.path is peer
    assert not hasattr(peer, "__dict__")
    assert (peer.rx_at, peer.heard_at, peer.liveness, peer.action) == (3.0, 0.0, None, None)
    assert peer.update(0.0, None, None).endpoint == "192.168.1.7:51820"
    assert peer.action is not None
    assert peer.action.path == "trying"


def test_every_peer_shares_the_service_side_set_once_a_step() -> None:
    punching, _ = service(20)
    behind: Any = lambda now: True  # noqa: E731
    punching.endpoints.behind_nat = behind  # type: ignore[method-assign]

    async def run() -> None:
        await punching.step()

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    side = punching.peer_paths.side
    assert len(punching.peers) == 20
    assert all(p._side is side for p in punching.peers.values())
    assert side.behind_nat
    assert all(p.path.behind_nat for p in punching.peers.values())


def test_peers_share_one_not_yet() -> None:
    a = _Peer(who(bytes(32), "a"), [LAN], 0.0)
    b = _Peer(who(bytes([1]) * 32, "b"), [LAN], 0.0)
    assert a.requested_at == a.put_at == a.reported_at == float("-inf")
    assert a.requested_at is b.requested_at is b.put_at is b.reported_at


def test_what_most_peers_hold_at_its_default_is_one_shared_object_until_set() -> None:
    a = _Peer(who(bytes(32), "a"), [LAN], 0.0)
    b = _Peer(who(bytes([1]) * 32, "b"), [LAN], 0.0)
    assert a._rare is b._rare  # none of its own
    a.liveness, a.requested_at, a.reported_endpoint = None, float("-inf"), ""  # the defaults
    assert a._rare is b._rare
    a.put_endpoint, a.put_at = "192.168.1.7:51820", 5.0  # every peer's at a start: its own
    assert a._rare is b._rare
    a.reported_endpoint, a.reported_at = "192.168.1.7:51820", 5.0
    assert a._rare is not b._rare
    assert (a.reported_endpoint, a.reported_at, a.requested_at) == (
        "192.168.1.7:51820",
        5.0,
        b.reported_at,
    )
    assert (b.reported_endpoint, b.reported_at) == ("", float("-inf"))
    assert a.punch(1.0) is None  # the path's own rare fields live there too
    assert b._rare is _Peer._RARE


def test_a_peer_is_a_few_slots_and_a_quiet_or_waiting_one_holds_nothing_else() -> None:
    # 36 slots at 1649f91 (320 bytes a peer in a trace): where a path stands in its rounds
    # one object, the rarely set fields one shared object, a chosen endpoint one field
    # then 22; its key, name and announced endpoints read from its member, its last
    # handshake from its path, its path and what it and the last step laid of its keepalive
    # and relay codes in one small int (17)
    slots = {s for cls in _Peer.__mro__ for s in getattr(cls, "__slots__", ())}
    # then the endpoint put on the device its own two fields, not in an object of its own
    # (96 bytes: every peer's is put at a start) (19); when it last heard the peer read from
    # when its silence counts from, but where a lost path set that anew (18: 184 -> 176 bytes);
    # its path's codes and its flags one int shared by the peers that hold its value (17);
    # when to look at its path again read from its round (16: 160 bytes)
    assert len(slots) <= 16
    assert {"wg_key", "name", "announced", "handshake", "acted", "laid_how", "heard_at"}.isdisjoint(
        slots
    )
    peer = _Peer(who(bytes(32), "b"), [LAN], 0.0)
    peer.update(0.0, None, None)
    assert peer.update(6.0, None, None).path == "relay"
    assert peer._rare is _Peer._RARE
    assert peer.update(7.0, 6.5, "192.168.1.7:51820").path == "direct"
    assert peer._rounds is None
    assert peer._rare is _Peer._RARE


def test_a_chosen_endpoint_is_worked_out_once_an_announcement_and_underlay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    punching, backend = service(3)
    calls: list[object] = []
    real = choose_endpoint

    def counted(announced: Any, underlay: Any) -> Any:
        calls.append(announced)
        return real(announced, underlay)

    monkeypatch.setattr(punch_restarts, "choose_endpoint", counted)
    wall = 1.0e12
    for key in backend.peers:  # a fresh session on each, where no announcement says
        backend.peers[key] = PeerStatus(PeerConfig(key, "203.0.113.9:4000", (), 25), wall)

    async def run() -> None:
        await punching.step()

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(calls) == 3
    keep, peers, stats = punching.restarts.keep, punching.peers, backend.peers
    keep(peers, stats, list(peers), 1.0, wall)
    assert len(calls) == 3  # not again
    first = punching.state.feed.current.members[0]
    announcement: Any = SimpleNamespace(endpoints=("198.51.100.1:51820",))
    punching.peer_paths.peer(replace(first, announcement=announcement), first.wg_key, 2.0)
    keep(peers, stats, list(peers), 2.0, wall)
    assert calls[3:] == [("198.51.100.1:51820",)]  # its new announcement's
    assert peers[first.node_key].chosen == "198.51.100.1:51820"
    punching.mesh.underlay = Underlay(frozenset({4}), ())  # an equal one, not the same
    keep(peers, stats, list(peers), 3.0, wall)
    assert len(calls) == 7  # each peer's again, under the new underlay


def test_a_peer_s_path_and_what_it_laid_are_codes_in_one_shared_int() -> None:
    peer = _Peer(who(bytes(32), "b"), [LAN], 0.0)
    assert (peer.acted, peer._shown_how, peer.laid_how) == (None, 0, UNLAID)
    assert peer.lay()
    assert (peer.laid_endpoint, peer.laid_how, peer.laid_since) == (None, 0, None)
    peer.update(0.0, None, None)  # trying, a keepalive, the relay (hopeless: a LAN elsewhere)
    assert (peer.acted, peer._shown_how, peer.laid_how) == ("trying", 2 * KEEPALIVE + 1, 0)
    peer.trying_since = 5.0
    assert peer.lay()
    assert not peer.lay()
    assert (peer.laid_endpoint, peer.laid_how, peer.laid_since) == (LAN.endpoint, 51, 5.0)
    peer.update(6.0, None, None)  # failed: on the relay, no keepalive
    assert (peer.acted, peer._shown_how, peer.laid_how) == ("relay", 1, 2 * KEEPALIVE + 1)
    assert peer.lay()
    assert (peer.laid_how, peer.laid_since) == (1, None)
    other = _Peer(who(bytes([1]) * 32, "c"), [LAN], 0.0)  # the same, with its flags
    other.update(0.0, None, None)
    other.lay()
    other.update(6.0, None, None)
    other.lay()
    assert other._bits > 256
    assert other._bits is peer._bits  # one object for every peer that holds it


def test_what_peers_show_of_a_handshake_is_read_from_the_path_and_kept_once_created_anew() -> None:
    """The snapshot's last handshake is the path's (on the daemon's clock, shown as Unix
    time); a peer the device then shows created anew (a hushed round, a dead session
    dropped) keeps the one its path saw, which the device forgot."""
    punching, backend = service(2)
    key = next(iter(backend.peers))
    shown: list[float | None] = []

    async def run() -> None:
        wall = time.time()
        backend.peers[key] = PeerStatus(PeerConfig(key, "203.0.113.9:4000", (), 25), wall - 30)
        await punching.step()
        shown.append(_shown(punching, key))
        await trio.sleep(1.0)
        backend.peers[key] = PeerStatus(PeerConfig(key, "203.0.113.9:4000", (), 25))  # anew
        await punching.step()
        shown.append(_shown(punching, key))
        # What meshd peers and the metrics read of it, one member at a time: the same.
        (node_key,) = [k for k, p in punching.peers.items() if p.wg_key == key]
        assert punching.last_handshake(node_key) == pytest.approx(shown[-1], abs=0.1)
        assert punching.last_handshake(bytes(32)) is None  # no such member
        shown.append(wall - 30)

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    first, again, device = shown
    assert first is not None
    assert device is not None
    assert abs(first - device) < 0.5
    assert again is not None
    assert abs(again - device) < 1.5  # the fake clock ran 1 s the wall's did not


def _shown(punching: Any, key: bytes) -> float | None:
    views = punching.peer_paths.snapshot().peers
    (view,) = [v for v in views if punching.peers[v.node_key].wg_key == key]
    return view.last_handshake  # type: ignore[no-any-return]


def test_a_peer_holds_its_member_s_announced_candidates_as_announced() -> None:
    """Announced candidates ranked as announced: the announcement's own tuple, no candidate
    of the peer's own (two cost 168 bytes a peer at abf6d2c), and a new announcement that
    says the same: its tuple, not the old one's."""
    punching, _ = service(2)
    paths = punching.peer_paths
    first = punching.state.feed.current.members[0]
    endpoints = ("203.0.113.7:40000", "192.168.1.7:51820", "kinds=rl")
    announcement: Any = SimpleNamespace(endpoints=endpoints)
    member = replace(first, announcement=announcement)
    peer = paths.peer(member, member.wg_key, 0.0)
    assert peer._ranked is endpoints
    assert [(c.kind, c.endpoint) for c in peer.candidates] == [
        ("reflexive", "203.0.113.7:40000"),
        ("local", "192.168.1.7:51820"),
    ]
    assert peer.update(0.0, None, None).endpoint == "203.0.113.7:40000"
    again: Any = SimpleNamespace(endpoints=tuple(e for e in endpoints))  # equal, not the same
    assert again.endpoints is not endpoints
    assert paths.peer(replace(member, announcement=again), member.wg_key, 1.0) is peer
    assert peer._ranked is again.endpoints
    assert peer.state == "trying"  # the same candidates: its round goes on
    assert peer.update(6.0, None, None).endpoint == "192.168.1.7:51820"
    # Ranked otherwise than announced (the LAN address first: one of our networks), its
    # texts and kinds in a tuple of its own
    punching.mesh.underlay = Underlay(frozenset({4}), (ipaddress.ip_network("192.168.1.0/24"),))
    other = punching.state.feed.current.members[1]
    lan_first = paths.peer(replace(other, announcement=announcement), other.wg_key, 7.0)
    assert lan_first._ranked == ("192.168.1.7:51820", "203.0.113.7:40000", "kinds=lr")
    assert lan_first.update(7.0, None, None).endpoint == "192.168.1.7:51820"


def test_when_a_peer_last_heard_is_its_silence_s_start_until_a_lost_path_sets_that_anew() -> None:
    peer = _Peer(who(bytes(32), "b"), [LAN], 0.0, rx_at=3.0, heard_at=3.0)
    assert (peer.rx_at, peer.heard_at) == (3.0, 3.0)
    assert peer._rare is _Peer._RARE  # nothing of its own
    peer.heard(5.0)  # its received bytes grew
    assert (peer.rx_at, peer.heard_at, peer._rare is _Peer._RARE) == (5.0, 5.0, True)
    peer.rx_at = 9.0  # a lost path: its silence counts afresh, when it last heard is kept
    assert (peer.rx_at, peer.heard_at) == (9.0, 5.0)
    peer.rx_at = 12.0
    assert (peer.rx_at, peer.heard_at) == (12.0, 5.0)
    peer.heard(13.0)
    assert (peer.rx_at, peer.heard_at) == (13.0, 13.0)
    other = _Peer(who(bytes([1]) * 32, "c"), [LAN], 0.0, rx_at=3.0)  # heard at 0.0
    assert (other.rx_at, other.heard_at) == (3.0, 0.0)


def test_a_step_of_thousands_of_lines_holds_a_few_and_counts_the_rest() -> None:
    """A first step at 10,000 members: four lines held and the rest counted by kind while
    DEBUG is off, not 10,000 tuples and strings (~1.5 MB) until the step logs."""
    from meshd.daemon.peer_paths import PeerPaths

    paths = PeerPaths(SimpleNamespace(), SimpleNamespace(), SimpleNamespace(), 15.0, 1.0)  # type: ignore[arg-type]
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(10_000):
            kind = "direct" if i % 7 == 0 else "trying"
            paths.events.append((kind, f"m{i}: {kind} at 198.18.{i >> 8}.{i & 255}:51820"))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 4_000, held
    assert len(paths.events) == 10_000
    info, debug = paths.events.take()
    assert info == [
        "m0: direct at 198.18.0.0:51820",
        "m1: trying at 198.18.0.1:51820",
        "m2: trying at 198.18.0.2:51820",
        "9997 more members: 8569 trying, 1428 direct (each at DEBUG; every path in `meshd peers`)",
    ]
    assert debug == []
    assert len(paths.events) == 0


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 40])
def test_a_steps_lines_are_those_summary_makes_of_every_event(n: int) -> None:
    from meshd.daemon.peer_paths import StepLines
    from meshd.mesh.punch import summary

    events = [(("trying", "relay", "direct")[i * i % 3], f"m{i}: line {i}") for i in range(n)]
    lines = StepLines(lambda: True)
    for event in events:
        lines.append(event)
    assert lines.take() == summary(events)
    assert lines.take() == ([], [])
