"""The enrollment exchange (pure): who may redeem, and how refusals travel."""

from __future__ import annotations

import contextlib
import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.errors import DecodeError, VerifyError
from meshd.gossip import enroll as protocol
from meshd.invites import enroll
from meshd.keys import SigningKey, WireGuardKey
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
