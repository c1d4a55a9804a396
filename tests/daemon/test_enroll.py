"""The enrollment exchange (pure): who may redeem, and how refusals travel."""

from __future__ import annotations

import contextlib
import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.errors import DecodeError, VerifyError
from meshd.gossip import enroll as protocol
from meshd.trust.invites import enroll
from meshd.trust.keys import SigningKey, WireGuardKey
from tests.factory import DAY, T0, Net


def _setup(uses: int = 1):  # type: ignore[no-untyped-def]
    net = Net()
    founder = net.founder()
    state = net.state()
    state.ingest(founder.credential, T0 + 1)
    invite = net.invite(uses=uses, lifetime=DAY)
    key, wg = SigningKey.generate(), WireGuardKey.generate()
    enrollment = enroll(invite, node_key=key.public, wg_key=wg.public, name="j", now=T0 + 5)
    return net, founder, state, invite, key, enrollment


def test_admission_round_trip_for_the_enrolled_peer() -> None:
    _, founder, state, _, key, enrollment = _setup()
    request = protocol.decode_request_untrusted(protocol.encode_request(enrollment))
    admission = protocol.sponsor(state, founder.key, request, key.public, T0 + 10)
    assert (
        protocol.decode_reply_untrusted(protocol.encode_reply(admission), enrollment) == admission
    )


def test_only_the_enrolled_key_may_redeem() -> None:
    _, founder, state, _, _, enrollment = _setup()
    with pytest.raises(VerifyError) as info:
        protocol.sponsor(state, founder.key, enrollment, SigningKey.generate().public, T0 + 10)
    assert info.value.reason == "wrong-peer"


def test_wrong_network_and_expiry_are_refusals_with_reasons() -> None:
    _, founder, _, _, key, enrollment = _setup()
    other = Net().state()
    with pytest.raises(VerifyError) as info:
        protocol.sponsor(other, founder.key, enrollment, key.public, T0 + 10)
    assert info.value.reason == "wrong-network"
    _, founder, state, _, key, enrollment = _setup()
    with pytest.raises(VerifyError) as info:
        protocol.sponsor(state, founder.key, enrollment, key.public, T0 + 2 * DAY)
    refusal = protocol.encode_refusal(info.value)
    with pytest.raises(VerifyError) as back:
        protocol.decode_reply_untrusted(refusal, enrollment)
    assert back.value.reason == "invite-expired"
    assert back.value.hint == "ask for a new invite"


def test_an_admission_of_another_enrollment_is_refused() -> None:
    _, founder, state, invite, key, enrollment = _setup(uses=2)
    admission = protocol.sponsor(state, founder.key, enrollment, key.public, T0 + 10)
    other = enroll(invite, node_key=key.public, wg_key=WireGuardKey.generate().public, name="k",
                   now=T0 + 6)  # fmt: skip
    with pytest.raises(DecodeError):
        protocol.decode_reply_untrusted(protocol.encode_reply(admission), other)


@given(st.binary(max_size=200))
def test_any_reply_bytes_give_an_admission_or_a_typed_error(data: bytes) -> None:
    enrollment = _enrollment()
    with contextlib.suppress(DecodeError, VerifyError):
        protocol.decode_reply_untrusted(data, enrollment)


@functools.cache
def _enrollment():  # type: ignore[no-untyped-def]
    return _setup()[5]


# --- the grace of peers that are not members (fake clock) ----------------------------------


def _policy() -> protocol.GracePolicy:
    return protocol.GracePolicy(connect=10.0, enroll=30.0, attempts=3, cooldown=300.0)


def test_reopening_enrollment_every_20_s_does_not_extend_the_grace() -> None:
    """Attack 5 on the policy: the grace runs from the first connection; enrollment streams
    opened every 20 s extend it once, to 30 s from the start; the third, after that, keeps
    the connection RETRY_WINDOW seconds more, and the fourth is refused."""
    grace = _policy()
    assert grace.connected("p", 0.0) == 10.0
    t = 0.0
    while t < 600.0:
        grace.enrolling("p", t)
        if grace.expired("p", t):
            break
        t += 20.0
    assert t == 60.0
    assert not grace.expired("p", 29.0)
    assert grace.expired("p", 40.0 + protocol.RETRY_WINDOW)
    assert grace.refused_attempts == 1


def test_a_reconnect_within_the_window_gets_no_new_grace() -> None:
    grace = _policy()
    grace.connected("p", 0.0)
    assert grace.expired("p", 10.0)
    assert grace.connected("p", 50.0) == 10.0  # back 40 s later: the old deadline stands
    assert grace.expired("p", 50.0)
    assert not grace.expired("q", 50.0)  # another peer has its own
    # After the window (30 s + 300 s of cooldown from the first connection): a new grace.
    assert grace.connected("p", 331.0) == 341.0


def test_enrollment_attempts_are_budgeted_and_a_late_retry_gets_a_short_window() -> None:
    grace = _policy()
    grace.connected("p", 0.0)
    assert grace.enrolling("p", 1.0)
    assert not grace.expired("p", 29.0)
    # A joiner retrying with the same key after the grace: a few seconds to hear the answer.
    assert grace.enrolling("p", 100.0)
    assert not grace.expired("p", 101.0)
    assert grace.expired("p", 100.0 + protocol.RETRY_WINDOW)
    assert grace.enrolling("p", 120.0)
    assert not grace.enrolling("p", 121.0)  # the fourth attempt in the window
    assert grace.refused_attempts == 1
    assert grace.expired("p", 123.0)


def test_members_are_forgotten_and_the_table_is_bounded() -> None:
    grace = protocol.GracePolicy(connect=1.0, enroll=3.0, cooldown=10.0, max_peers=8)
    for i in range(100):
        grace.connected(f"p{i}", float(i) / 10)
    assert len(grace) <= 8
    grace.forget("p99")
    assert "p99" not in grace._peers
