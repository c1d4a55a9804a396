"""An invite's members: its certificate checked, and what they share (their Terms) made, once
for all of them, not once a member; a member whose key is one of the invite's gets its own."""

from __future__ import annotations

from typing import Any

import pytest

from meshd.records import Admission, Certificate, decode_untrusted, make_admission
from meshd.trust.chain import Verifier
from meshd.trust.credential import Terms
from meshd.trust.invites import enroll
from meshd.trust.keys import SigningKey, WireGuardKey
from tests.factory import T0, Net

MEMBERS = 40


def _admissions(net: Net, invites: int) -> list[Admission]:
    """``MEMBERS`` admissions under ``invites`` invites, interleaved (as a store's rows come,
    by record id)."""
    sponsor = SigningKey.generate()
    made = [net.invite(uses=MEMBERS) for _ in range(invites)]
    return [
        decode_untrusted(
            make_admission(
                sponsor,
                enrollment=enroll(
                    made[i % invites],
                    node_key=SigningKey.generate().public,
                    wg_key=WireGuardKey.generate().public,
                    name=f"m{i}",
                    now=T0 + 10,
                ),
                admitted_at=T0 + 10,
            ).raw,
            Admission,
        )
        for i in range(MEMBERS)
    ]


def test_an_invites_certificate_and_terms_are_worked_out_once_for_its_members(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net = Net()
    admissions = _admissions(net, invites=4)
    verifier = Verifier(net.anchor)
    checked: list[Certificate] = []
    certificate = Verifier.certificate

    def counting(self: Verifier, cert: Certificate) -> None:
        checked.append(cert)
        certificate(self, cert)

    monkeypatch.setattr(Verifier, "certificate", counting)
    made = [0]
    terms_init = Terms.__init__

    def counting_terms(self: Terms, *args: Any, **kwargs: Any) -> None:
        made[0] += 1
        terms_init(self, *args, **kwargs)

    monkeypatch.setattr(Terms, "__init__", counting_terms)
    credentials = [verifier.admission(a) for a in admissions]
    assert len(checked) == 4  # one an invite (it was one a member)
    assert made[0] == 4
    for admission, credential in zip(admissions, credentials, strict=True):
        invite = admission.enrollment.invite
        assert credential.invite == invite.subject
        assert credential.issuers == (invite.subject,)
        assert credential.max_uses == invite.max_uses
    assert len({id(c.terms) for c in credentials}) == 4


def test_a_member_whose_key_is_the_invites_gets_its_own_issuers() -> None:
    net = Net()
    invite = net.invite(uses=2)
    key = SigningKey(invite.secret)  # the invite's own key enrolled as a member
    sponsor = SigningKey.generate()
    verifier = Verifier(net.anchor)
    others = [SigningKey.generate(), key, SigningKey.generate()]
    credentials = [
        verifier.admission(
            make_admission(
                sponsor,
                enrollment=enroll(
                    invite,
                    node_key=member.public,
                    wg_key=WireGuardKey.generate().public,
                    name="m",
                    now=T0 + 10,
                ),
                admitted_at=T0 + 10,
            )
        )
        for member in others
    ]
    subject = invite.certificate.subject
    assert [c.issuers for c in credentials] == [(subject,), (), (subject,)]
    assert credentials[0].terms is credentials[2].terms
