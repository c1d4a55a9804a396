"""A member connected again whose WireGuard session stays silent is re-created (fake clock)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.mesh.reconnect import INTERVAL, WINDOW, Reconnects, silence_for

SILENCE = silence_for(4.0)


def test_silence_follows_the_hello_interval() -> None:
    assert SILENCE == 5.0
    assert silence_for(0.5) == 2.0
    assert silence_for(None) == 5.0
    with pytest.raises(ValueError, match="positive"):
        Reconnects(0.0)


def test_a_restarted_member_is_due_once_its_session_has_been_silent_long_enough() -> None:
    r: Reconnects[str] = Reconnects(SILENCE)
    assert r.update(0.0, {"h1", "h2"}, {"h1": 0.0, "h2": 0.0}) == []  # the first look
    # h1 stops at 1.0 (nothing heard since); its connection drops, then comes back.
    assert r.update(2.0, {"h2"}, {"h1": 1.0, "h2": 2.0}) == []
    assert r.update(4.0, {"h1", "h2"}, {"h1": 1.0, "h2": 4.0}) == []  # silent 3 s: not yet
    assert r.update(6.0, {"h1", "h2"}, {"h1": 1.0, "h2": 6.0}) == ["h1"]  # silent 5 s
    assert r.update(7.0, {"h1", "h2"}, {"h1": 1.0, "h2": 7.0}) == []  # once


def test_only_the_members_the_caller_doubts_are_watched() -> None:
    """The caller names, of the members whose connection is new, those connected again
    with a session from before (``doubted``): another's silence is no sign (a joiner's)."""
    r: Reconnects[str] = Reconnects(SILENCE)
    assert r.update(0.0, set(), {}, set()) == []
    assert r.update(1.0, {"h1", "h2"}, {"h1": 0.0, "h2": 0.0}, {"h2"}) == []
    assert r.update(6.0, {"h1", "h2"}, {"h1": 0.0, "h2": 0.0}, set()) == ["h2"]


def test_a_working_session_is_left_alone_when_its_connection_comes_back() -> None:
    r: Reconnects[str] = Reconnects(SILENCE)
    r.update(0.0, set(), {})
    for t in range(1, 20):
        # Connected at 1 s; Hellos arrive every 4 s.
        assert r.update(float(t), {"h1"}, {"h1": float(t - t % 4)}) == []


def test_no_session_nothing_to_recreate_and_the_first_look_doubts_nobody() -> None:
    r: Reconnects[str] = Reconnects(SILENCE)
    assert r.update(0.0, {"h1"}, {"h1": -100.0}) == []  # connected at the first look
    assert r.update(10.0, {"h1"}, {"h1": -100.0}) == []
    r.update(11.0, set(), {})
    assert r.update(12.0, {"h1"}, {"h1": None}) == []  # no handshake on our device
    assert r.update(20.0, {"h1"}, {"h1": None}) == []


def test_the_watch_ends_after_the_window_or_when_the_connection_goes() -> None:
    r: Reconnects[str] = Reconnects(SILENCE)
    r.update(0.0, set(), {})
    r.update(1.0, {"h1"}, {"h1": 0.5})
    assert r.update(1.0 + WINDOW + 0.1, {"h1"}, {"h1": 0.5}) == []  # too late: not ours
    r.update(20.0, set(), {})
    r.update(21.0, {"h1"}, {"h1": 20.5})
    r.update(22.0, set(), {"h1": 20.5})  # gone again before it was due
    assert r.update(30.0, set(), {"h1": 20.5}) == []


@given(st.lists(st.booleans(), min_size=1, max_size=200))
def test_a_flapping_connection_makes_a_peer_due_at_most_once_per_interval(
    flaps: list[bool],
) -> None:
    r: Reconnects[str] = Reconnects(SILENCE)
    r.update(0.0, set(), {})
    due_at: list[float] = []
    for n, up in enumerate(flaps, start=1):
        now = n * 1.0
        if "h1" in r.update(now, {"h1"} if up else set(), {"h1": 0.0}):
            due_at.append(now)
    assert all(b - a >= INTERVAL for a, b in itertools.pairwise(due_at))
