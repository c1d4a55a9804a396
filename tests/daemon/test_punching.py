"""The punching service's handling of NAT messages (meshd/daemon/nat_messages.py), with stub
collaborators: who may send what, how often, and what a notice may change."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing
from nacl.signing import SigningKey

from meshd.daemon.endpoints import Endpoints
from meshd.daemon.nat_messages import HINT_WAIT, REQUEST_WINDOW, REQUESTS_PER_MEMBER
from meshd.daemon.punch_peer import _Peer
from meshd.daemon.punching import Punching
from meshd.errors import DecodeError
from meshd.gossip import nat
from meshd.gossip.peers import peer_id_of
from meshd.mesh.candidates import Candidate
from meshd.mesh.liveness_probe import Liveness
from meshd.wg.model import PeerConfig, PeerStatus
from tests.daemon.punching_support import fake_mesh, who

KEYS = [bytes(SigningKey.generate().verify_key) for _ in range(4)]
A, B, C, STRANGER = KEYS
MEMBERS = {A, B, C}


class Stream:
    def __init__(self, sender: bytes, data: bytes) -> None:
        self.remote_peer_id = peer_id_of(sender)
        self._data = data
        self.read: list[int | None] = []  # each read's size limit

    async def receive_frame(self, max_size: int | None = None) -> bytes:
        self.read.append(max_size)
        if max_size is not None and len(self._data) > max_size:
            raise DecodeError(f"frame of {len(self._data)} bytes exceeds the limit")
        return self._data


def service(connected: set[bytes]) -> tuple[Punching, list[tuple[bytes, nat.Message]]]:
    endpoints = Endpoints(
        overlay=None, listen_port=51820, configured=(), is_member=MEMBERS.__contains__
    )
    host: Any = SimpleNamespace(connected_peers=lambda: [peer_id_of(k) for k in connected])
    state: Any = SimpleNamespace(is_member=MEMBERS.__contains__)
    punching = Punching(host, state, SimpleNamespace(), endpoints, SimpleNamespace(), 25)  # type: ignore[arg-type]
    sent: list[tuple[bytes, nat.Message]] = []
    punching.messages.send = lambda key, message: sent.append((key, message))  # type: ignore[method-assign,assignment]
    return punching, sent


def serve(punching: Punching, sender: bytes, message: nat.Message | bytes, at: float) -> None:
    data = message if isinstance(message, bytes) else nat.encode_message(message)

    async def run() -> None:
        await punching.messages.serve(Stream(sender, data))  # type: ignore[arg-type]

    clock = trio.testing.MockClock()
    clock.jump(at)
    trio.run(run, clock=clock)


def test_messages_from_non_members_and_malformed_ones_are_dropped_and_counted() -> None:
    punching, sent = service({A, B, STRANGER})
    serve(punching, STRANGER, nat.PunchRequest(B), 1.0)
    serve(punching, STRANGER, nat.Report("203.0.113.9:51820", ""), 1.0)
    serve(punching, STRANGER, nat.PunchNotice(B, ("203.0.113.9:51820",)), 1.0)
    serve(punching, A, b"\x93\x09\x00\x00", 1.0)
    serve(punching, A, b"\x00" * 4096, 1.0)  # more than a message can be
    assert sent == []
    assert punching.endpoints.refused == {"message:not-member": 3, "message:malformed": 2}


def test_a_non_members_stream_is_not_read_and_a_members_no_further_than_one_message() -> None:
    """A NAT stream was read up to the host's frame limit (1 MiB) before its sender was
    looked at: 64 streams from one stranger held 72 MiB for their 10 s."""
    punching, _ = service({A, B, STRANGER})

    async def run(stream: Stream) -> None:
        await punching.messages.serve(stream)  # type: ignore[arg-type]

    stranger = Stream(STRANGER, nat.encode_message(nat.PunchRequest(B)))
    trio.run(run, stranger)
    assert stranger.read == []
    member = Stream(A, nat.encode_message(nat.Report("203.0.113.9:51820", "")))
    trio.run(run, member)
    assert member.read == [nat.MAX_MESSAGE]


def seen_at(punching: Punching, endpoints: dict[bytes, str], at: float) -> None:
    """The relay's WireGuard has a fresh session with each of these members (by node key:
    its peer made if none), at the endpoint given, as its step at ``at`` read it."""
    for key in endpoints:
        if key not in punching.peers:
            n = KEYS.index(key)
            punching.peers[key] = _Peer(who(bytes([200 + n]) * 32, f"m{n}"), [], 0.0)
    wall = time.time()
    stats = {
        punching.peers[key].wg_key: PeerStatus(
            PeerConfig(punching.peers[key].wg_key, endpoint, (), None), wall - 1, 1, 1
        )
        for key, endpoint in endpoints.items()
    }
    punching.messages.seen(stats, wall, at)


def test_a_members_punch_requests_are_forwarded_to_both_sides_at_a_bounded_rate() -> None:
    punching, sent = service({A, B})
    seen_at(punching, {A: "203.0.113.1:51820", B: "203.0.113.2:51820"}, 1.0)
    for n in range(REQUESTS_PER_MEMBER + 3):
        serve(punching, A, nat.PunchRequest(B), 1.0 + n * 0.1)
    assert len(sent) == 2 * REQUESTS_PER_MEMBER
    assert {(key, type(message)) for key, message in sent} == {
        (B, nat.PunchNotice),
        (A, nat.PunchNotice),
    }
    assert next(m.peer for k, m in sent if k == B and isinstance(m, nat.PunchNotice)) == A
    assert punching.endpoints.refused == {"punchrequest:rate": 3}
    serve(punching, A, nat.PunchRequest(B), 1.0 + REQUEST_WINDOW + 1)
    assert len(sent) == 2 * REQUESTS_PER_MEMBER + 2


def test_a_notice_naming_a_member_we_have_no_session_with_waits_for_one() -> None:
    """Members that joined together: A asks us for a punch with B before our WireGuard has a
    session with B. B is told at once (where we see A); A's notice waits for where we see B,
    and goes at the step that finds it, hint and all (sent at once, it carried none, and
    its round missed: the pair met a punch interval later). Without a session within
    HINT_WAIT it goes without a hint; a pair asked for again waits on, not longer."""
    punching, sent = service({A, B, C})
    seen_at(punching, {A: "203.0.113.1:51820"}, 1.0)
    serve(punching, A, nat.PunchRequest(B), 1.0)
    assert sent == [(B, nat.PunchNotice(A, ("203.0.113.1:51820",)))]
    serve(punching, A, nat.PunchRequest(B), 1.5)  # asked again: still one waiting
    assert len(punching.messages.waiting) == 1
    sent.clear()
    seen_at(punching, {A: "203.0.113.1:51820"}, 2.0)  # a step: no session with B yet
    assert sent == []
    seen_at(punching, {A: "203.0.113.1:51820", B: "203.0.113.2:51820"}, 2.5)
    assert sent == [(A, nat.PunchNotice(B, ("203.0.113.2:51820",)))]
    assert punching.messages.waiting == {}
    # C's session never comes: its notice goes without a hint once HINT_WAIT has passed.
    sent.clear()
    serve(punching, A, nat.PunchRequest(C), 10.0)
    seen_at(punching, {A: "203.0.113.1:51820"}, 10.0 + HINT_WAIT - 0.5)
    assert [k for k, _ in sent] == [C]
    seen_at(punching, {A: "203.0.113.1:51820"}, 10.0 + HINT_WAIT)
    assert sent[1:] == [(A, nat.PunchNotice(C, ()))]


def test_requests_for_a_member_not_connected_or_itself_go_nowhere() -> None:
    punching, sent = service({A})
    serve(punching, A, nat.PunchRequest(C), 1.0)
    serve(punching, A, nat.PunchRequest(A), 1.0)
    serve(punching, A, nat.PunchRequest(STRANGER), 1.0)
    assert sent == []
    assert punching.endpoints.refused == {
        "punchrequest:not-connected": 1,
        "punchrequest:target": 2,
    }


def test_a_notice_leaves_a_working_direct_path_alone_and_starts_a_round_otherwise() -> None:
    """The peer's own candidate is a private address elsewhere; WireGuard found it behind
    its NAT (roaming). A hostile member's hint would be tried first: not while packets from
    the peer keep coming, whatever the age of the handshake."""
    punching, _ = service({A, B})
    private = Candidate("local", ipaddress.ip_address("192.168.1.7"), 51820)
    working = _Peer(who(bytes(32), "b"), [private], 0.0, rx_at=99.0)  # the peer: its path
    working.update(0.5, 0.5, "93.184.216.34:51820")
    punching.peers[B] = working
    serve(punching, A, nat.PunchNotice(B, ("198.51.100.77:51820",)), 100.0)
    action = working.update(100.0, 0.5, "93.184.216.34:51820")
    assert (action.path, action.endpoint) == ("direct", "93.184.216.34:51820")
    assert punching.endpoints.refused == {"punchnotice:direct": 1}
    failed = _Peer(who(bytes([1]) * 32, "c"), [private], 0.0)
    failed.update(6.0, None, None)  # every candidate failed: on the relay
    punching.peers[C] = failed
    serve(punching, A, nat.PunchNotice(C, ("198.51.100.77:51820",)), 100.0)
    assert failed.update(100.0, None, None).endpoint == "198.51.100.77:51820"  # one round
    serve(punching, A, nat.PunchNotice(STRANGER, ()), 100.0)
    assert punching.endpoints.refused["punchnotice:unknown-peer"] == 1


def test_a_late_look_is_no_silence_a_notice_can_use() -> None:
    """Whether a path with Hellos on it works is known as of the device's last look: a
    busy event loop (a hostile member's flood of notices among its work) can put the next
    look seconds late, and the peer's packets that kept coming meanwhile are not seen yet.
    A notice in that gap leaves the path alone, as one right after the look does; silence
    seen by a look (nothing received for ``silent_after`` up to it) does not."""
    punching, _ = service({A, B})
    private = Candidate("local", ipaddress.ip_address("192.168.1.7"), 51820)
    working = _Peer(who(bytes(32), "b"), [private], 0.0, rx_at=99.0)  # heard at the look
    working.update(0.5, 0.5, "93.184.216.34:51820")
    punching.peers[B] = working
    punching.peer_paths.looked_at = 99.0
    silent_after = punching.silent_after
    late = 99.0 + silent_after + 3  # the next look is this late
    serve(punching, A, nat.PunchNotice(B, ("198.51.100.77:51820",)), late)
    action = working.update(late, 0.5, "93.184.216.34:51820")
    assert (action.path, action.endpoint) == ("direct", "93.184.216.34:51820")
    assert punching.endpoints.refused == {"punchnotice:direct": 1}
    # A look that found nothing received for longer than silent_after: the path is in doubt.
    punching.peer_paths.looked_at = late
    serve(punching, A, nat.PunchNotice(B, ("198.51.100.77:51820",)), late)
    assert punching.endpoints.refused == {"punchnotice:direct": 1}  # not refused this time


def test_a_notice_for_a_path_that_does_not_work_says_the_peer_is_online() -> None:
    """Babel stops asking the relays for a member no relay routed (offline, it seemed) but
    now and then: a member's notice that the peer tries to reach us is told to it, so that
    it asks at once. Not for a path that works (nothing to ask the relays for)."""
    punching, _ = service({A, B})
    heard: list[bytes] = []
    punching.on_member_heard = heard.append
    working = _Peer(who(bytes([2]) * 32, "b"), [], 0.0, rx_at=99.0)
    working.update(0.5, 0.5, "93.184.216.34:51820")
    punching.peers[B] = working
    serve(punching, A, nat.PunchNotice(B, ()), 100.0)
    assert heard == []
    failed = _Peer(who(bytes([3]) * 32, "c"), [], 0.0)
    failed.update(6.0, None, None)
    punching.peers[C] = failed
    serve(punching, A, nat.PunchNotice(C, ()), 100.0)
    assert heard == [bytes([3]) * 32]


def test_a_member_connected_again_with_a_silent_session_is_re_created_and_reported_to() -> None:
    """B's daemon restarted: its connection comes back while our WireGuard session with it
    has heard nothing for longer than a Hello interval and a second. Its peer is removed and
    created again as it was (WireGuard then initiates at once), once; and what we see of it
    is reported again at once (a restarted member lost every observation)."""
    from meshd.wg.model import PeerConfig, PeerStatus, RemovePeer, UpdatePeer

    connected: set[bytes] = {B}
    punching, _ = service(connected)
    wg_b = bytes([2]) * 32
    punching.peers[B] = path = _Peer(who(wg_b, "b"), [], 0.0, rx_at=10.0, heard_at=10.0)
    path.reported_endpoint, path.reported_at = "x:1", 9.0
    net = ipaddress.ip_network("fd00::b/128")
    status = PeerStatus(PeerConfig(wg_b, "203.0.113.6:51820", (net,), 25), 1000.0, 5, 5)
    stats = {wg_b: status}
    assert punching._reconnected(stats, 10.0, 2010.0) == []  # the first look: nobody doubted
    connected.clear()  # B stops; nothing heard from it since 10.0
    assert punching._reconnected(stats, 12.0, 2012.0) == []
    connected.add(B)  # ...and is back (its connection is new)
    punching.peers[B].rx_at = 13.0  # the silent direct path was declared lost: a new round
    assert punching._reconnected(stats, 13.0, 2013.0) == []  # silent 3 s: a Hello may be due
    peer = punching.peers[B]
    assert (peer.reported_endpoint, peer.reported_at) == ("", float("-inf"))  # again at once
    ops = punching._reconnected(stats, 15.5, 2015.5)  # silent 5.5 s (Hello 4 s + 1)
    assert ops[0] == RemovePeer(wg_b)
    assert isinstance(ops[1], UpdatePeer)
    assert (ops[1].endpoint, ops[1].persistent_keepalive, ops[1].allowed_ips) == (
        "203.0.113.6:51820",
        25,
        (net,),
    )
    assert punching._reconnected(stats, 16.5, 2016.5) == []  # once


def _quiet_path_without_hellos(punching: Punching, wg_b: bytes) -> tuple[_Peer, Liveness]:
    """B's direct path as two members that do not relay hold it: no Hellos on it (watched),
    judged by its liveness; the session's last packet came at 10.0."""
    path = _Peer(who(wg_b, "b"), [], 0.0, rx_at=10.0, heard_at=10.0)
    path.update(0.5, 0.5, "203.0.113.6:51820")
    path.watched = True
    live = path.liveness = Liveness(10.0, 5, 5, 25)
    punching.peers[B] = path
    return path, live


def test_a_first_connection_on_a_path_without_hellos_is_no_restart() -> None:
    """A member that joined: its session with us came up before (or as) its libp2p
    connection did, and with no Hellos between two members that do not relay, the session
    is silent once the handshake is done. Its first connection says nothing of a restart:
    no peer re-created, no "restarted?" line, its path not doubted."""
    connected: set[bytes] = set()
    punching, _ = service(connected)
    wg_b = bytes([2]) * 32
    _, live = _quiet_path_without_hellos(punching, wg_b)
    net = ipaddress.ip_network("fd00::b/128")
    stats = {wg_b: PeerStatus(PeerConfig(wg_b, "203.0.113.6:51820", (net,), 25), 1000.0, 5, 5)}
    assert punching._reconnected(stats, 10.0, 2010.0) == []  # the first look: B not connected yet
    connected.add(B)  # B's first connection
    due = live.next_check()
    for at in (11.0, 13.0, 15.5, 19.0):  # silent 9 s, within the watch's window
        assert punching._reconnected(stats, at, 2000 + at) == []
    assert live.next_check() == due  # not doubted
    assert punching.peer_paths.events.take() == ([], [])  # no line


def test_a_first_connection_where_hellos_flow_is_no_restart_either() -> None:
    """A member joins through a relay: its session with the relay comes up first (its
    WireGuard is programmed before its gossip starts), then its connection, and its Babel
    sends Hellos only once its daemon is all up, seconds later on a slow machine. The
    relay has never seen it connected: its first connection is no sign of a restart,
    however long the session stays silent (the relay logged it as "restarted?" and made
    it shake hands again)."""
    connected: set[bytes] = set()
    punching, _ = service(connected)
    wg_b = bytes([2]) * 32
    punching.peers[B] = _Peer(who(wg_b, "b"), [], 0.0, rx_at=10.0, heard_at=10.0)
    net = ipaddress.ip_network("fd00::b/128")
    stats = {wg_b: PeerStatus(PeerConfig(wg_b, "203.0.113.6:51820", (net,), 25), 2009.0, 5, 5)}
    assert punching._reconnected(stats, 10.0, 2010.0) == []
    connected.add(B)
    for at in (11.0, 13.0, 15.5, 19.0):  # silent 9 s, within the watch's window
        assert punching._reconnected(stats, at, 2000 + at) == []


def test_a_member_back_with_a_session_newer_than_its_going_is_not_doubted() -> None:
    """B went away and came back, and our session with it began after the last look that
    saw it connected: it restarted and its WireGuard reached ours (or the session was
    renewed meanwhile). Nothing to shake anew, whether Hellos flow or not."""
    connected: set[bytes] = {B}
    punching, _ = service(connected)
    wg_b = bytes([2]) * 32
    punching.peers[B] = _Peer(who(wg_b, "b"), [], 0.0, rx_at=10.0, heard_at=10.0)
    net = ipaddress.ip_network("fd00::b/128")
    config = PeerConfig(wg_b, "203.0.113.6:51820", (net,), 25)
    stats = {wg_b: PeerStatus(config, 1000.0, 5, 5)}
    assert punching._reconnected(stats, 10.0, 2010.0) == []
    connected.clear()
    assert punching._reconnected(stats, 12.0, 2012.0) == []  # gone (seen connected at 2010)
    connected.add(B)
    stats = {wg_b: PeerStatus(config, 2010.5, 5, 5)}  # a session begun since reached us
    for at in (13.0, 15.5, 19.0):
        assert punching._reconnected(stats, at, 2000 + at) == []


def test_a_member_connected_again_without_hellos_has_its_path_asked_not_re_created() -> None:
    """B was connected, went away and is back, on a direct path without Hellos: its
    silence is no sign of a restart (idle paths are silent), so the reconnect watch does not
    re-create it on silence; its path's judge is told to ask WireGuard (a probe at its next
    judgement, within its own budget), which a restarted member's dead session fails."""
    connected: set[bytes] = {B}
    punching, _ = service(connected)
    wg_b = bytes([2]) * 32
    _, live = _quiet_path_without_hellos(punching, wg_b)
    net = ipaddress.ip_network("fd00::b/128")
    stats = {wg_b: PeerStatus(PeerConfig(wg_b, "203.0.113.6:51820", (net,), 25), 1000.0, 5, 5)}
    assert punching._reconnected(stats, 10.0, 2010.0) == []
    connected.clear()
    assert punching._reconnected(stats, 12.0, 2012.0) == []
    assert live.next_check() > 13.0  # quiet 3 s: nothing due yet
    connected.add(B)  # connected again
    assert punching._reconnected(stats, 13.0, 2013.0) == []
    assert live.next_check() <= 13.0  # doubted: a probe at the next judgement
    assert live.judge(13.5, 5, 5, None, 25) == "probe"
    for at in (15.5, 19.0):  # silent 9 s: still no re-creation by the watch
        assert punching._reconnected(stats, at, 2000 + at) == []


def test_where_wireguard_sees_a_natted_peer_is_kept_for_the_next_start(tmp_path: Path) -> None:
    """B sits behind a symmetric NAT: it announces a private address only, and our
    WireGuard sees it at that NAT's mapping. That is kept in the state dir (and read back as
    B's first candidate by a new service); C is where its announcement says, not kept."""
    from meshd.daemon import last_endpoints
    from meshd.mesh.desired import Underlay
    from meshd.wg.model import PeerConfig, PeerStatus

    endpoints = Endpoints(
        overlay=None, listen_port=51820, configured=(), is_member=MEMBERS.__contains__
    )
    host: Any = SimpleNamespace(connected_peers=list)
    mesh: Any = SimpleNamespace(overlay_prefix=None, underlay=Underlay(frozenset({4})))
    state: Any = SimpleNamespace()
    announcer: Any = SimpleNamespace()
    punching = Punching(host, state, mesh, endpoints, announcer, 25, None, tmp_path)
    wg_b, wg_c = bytes([2]) * 32, bytes([3]) * 32
    punching.peers[B] = _Peer(who(wg_b, "b", ("192.168.5.2:51820",)), [], 0.0)
    punching.peers[C] = _Peer(who(wg_c, "c", ("203.0.113.7:51820",)), [], 0.0)
    net = ipaddress.ip_network("fd00::b/128")
    stats = {
        wg_b: PeerStatus(PeerConfig(wg_b, "198.51.100.5:40211", (net,), 25), 1000.0, 5, 5),
        wg_c: PeerStatus(PeerConfig(wg_c, "203.0.113.7:51820", (net,), 25), 1000.0, 5, 5),
    }
    punching._keep(stats, {wg_b, wg_c}, 10.0, 1010.0)
    assert last_endpoints.load(tmp_path, None) == {wg_b: "198.51.100.5:40211"}
    again = Punching(host, state, mesh, endpoints, announcer, 25, None, tmp_path)
    assert dict(again.kept.kept) == {wg_b: "198.51.100.5:40211"}

    # A second NATed peer's session begins a second later: the write waits (at most one
    # every few seconds), and the daemon stops before it: the stop writes it.
    wg_d = bytes([4]) * 32
    punching.peers[bytes([9]) * 32] = _Peer(who(wg_d, "d", ("192.168.6.2:51820",)), [], 0.0)
    stats[wg_d] = PeerStatus(PeerConfig(wg_d, "198.51.100.6:3301", (net,), 25), 1011.0, 5, 5)
    punching._keep(stats, {wg_b, wg_c, wg_d}, 11.0, 1011.0)
    assert wg_d not in last_endpoints.load(tmp_path, None)

    async def stop() -> None:
        punching.save_kept()

    trio.run(stop)
    assert last_endpoints.load(tmp_path, None) == {
        wg_b: "198.51.100.5:40211",
        wg_d: "198.51.100.6:3301",
    }


class _Device:
    """A WireGuard device with one peer whose endpoint the service's kicks move."""

    def __init__(self, status: Any) -> None:
        self.status = status
        self.sets: list[Any] = []

    async def get(self) -> Any:
        from meshd.wg.model import DeviceState

        return DeviceState(peers=(self.status,))

    async def set(self, ops: list[Any]) -> None:
        import dataclasses

        self.sets.append(ops)
        for op in ops:
            if getattr(op, "endpoint", None) is not None:
                config = dataclasses.replace(self.status.config, endpoint=op.endpoint)
                self.status = dataclasses.replace(self.status, config=config)


def _one_member(
    device: _Device, member: Any, wall: list[float], monkeypatch: pytest.MonkeyPatch
) -> tuple[Punching, Callable[[float, float], None]]:
    """The punching service over ``device`` with ``member`` alone, its wall clock
    ``wall[0]``, and a step at (trio time, wall time)."""
    from meshd.daemon import punching as punching_module

    mesh: Any = fake_mesh(device)
    state: Any = SimpleNamespace(feed=SimpleNamespace(current=SimpleNamespace(members=[member])))
    host: Any = SimpleNamespace(connected_peers=list)
    endpoints = Endpoints(overlay=None, listen_port=51820, configured=(), is_member=bool)
    punching = Punching(host, state, mesh, endpoints, SimpleNamespace(), 25, 1.0)  # type: ignore[arg-type]
    monkeypatch.setattr(punching_module, "time", SimpleNamespace(time=lambda: wall[0]))

    def step(now: float, at: float) -> None:
        wall[0] = at
        clock = trio.testing.MockClock()
        clock.jump(now)
        trio.run(punching.step, clock=clock)

    return punching, step


def test_a_candidate_a_round_set_is_kept_only_once_a_newer_handshake_answers_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """B's direct path at its NAT's mapping M falls silent; a round sets B's reflexive
    candidate X at t, while the last handshake (at t-10 s, through M) is still a session.
    The device shows X, but nothing answered there: M stays kept. A handshake at t+1 (through
    X) makes X kept."""
    from meshd.mesh.announced import encode_candidates
    from meshd.wg.model import PeerConfig, PeerStatus
    from tests.mesh.support import member

    mapping, x = "198.51.100.5:40211", "203.0.113.9:40000"
    lan = Candidate("local", ipaddress.ip_address("192.168.5.2"), 51820)
    reflexive = Candidate("reflexive", ipaddress.ip_address("203.0.113.9"), 40000, 2)
    b = member("b", endpoints=encode_candidates([reflexive, lan]))
    wg_b = bytes(b.wg_key)
    net = ipaddress.ip_network("fd00::b/128")
    device = _Device(PeerStatus(PeerConfig(wg_b, mapping, (net,), 25), 996.0, 5, 5))
    punching, step = _one_member(device, b, [0.0], monkeypatch)
    step(0.0, 1000.0)  # a session at the mapping
    assert dict(punching.kept.kept) == {wg_b: mapping}
    step(6.0, 1006.0)  # silent for longer than Hellos allow: a round sets X (t = 1006)
    assert device.status.config.endpoint == x
    assert device.status.last_handshake == 996.0  # t - 10 s, through the mapping
    step(7.0, 1007.0)
    assert dict(punching.kept.kept) == {wg_b: mapping}  # X answered by no handshake
    device.status = PeerStatus(PeerConfig(wg_b, x, (net,), 25), 1007.0, 9, 9)  # t + 1
    step(8.0, 1008.0)
    assert dict(punching.kept.kept) == {wg_b: x}


def test_a_handshake_landing_between_a_steps_read_and_its_write_is_not_hidden_by_the_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A round tries B's reflexive candidate X, then its LAN address L. The step that moves on
    to L reads the device (no handshake yet), and a handshake through X lands before it
    writes L: the device then shows L with a handshake older than L's setting. The next step
    settles on X, where it answered, and puts X back; it did not settle on L (unreachable
    from here) before."""
    from meshd.mesh.announced import encode_candidates
    from meshd.wg.model import PeerConfig, PeerStatus
    from tests.mesh.support import member

    x, lan_endpoint = "203.0.113.9:40000", "192.168.5.2:51820"
    lan = Candidate("local", ipaddress.ip_address("192.168.5.2"), 51820)
    reflexive = Candidate("reflexive", ipaddress.ip_address("203.0.113.9"), 40000, 2)
    b = member("b", endpoints=encode_candidates([reflexive, lan]))
    wg_b = bytes(b.wg_key)
    net = ipaddress.ip_network("fd00::b/128")
    wall = [0.0]

    class Racing(_Device):
        """Reading takes 10 ms; the handshake, when armed, lands just before a write."""

        armed = False

        async def get(self) -> Any:
            state = await super().get()
            wall[0] += 0.01
            return state

        async def set(self, ops: list[Any]) -> None:
            import dataclasses

            if self.armed:
                self.armed = False
                self.status = dataclasses.replace(self.status, last_handshake=wall[0] - 0.001)
            await super().set(ops)

    device = Racing(PeerStatus(PeerConfig(wg_b, None, (net,), 25), 0.0, 0, 0))
    punching, step = _one_member(device, b, wall, monkeypatch)
    step(0.0, 1000.0)
    assert device.status.config.endpoint == x
    device.armed = True
    step(5.5, 1005.5)  # X failed at the read; the handshake through X lands before L's write
    assert device.status.config.endpoint == lan_endpoint
    assert 1005.5 < device.status.last_handshake < 1005.51
    step(6.0, 1006.0)
    peer = punching.peers[bytes(b.node_key)]
    assert (peer.acted, peer.settled) == ("direct", x)
    assert device.status.config.endpoint == x  # put back


def test_a_punch_request_goes_to_the_freshest_connected_members_other_than_its_target() -> None:
    """The members that can carry a request are worked out once a step (_relay_pool): those
    connected with a fresh handshake, freshest first. A request for a peer goes to up to
    RELAYS of them, never to the peer itself; with none, it is not sent (asked again later)."""
    import time

    from meshd.daemon.nat_messages import RELAYS
    from meshd.wg.model import PeerConfig, PeerStatus

    connected = {A, B, C}
    punching, sent = service(connected)
    wall = time.time()
    wg = {k: bytes([i + 1]) * 32 for i, k in enumerate((A, B, C, STRANGER))}
    ages = {A: 5.0, B: 1.0, C: 30.0, STRANGER: 2.0}  # STRANGER: fresh, but not connected
    members: Any = {wg[k]: SimpleNamespace(name=f"m{i}", node_key=k) for i, k in enumerate(wg)}
    stats = {wg[k]: PeerStatus(PeerConfig(wg[k], None, (), None), wall - ages[k]) for k in wg}
    punching._relays = punching._relay_pool(members, stats, wall)
    peer = _Peer(who(wg[A], "m0"), [], 0.0)
    assert RELAYS == 2
    assert punching._request(peer, A)
    assert [key for key, _ in sent] == [B, C]  # freshest first, A itself left out
    assert all(message == nat.PunchRequest(A) for _, message in sent)
    sent.clear()
    assert punching._request(_Peer(who(wg[B], "m1"), [], 0.0), B)
    assert [key for key, _ in sent] == [A, C]
    sent.clear()
    punching._relays = punching._relay_pool(members, stats, wall + 3600)  # nobody fresh
    assert not punching._request(peer, A)
    assert sent == []


def test_a_notice_leaves_an_idle_direct_path_without_hellos_alone() -> None:
    """Two members that both do not relay speak no Babel: their working direct path may
    carry nothing but one side's keepalives for minutes (docs/nat.md, "Paths without
    Hellos"). A hostile member's notice must not move it because it is quiet: only the
    path's own judge (a probe gone unanswered) declares it lost."""
    punching, _ = service({A, B})
    private = Candidate("local", ipaddress.ip_address("192.168.1.7"), 51820)
    idle = working = _Peer(who(bytes(32), "b"), [private], 0.0, rx_at=40.0)
    working.update(0.5, 0.5, "93.184.216.34:51820")
    idle.liveness = Liveness(40.0, 0, 0, 25)  # judged without Hellos, not lost
    punching.peers[B] = idle
    serve(punching, A, nat.PunchNotice(B, ("198.51.100.77:51820",)), 100.0)  # 60 s quiet
    action = working.update(100.0, 0.5, "93.184.216.34:51820")
    assert (action.path, action.endpoint) == ("direct", "93.184.216.34:51820")
    assert punching.endpoints.refused == {"punchnotice:direct": 1}
    # The peer says it cannot reach us: the path is probed (WireGuard asked), not punched.
    assert idle.liveness.next_check() <= 100.0
    assert idle.liveness.judge(100.0, 0, 0, 0.5, 25) == "probe"
    idle.liveness.probed(100.0)
    assert idle.liveness.judge(101.0, 0, 0, 101.0, 25) == "alive"  # answered
    serve(punching, A, nat.PunchNotice(B, ("198.51.100.77:51820",)), 110.0)
    assert idle.liveness.next_check() >= 125.0  # one probe per keepalive interval, whatever
    assert punching.endpoints.refused == {"punchnotice:direct": 2}


def test_a_new_hello_interval_moves_every_silence_limit() -> None:
    """A SIGHUP's ``babel_hello_interval``: the silence after which a direct path is lost
    (four Hellos, 5 to 15 s), how often an idle step looks (a third of it), the paths'
    judge and the reconnect watch's silence all follow, as a start with it would have."""
    punching, _ = service(set())
    assert (punching.silent_after, punching.idle_step) == (15.0, 5.0)
    punching.set_hello_interval(1.5)
    assert (punching.silent_after, punching.idle_step) == (6.0, 2.0)
    assert punching.peer_paths.silent_after == 6.0
    assert punching.restarts.reconnects.silence == 2.5
    punching.set_hello_interval(None)
    assert (punching.silent_after, punching.peer_paths.silent_after) == (15.0, 15.0)
    assert punching.restarts.reconnects.silence == 5.0
