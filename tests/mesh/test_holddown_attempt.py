"""The relay at once when the direct attempt fails (no waiting out the whole hold-down).

Same scene as tests/mesh/test_holddown.py: ``new`` just appeared, Babel routes it through
``relay``. With the device's handshakes given, a peer that has none ``attempt`` seconds after
it appeared is released to the relay; one that shook hands stays held until Babel routes it
directly or the period ends; Babel's direct route takes the path back whenever it comes.
"""

from __future__ import annotations

from collections.abc import Collection

import pytest

from meshd.mesh.holddown import DIRECT_ATTEMPT, HoldDown, hold_down_period, routed_directly
from meshd.trust.keys import WgKey
from meshd.wg.model import IPNetwork
from tests.mesh.test_holddown import DIRECT, PEERS, VIA_RELAY, holder, new, relay

PERIOD = hold_down_period(4.0)  # the default Hello interval: 16 s


def step(
    hold: HoldDown,
    now: float,
    extra: dict[WgKey, list[IPNetwork]],
    answered: Collection[WgKey] | None,
) -> str:
    held = hold.update(now, PEERS.keys(), routed_directly(PEERS, extra), answered)
    return holder(extra, held)


def test_no_first_handshake_within_the_attempt_means_the_relay_at_once() -> None:
    hold = HoldDown(PERIOD)
    assert PERIOD == 16.0
    assert DIRECT_ATTEMPT < 3.0
    assert step(hold, 100.0, VIA_RELAY, answered=()) == "new"
    assert hold.deadline() == 100.0 + DIRECT_ATTEMPT  # a round is due when the attempt ends
    assert step(hold, 100.0 + DIRECT_ATTEMPT * 0.99, VIA_RELAY, answered=()) == "new"
    assert step(hold, 100.0 + DIRECT_ATTEMPT, VIA_RELAY, answered=()) == "relay"
    assert hold.deadline() is None  # nothing held, nothing to wake up for
    # The direct path comes up later: Babel hears the peer directly and takes it back.
    assert step(hold, 130.0, DIRECT, answered=[new.wg_key, relay.wg_key]) == "new"


def test_a_peer_that_shook_hands_stays_held_until_babel_or_the_period() -> None:
    hold = HoldDown(PERIOD)
    assert step(hold, 0.0, VIA_RELAY, answered=()) == "new"
    assert step(hold, 1.0, VIA_RELAY, answered=[new.wg_key]) == "new"
    assert hold.deadline() == PERIOD  # answered: only the period is left to wake up for
    assert step(hold, DIRECT_ATTEMPT + 1.0, VIA_RELAY, answered=[new.wg_key]) == "new"
    assert step(hold, PERIOD, VIA_RELAY, answered=[new.wg_key]) == "relay"


def test_without_handshake_information_the_whole_period_is_held_as_before() -> None:
    hold = HoldDown(PERIOD)
    assert step(hold, 0.0, VIA_RELAY, answered=None) == "new"
    assert step(hold, PERIOD - 0.1, VIA_RELAY, answered=None) == "new"
    assert step(hold, PERIOD, VIA_RELAY, answered=None) == "relay"
    with pytest.raises(ValueError, match="negative"):
        HoldDown(PERIOD, attempt=-1.0)
