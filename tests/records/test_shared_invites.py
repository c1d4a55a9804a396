"""The enrollments of one invite share its decoded certificate: decoded once, not once a
member (a store's load decodes every admission, each nesting its invite's same bytes)."""

from __future__ import annotations

from typing import Any

import pytest

import meshd.records.decode as decode_module
from meshd.errors import DecodeError
from meshd.records import Admission, Certificate, Enrollment, decode_untrusted
from meshd.trust.invites import enroll
from meshd.trust.keys import SigningKey, WireGuardKey
from tests.factory import T0, Net

MEMBERS = 50


def _admissions(net: Net, members: int = MEMBERS) -> list[bytes]:
    state = net.state()
    founder = net.founder()
    state.ingest(founder.credential, T0 + 5)
    invite = net.invite(uses=members)
    raws = []
    for i in range(members):
        key = SigningKey.generate()
        enrollment = enroll(
            invite,
            node_key=key.public,
            wg_key=WireGuardKey.generate().public,
            name=f"m{i}",
            now=T0 + 10,
        )
        raws.append(state.sponsor(founder.key, enrollment, T0 + 10).raw)
    return raws


def test_the_admissions_of_one_invite_decode_its_certificate_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raws = _admissions(Net())
    decode_module._INVITES.clear()
    calls = [0]
    fast = decode_module._certificate_fast

    def counting(*args: Any) -> Certificate:
        calls[0] += 1
        return fast(*args)

    monkeypatch.setattr(decode_module, "_certificate_fast", counting)
    admissions = [decode_untrusted(raw, Admission) for raw in raws]
    assert calls[0] == 1  # one a member before
    invites = {id(a.enrollment.invite) for a in admissions}
    assert len(invites) == 1
    # The same values as decoding the invite's bytes alone.
    invite = admissions[0].enrollment.invite
    assert invite == decode_untrusted(invite.raw, Certificate)


def test_a_shared_invite_is_still_refused_where_it_nests_too_deeply() -> None:
    enrollment = decode_untrusted(_admissions(Net(), 1)[0], Admission).enrollment
    # Nested in the admission, the enrollment was decoded at depth 1: the same invite there.
    assert decode_untrusted(enrollment.raw, Enrollment, depth=1).invite is enrollment.invite
    assert decode_untrusted(enrollment.raw, Enrollment, depth=2).invite == enrollment.invite
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode_untrusted(enrollment.raw, Enrollment, depth=3)


def test_an_invite_that_does_not_decode_is_refused_every_time() -> None:
    decode_module._INVITES.clear()
    for _ in range(2):
        with pytest.raises(DecodeError):
            decode_module._invite_of(b"\x92\xc4\x01x", 0)
        with pytest.raises(DecodeError):
            decode_module._invite_of(17, 0)
    assert not decode_module._INVITES
