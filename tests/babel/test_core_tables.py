"""The pieces under the Babel core: seqnos, feasibility, Hello histories, costs, RTT."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.babel.neighbours import HelloHistory, LinkParams, Neighbour, timestamp
from meshd.babel.numbers import INFINITY
from meshd.babel.sources import Distance, SourceTable, feasible, seqno_diff, seqno_newer, seqno_plus

KEY = (IPv6Network("2001:db8::/32"), None)
RID = bytes(7) + b"\x01"
seqnos = st.integers(0, 0xFFFF)


@given(seqnos, st.integers(1, 0x7FFF))
def test_seqno_arithmetic_wraps(a: int, n: int) -> None:
    b = seqno_plus(a, n)
    assert seqno_newer(b, a)
    assert not seqno_newer(a, b)
    assert seqno_diff(b, a) == n


@given(seqnos, st.integers(0, INFINITY - 1), seqnos, st.integers(0, INFINITY))
def test_feasibility_condition(fd_seqno: int, fd_metric: int, seqno: int, metric: int) -> None:
    expected = (
        metric == INFINITY
        or seqno_newer(seqno, fd_seqno)
        or (seqno == fd_seqno and metric < fd_metric)
    )
    assert feasible(Distance(fd_seqno, fd_metric), seqno, metric) == expected
    assert feasible(None, seqno, metric)


def test_source_table_keeps_the_best_distance_and_forgets_it() -> None:
    table = SourceTable(gc_time=180)
    table.announced(KEY, RID, 5, 300, now=0)
    table.announced(KEY, RID, 5, 400, now=1)  # worse: the distance stays
    table.announced(KEY, RID, 5, INFINITY, now=2)  # retractions do not count
    assert table.distance(KEY, RID) == Distance(5, 300)
    table.announced(KEY, RID, 6, 900, now=3)  # newer seqno wins whatever the metric
    assert table.distance(KEY, RID) == Distance(6, 900)
    assert not table.feasible(KEY, RID, 6, 900)
    assert table.feasible(KEY, RID, 6, 899)
    table.expire(182)
    assert len(table) == 1
    table.expire(183)
    assert table.distance(KEY, RID) is None


def test_hello_history() -> None:
    history = HelloHistory()
    history.receive(10, 1.0, now=0)
    assert (history.bits, history.deadline) == (0b1, 1.5)
    history.receive(13, 1.0, now=1)  # 11 and 12 lost
    assert history.bits == 0b1001
    assert history.received(3) == 1
    assert history.tick(now=2.4) is False
    assert history.tick(now=2.5) is True  # 1.5 intervals without Hello 14
    assert (history.bits, history.expected) == (0b10010, 15)
    history.receive(14, 1.0, now=2.6)  # it had slowed down: undo the miss we counted
    assert history.bits == 0b10011
    history.receive(1000, 1.0, now=3)  # a reboot: start again
    assert history.bits == 0b1
    history.receive(1001, 0, now=4)  # interval 0: no promise, no timer
    assert history.deadline is None


@pytest.mark.parametrize(
    ("k", "j", "bits", "up"),
    [(2, 3, 0b110, True), (2, 3, 0b100, False), (3, 4, 0b1101, True), (3, 4, 0b1001, False)],
)
def test_k_out_of_j(k: int, j: int, bits: int, up: bool) -> None:
    params = LinkParams(k=k, j=j)
    neighbour = Neighbour("eth0", IPv6Address("fe80::2"), HelloHistory(bits=bits), txcost=96)
    assert (neighbour.rxcost(params) < INFINITY) == up
    assert (neighbour.compute_cost(params) < INFINITY) == up


def test_rtt_penalty_is_linear_between_min_and_max() -> None:
    params = LinkParams(rtt_min=0.010, rtt_max=0.110, max_rtt_penalty=100)
    assert [params.rtt_penalty(r) for r in (None, 0.005, 0.010, 0.060, 0.110, 1.0)] == [
        0,
        0,
        0,
        50,
        100,
        100,
    ]


def test_rtt_sample_subtracts_the_time_the_peer_held_our_hello() -> None:
    params = LinkParams(rtt_smoothing=0.5)
    neighbour = Neighbour("eth0", IPv6Address("fe80::2"), cost=96, heard_since=0.5)
    # Our Hello left at 1.000 (our clock); it arrived at 50.0 on the peer's clock, which
    # answered at 50.2; the answer arrives at 1.240: 240 ms minus 200 ms held = 40 ms.
    neighbour.rtt_sample(timestamp(1.0), timestamp(50.0), timestamp(50.2), 1.240, params)
    assert neighbour.rtt == pytest.approx(0.040, abs=1e-5)
    neighbour.rtt_sample(timestamp(2.0), timestamp(51.0), timestamp(51.2), 2.220, params)
    assert neighbour.rtt == pytest.approx(0.030, abs=1e-5)  # smoothed towards 20 ms
    neighbour.rtt_sample(timestamp(3.0), timestamp(52.0), timestamp(53.2), 3.220, params)
    assert neighbour.rtt == pytest.approx(0.030, abs=1e-5)  # negative: dropped


def test_rtt_is_measured_only_by_hellos_sent_once_the_neighbour_was_heard_again() -> None:
    """A Hello sent while the link was down may have waited for a WireGuard handshake."""
    params = LinkParams(rtt_smoothing=0.5)
    neighbour = Neighbour("eth0", IPv6Address("fe80::2"))
    neighbour.rtt_sample(timestamp(1.0), timestamp(50.0), timestamp(50.0), 1.010, params)
    assert neighbour.rtt is None  # never heard from: no sample
    neighbour.heard(10.0)
    # Sent at 7.0, before its first packet came, staged, echoed at 10.0: not 3 s of RTT.
    neighbour.rtt_sample(timestamp(7.0), timestamp(60.0), timestamp(60.0), 10.010, params)
    assert neighbour.rtt is None
    neighbour.heard(10.01)  # more of the link coming up: the start stays
    # Our answer to its first Hello counts (the link's RTT from the start).
    neighbour.rtt_sample(timestamp(10.0), timestamp(60.0), timestamp(60.0), 10.020, params)
    assert neighbour.rtt == pytest.approx(0.020, abs=1e-5)
    neighbour.txcost = 96
    neighbour.unicast.receive(1, 1.0, 10.0)
    neighbour.unicast.receive(2, 1.0, 10.5)
    assert neighbour.update_cost(params, 10.5)  # up
    neighbour.txcost = INFINITY
    assert neighbour.update_cost(params, 20.0)  # down at 20
    neighbour.heard(25.0)
    neighbour.rtt_sample(timestamp(22.0), timestamp(70.0), timestamp(70.0), 25.010, params)
    assert neighbour.rtt == pytest.approx(0.020, abs=1e-5)  # staged meanwhile: dropped
    neighbour.rtt_sample(timestamp(25.0), timestamp(70.0), timestamp(70.0), 25.040, params)
    assert neighbour.rtt == pytest.approx(0.030, abs=1e-5)
    # Heard for longer than the timestamps' 71 minutes: every echo counts still.
    later = 25.0 + 2 * 4294.967296
    neighbour.rtt_sample(timestamp(later), timestamp(9.0), timestamp(9.0), later + 0.03, params)
    assert neighbour.rtt == pytest.approx(0.030, abs=1e-5)


def test_timestamps_wrap_at_2_32_microseconds() -> None:
    assert timestamp(4294.967296) == 0
    assert timestamp(1.5) == 1_500_000


def test_link_params_are_checked() -> None:
    with pytest.raises(ValueError, match="out-of"):
        LinkParams(k=4, j=3)
    with pytest.raises(ValueError, match="rxcost"):
        LinkParams(rxcost=0)
