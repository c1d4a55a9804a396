"""A direct path without Babel's Hellos (meshd/mesh/liveness_probe.py), on a fake clock.

``Wire`` plays both ends of one WireGuard session as the implementations behave: a persistent
keepalive goes out when nothing was sent or received for its interval (so on an idle path
only one side sends them), data is answered by a passive keepalive 10 s later, the session's
initiator renews it when it sends 120 s into it or receives 165 s into it, and a peer
re-created (a probe) loses its counters and initiates at once. Each end is judged by its
own ``Liveness`` at its own steps, and a probe re-creates that end's peer.
"""

from __future__ import annotations

import ipaddress
import math
import random

import pytest

from meshd.mesh.liveness_probe import (
    ACTIVE_QUIET,
    ANSWER_WAIT,
    PASSIVE,
    QUIET_MAX,
    Liveness,
)

K = 25
D = 0.02  # one-way delay
STEP = 5.0  # the service's idle step


class End:
    def __init__(self, first: float) -> None:
        self.rx = self.tx = 0
        self.timer = first  # the next persistent keepalive
        self.passive = math.inf  # a passive keepalive due (data received)
        self.handshake: float | None = 0.0
        self.initiator = False
        self.live = Liveness(0.0, 0, 0, K)
        self.next_step = STEP
        self.lost: list[float] = []
        self.probes: list[float] = []
        self.heard_at = 0.0  # when something last arrived (the simulation's truth)


class Wire:
    def __init__(self, phase: float, drop: float = 0.0, seed: int = 0) -> None:
        self.a, self.b = End(K), End(phase)
        self.a.initiator = True
        self.session_at = 0.0
        self.dead_at = math.inf
        self.drop = drop
        self.rng = random.Random(seed)
        self.now = 0.0

    def up(self, t: float) -> bool:
        return t < self.dead_at

    def other(self, end: End) -> End:
        return self.b if end is self.a else self.a

    def deliver(self, src: End, size: int, t: float, lossy: bool = True) -> bool:
        src.tx += size
        if not self.up(t) or (lossy and self.rng.random() < self.drop):
            return False
        dst = self.other(src)
        dst.rx += size
        dst.heard_at = t + D
        dst.timer = t + D + K  # any packet received pushes the keepalive back
        if dst.initiator and t - self.session_at >= 165:
            self.handshake(dst, t + D)
        return True

    def handshake(self, i: End, t: float) -> None:
        r = self.other(i)
        i.tx += 148
        i.timer = t + K
        if not self.up(t):
            return
        r.rx += 148
        r.tx += 92
        i.rx += 92
        i.tx += 32  # the initiator confirms the session at once
        r.rx += 32
        i.handshake = r.handshake = t + D
        i.heard_at, r.heard_at = t + 2 * D, t + 3 * D
        i.initiator, r.initiator = True, False
        self.session_at = t
        i.timer, r.timer = t + 2 * D + K, t + 3 * D + K

    def keepalive(self, end: End, t: float) -> None:
        end.timer = t + K
        if end.initiator and t - self.session_at >= 120:
            self.handshake(end, t)
        else:
            self.deliver(end, 32, t)

    def data(self, src: End, t: float) -> None:
        src.timer = t + K
        if self.deliver(src, 80, t, lossy=False):
            dst = self.other(src)
            dst.passive = min(dst.passive, t + D + PASSIVE)

    def judge(self, end: End, t: float) -> None:
        live = end.live
        verdict = live.judge(t, end.rx, end.tx, end.handshake, K)
        if verdict == "probe":
            live.probed(t)
            end.probes.append(t)
            end.rx = end.tx = 0  # the peer re-created: new counters, no session
            end.handshake = None
            self.handshake(end, t)
        elif verdict == "lost":
            end.lost.append(t)
            end.next_step = math.inf  # a round starts: no longer judged here
            return
        end.next_step = t + (1.0 if live.probing else STEP)

    def run(self, until: float, sending: float | None = None) -> None:
        """Until ``until``, with the A side sending data every ``sending`` s if given."""
        data_at = self.now if sending is not None else math.inf
        while True:
            a, b = self.a, self.b
            events = [
                (a.timer, 0, a),
                (b.timer, 1, b),
                (a.passive, 2, a),
                (b.passive, 3, b),
                (a.next_step, 4, a),
                (b.next_step, 5, b),
                (data_at, 6, a),
            ]
            t, kind, end = min(events, key=lambda e: (e[0], e[1]))
            if t > until:
                self.now = until
                return
            if kind < 2:
                self.keepalive(end, t)
            elif kind < 4:
                end.passive = math.inf
                self.deliver(end, 32, t, lossy=False)
            elif kind < 6:
                self.judge(end, t)
            else:
                assert sending is not None
                self.data(a, t)
                data_at = t + sending


PHASES = [0.0, 0.01, 3.0, 12.5, 24.99, 25.0, 37.0]


@pytest.mark.parametrize("phase", PHASES)
def test_an_idle_working_path_is_never_declared_lost_and_soon_costs_no_probes(
    phase: float,
) -> None:
    wire = Wire(phase)
    wire.run(3 * 3600.0)
    assert wire.a.lost == wire.b.lost == []
    # Only the side that sends keepalives is ever quiet; its probes back off until the
    # session's own renewals answer for the peer.
    assert len(wire.a.probes) + len(wire.b.probes) <= 4, (wire.a.probes, wire.b.probes)
    late = [t for t in wire.a.probes + wire.b.probes if t > 600]
    assert late == []


@pytest.mark.parametrize("seed", range(4))
def test_a_keepalive_lost_now_and_then_is_asked_about_never_declared_lost(seed: int) -> None:
    wire = Wire(phase=7.0, drop=0.01, seed=seed)
    wire.run(6 * 3600.0)
    assert wire.a.lost == wire.b.lost == []
    probes = len(wire.a.probes) + len(wire.b.probes)
    assert probes <= 6 * 3600 / 600, probes  # a few after each swap of roles, not a stream


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("dies", [1000.0, 1003.7, 1012.2, 1021.9])
def test_a_path_that_dies_while_idle_is_declared_lost_after_a_keepalive_and_a_probe(
    phase: float, dies: float
) -> None:
    wire = Wire(phase)
    wire.run(dies)
    wire.dead_at = dies
    heard = {id(e): e.heard_at for e in (wire.a, wire.b)}
    wire.run(dies + 400)
    first = []
    for end in (wire.a, wire.b):
        assert len(end.lost) == 1
        first.append(end.lost[0] - heard[id(end)])
    # One side watches the other's keepalives: it asks, and declares the path lost, within
    # a keepalive interval, the margin, a probe's wait and a step of the last it received.
    assert min(first) <= K + PASSIVE + ANSWER_WAIT + 2 * STEP, first
    # The other (it only sent) within its backed-off limit at worst.
    assert max(first) <= QUIET_MAX + ANSWER_WAIT + 2 * STEP, first


@pytest.mark.parametrize("dies", [600.0, 604.3, 611.1])
def test_a_path_that_dies_while_sending_is_lost_about_15_s_after_the_last_thing_received(
    dies: float,
) -> None:
    wire = Wire(phase=3.0)
    wire.run(dies, sending=1.0)  # one way: answered by passive keepalives only
    assert wire.a.lost == []
    assert len(wire.a.probes) <= 2, wire.a.probes  # passive keepalives answer for the peer
    heard = wire.a.heard_at
    wire.dead_at = dies
    wire.run(dies + 60, sending=1.0)
    assert len(wire.a.lost) == 1
    assert wire.a.lost[0] - heard <= ACTIVE_QUIET + ANSWER_WAIT + STEP + 1, wire.a.lost[0] - heard


def test_a_probe_answered_by_a_handshake_keeps_the_path_and_backs_off() -> None:
    live = Liveness(0.0, 1000, 1000, K)
    assert live.next_check() == K + PASSIVE
    assert live.judge(34.0, 1000, 1032, 0.0, K) == "alive"
    assert live.judge(35.0, 1000, 1032, 0.0, K) == "probe"
    live.probed(35.0)
    assert live.judge(36.0, 0, 0, None, K) == "waiting"  # re-created: counters start again
    assert live.judge(37.0, 92, 180, 36.1, K) == "alive"  # a handshake answered
    assert live.next_check() == pytest.approx(37.0 + 2 * (K + PASSIVE))
    assert live.judge(40.0, 124, 180, 36.1, K) == "alive"  # a keepalive by itself
    assert live.next_check() == pytest.approx(40.0 + K + PASSIVE)


def test_a_probe_unanswered_within_the_wait_declares_the_path_lost() -> None:
    live = Liveness(0.0, 500, 500, K)
    assert live.judge(36.0, 500, 564, 0.0, K) == "probe"
    live.probed(36.0)
    assert live.judge(37.0, 0, 148, None, K) == "waiting"
    assert live.next_check() == 36.0 + ANSWER_WAIT
    assert live.judge(38.9, 0, 148, None, K) == "waiting"
    assert live.judge(39.0, 0, 148, None, K) == "lost"


def test_received_bytes_answer_a_probe_too_and_a_failed_send_is_asked_again() -> None:
    live = Liveness(0.0, 500, 500, K)
    assert live.judge(40.0, 500, 532, 0.0, K) == "probe"
    live.probed(40.0)
    live.cancel()  # the operations failed: not out
    assert not live.probing
    assert live.judge(41.0, 500, 532, 0.0, K) == "probe"
    live.probed(41.0)
    assert live.judge(42.0, 600, 532, 0.0, K) == "alive"


def test_at_most_one_probe_per_peer_per_keepalive_interval() -> None:
    live = Liveness(0.0, 0, 0, K)
    assert live.judge(16.0, 0, 500, 0.0, K) == "alive"  # data seen: 15 s after, and 10 s
    assert live.judge(26.0, 0, 900, 0.0, K) == "probe"
    live.probed(26.0)
    assert live.judge(27.0, 0, 0, 27.0, K) == "alive"  # answered
    assert live.judge(30.0, 0, 800, 27.0, K) == "alive"  # sending again
    assert live.judge(43.0, 0, 900, 27.0, K) == "alive"  # nothing received for 16 s...
    assert live.next_check() == 26.0 + K  # ...but the last probe was 17 s ago
    assert live.judge(51.0, 0, 900, 27.0, K) == "probe"


def test_a_doubt_probes_at_once_unless_something_came_and_within_the_same_budget() -> None:
    """A member's punch notice says the peer cannot reach us: probe now, not in 35 s."""
    live = Liveness(0.0, 500, 500, K)
    live.doubt(10.0)
    assert live.next_check() == 10.0
    assert live.judge(10.0, 500, 500, 0.0, K) == "probe"
    live.probed(10.0)
    assert live.judge(11.0, 0, 0, 11.0, K) == "alive"  # answered: the doubt is spent
    live.doubt(20.0)  # doubted again within the interval: no second probe before 35
    assert live.next_check() == 10.0 + K
    assert live.judge(20.0, 0, 0, 11.0, K) == "alive"
    other = Liveness(0.0, 500, 500, K)
    other.doubt(10.0)
    assert other.judge(10.5, 532, 500, 0.0, K) == "alive"  # a keepalive came: no probe
    assert other.next_check() == pytest.approx(10.5 + K + PASSIVE)


def test_without_a_persistent_keepalive_only_traffic_makes_a_path_quiet() -> None:
    live = Liveness(0.0, 100, 100, 0)
    assert live.judge(3600.0, 100, 132, 0.0, 0) == "alive"  # one passive keepalive
    assert live.next_check() == math.inf
    assert live.judge(3601.0, 100, 300, 0.0, 0) == "alive"
    assert live.judge(3611.0, 100, 400, 0.0, 0) == "probe"  # 10 s after the data was seen


def test_a_watched_direct_path_outlives_its_stale_handshake_until_it_is_lost() -> None:
    from meshd.mesh.candidates import Candidate
    from meshd.mesh.punch import STALE_AFTER, DirectPath

    public = Candidate("configured", ipaddress.ip_address("198.51.100.1"), 51820)
    paths = [DirectPath([public], 0.0) for _ in range(2)]
    paths[0].watched = True
    for path in paths:
        assert path.update(1.0, 0.5, "198.51.100.1:51820").path == "direct"
    watched, unwatched = (p.update(1.0 + STALE_AFTER, 0.5, None) for p in paths)
    assert (watched.path, watched.next_check) == ("direct", math.inf)
    assert unwatched.path == "trying"
    assert paths[0].lost(2.0 + STALE_AFTER)
    assert paths[0].update(3.0 + STALE_AFTER, 0.5, None).path == "trying"
