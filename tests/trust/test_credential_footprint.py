"""What a member's credential keeps: its dates are read from the bytes of the record it came
from (the record set's one copy), not kept as two ints; the values are the same."""

from __future__ import annotations

import os
import sys
import tracemalloc

import pytest

import meshd.trust.credential as credential_module
from meshd.records import (
    ALL_CAPS,
    MAX_NAME,
    Admission,
    Cap,
    Certificate,
    Role,
    decode_untrusted,
    make_admission,
    make_certificate,
)
from meshd.records.body import (
    admitted_at_of,
    name_of,
    not_after_of,
    not_before_of,
    subject_of,
)
from meshd.records.build import make_renewal
from meshd.records.elide import PIECES
from meshd.trust.chain import Verifier
from meshd.trust.credential import Credential, HandedOver, Renewed, Sponsored, sponsored_pieces
from meshd.trust.invites import enroll
from meshd.trust.keys import SigningKey, WireGuardKey
from tests.factory import DAY, T0, Net

NOW = T0 + 100
N = 1000


def test_a_certificates_credential_reads_its_dates_from_the_certificates_bytes() -> None:
    """1,000 credentials made from their certificates as the daemon does (decoded, checked,
    the decoded certificate let go): ~258 bytes each beside the certificates' bytes (the
    object 72, its node key, WireGuard key and record id, the list's place), where the
    object was 80 and its name ~56 more (~321), and before that the object 88 and its dates
    two ints of 32 more (~393). The certificate's bytes are held without its network id and
    three keys (meshd.records.elide): 152 bytes where the bytes decoded take 272, which the
    credential gives back."""
    net = Net()
    verifier = Verifier(net.anchor)
    raws = [
        make_certificate(
            net.root,
            network_id=net.anchor.network_id,
            subject=SigningKey(i.to_bytes(4, "big") * 8).public,
            role=Role.MEMBER,
            serial=os.urandom(16),
            not_before=T0 + i,
            not_after=T0 + 365 * DAY + i,
            name=f"m{i}",
            wg_key=WireGuardKey.generate().public,
        ).raw
        for i in range(N)
    ]
    verifier.signatures_trusted = True  # what is measured is what is kept, not the check
    tracemalloc.start()
    try:
        credentials = [
            verifier.member_certificate(decode_untrusted(raw, Certificate)) for raw in raws
        ]
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = sum(sys.getsizeof(credential.held) for credential in credentials)
    per_member = (kept - held) / N
    assert per_member < 280, per_member
    assert held / N <= 160, held / N  # 152 for a name of up to 7 bytes
    assert sys.getsizeof(credentials[0]) <= 72  # GC header included
    for i, credential in enumerate(credentials):
        assert type(credential) is Credential
        assert credential.raw == raws[i]
        assert credential.held[0] != 0x92  # elided
        assert credential.admitted_at == credential.admin_at == T0 + i
        assert credential.not_after == T0 + 365 * DAY + i
        assert credential.name == f"m{i}"


def test_a_members_credential_holds_the_record_sets_bytes_and_its_dates() -> None:
    net = Net()
    founder = net.founder()
    state = net.state()
    assert state.ingest(founder.credential, NOW).new
    held = state._standing.standing(founder.key.public)
    assert held is not None
    assert type(held) is Credential
    # The record set keeps the credential, which holds the certificate's bytes elided.
    assert held.raw == state._set.get(held.record_id) == founder.credential.raw
    assert held.held[0] != 0x92
    bucket = held.record_id[0]
    assert any(kept is held for kept in state._set._raws[bucket])
    cert = founder.credential
    assert isinstance(cert, Certificate)
    assert (held.admitted_at, held.not_after) == (cert.not_before, cert.not_after)
    # An admission's: its date read from the admission's bytes, its end kept.
    invite = net.invite(uses=1, member_ttl=30 * DAY)
    joined = net.join(state, founder, invite, "j0", at=T0 + 10)
    admission = joined.credential
    assert isinstance(admission, Admission)
    assert state.ingest(admission, NOW).new
    sponsored = state._standing.standing(joined.key.public)
    assert type(sponsored) is Sponsored
    # Held without its network id, sponsor, invite and the member's keys (meshd.records.elide).
    assert sponsored.raw == state._set.get(sponsored.record_id) == admission.raw
    assert sponsored.held[0] != 0x92
    invite_raw = admission.enrollment.invite.raw
    assert len(sponsored.held) == len(admission.raw) - 2 * 16 - 3 * 32 - len(invite_raw) + 7
    assert sponsored.admitted_at == admission.admitted_at == T0 + 10
    assert sponsored.not_after == admission.enrollment.created_at + 30 * DAY
    assert sys.getsizeof(sponsored) <= 120
    # A renewal moves a certificate's end: a Renewed keeps it, its date still read.
    renewal = make_renewal(
        net.root,
        network_id=net.anchor.network_id,
        subject=founder.key.public,
        issued_at=NOW,
        not_after=cert.not_after + DAY,
    )
    assert state.ingest(renewal, NOW).new
    member = state.member(founder.key.public, NOW)
    assert member is not None
    assert member.not_after == cert.not_after + DAY
    renewed = held.renewed(cert.not_after + DAY)
    assert type(renewed) is Renewed
    assert (renewed.admitted_at, renewed.not_after) == (cert.not_before, cert.not_after + DAY)
    assert renewed.held is held.held
    again = sponsored.renewed(NOW + DAY)
    assert type(again) is Sponsored
    assert (again.admitted_at, again.not_after) == (T0 + 10, NOW + DAY)


def test_a_handed_over_credential_keeps_the_old_keys_date() -> None:
    net = Net()
    founder = net.founder()
    old = Verifier(net.anchor).member_certificate(founder.credential)  # type: ignore[arg-type]
    handed = HandedOver(
        b"k" * 32,
        b"w" * 32,
        b"",
        old.terms,
        old.not_after,
        _name="n",
        admitted_at=T0 + 5,
        record_id=b"r" * 16,
    )
    assert (handed.admitted_at, handed.not_after) == (T0 + 5, old.not_after)
    assert handed.name == handed.renewed(old.not_after + 1).name == "n"
    assert handed.renewed(old.not_after + 1).admitted_at == T0 + 5


_WIDTHS = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]


@pytest.mark.parametrize("admin", [False, True])
def test_dates_read_from_the_bytes_are_the_ones_they_were_made_with(admin: bool) -> None:
    # Every width of msgpack uint, and both forms of the envelope (an admin's certificate
    # in the chain: bin 16).
    net = Net()
    issuer = net.admin() if admin else net.issuer
    founder = net.founder(issuer=issuer)
    for not_before in _WIDTHS:
        for not_after in _WIDTHS:
            raw = make_certificate(
                issuer.key,
                network_id=net.anchor.network_id,
                subject=founder.key.public,
                role=Role.MEMBER,
                serial=os.urandom(16),
                not_before=not_before,
                not_after=not_after,
                name="m",
                wg_key=founder.wg.public,
                chain=issuer.chain,
            ).raw
            assert (len(raw) > 255 + 69) is admin
            assert (not_before_of(raw), not_after_of(raw)) == (not_before, not_after)
            assert name_of(raw) == "m"
            assert subject_of(raw) == founder.key.public
    invite = net.invite(uses=1)
    enrollment = enroll(
        invite, node_key=SigningKey.generate().public, wg_key=founder.wg.public, name="j", now=T0
    )
    for admitted_at in _WIDTHS:
        admission = make_admission(founder.key, enrollment=enrollment, admitted_at=admitted_at)
        assert admitted_at_of(admission.raw) == admitted_at
        assert subject_of(admission.raw) is None  # not a certificate


@pytest.mark.parametrize("caps", [Cap.NONE, Cap.INVITE, ALL_CAPS])
def test_a_name_read_from_the_bytes_is_the_one_it_was_made_with(caps: Cap) -> None:
    """Every length of msgpack str a name may have (fixstr up to 31 bytes, str 8 beyond),
    with UTF-8 of more than a byte a character, a member's certificate and an admin's."""
    net = Net()
    founder = net.founder()
    for name in ["", "m", "a" * 31, "a" * 32, "é" * 16, "名" * 20, "z" * MAX_NAME]:
        cert = make_certificate(
            net.root,
            network_id=net.anchor.network_id,
            subject=founder.key.public,
            role=Role.MEMBER if caps is Cap.NONE else Role.ADMIN,
            serial=os.urandom(16),
            not_before=T0,
            not_after=T0 + DAY,
            caps=caps,
            name=name,
            wg_key=founder.wg.public if caps is Cap.NONE else b"",
        )
        assert cert.name == name
        assert name_of(cert.raw) == name


def test_an_admitted_members_date_is_read_from_its_admission_held_elided() -> None:
    """Read where it lies in the held bytes (after the sponsor's key, the second piece cut),
    it is the admission's date, whatever the lengths before it; the pieces are as many as
    the reader counts."""
    net = Net()
    founder = net.founder()
    state = net.state()
    assert state.ingest(founder.credential, NOW).new
    invite = net.invite(uses=3, lifetime=30 * DAY)
    for at in (T0 + 10, T0 + 1000, T0 + 20 * DAY):
        joined = net.join(state, founder, invite, f"j{at}", at=at)
        admission = joined.credential
        assert isinstance(admission, Admission)
        assert state.ingest(admission, at + 1).new
        held = state._standing.standing(joined.key.public)
        assert type(held) is Sponsored
        assert held.held[0] == PIECES
        assert held.admitted_at == admitted_at_of(admission.raw) == at
        pieces = sponsored_pieces(held.terms, held.sponsor, held.node_key, held.wg_key)
        assert len(pieces) == credential_module._SPONSORED_PIECES


@pytest.mark.parametrize("named", ["", "laptop-of-a-named-member"])
def test_an_admitted_members_rank_and_name_are_read_from_its_admission(named: str) -> None:
    """Not kept (an int and a str a member: ~90 bytes): read where they lie in the
    admission held elided (the enrollment's name and date right after the member's
    WireGuard key, the last piece cut) with its terms (the invite's name), the same as they
    were made with, for names and dates of every usual width. Its end is kept (read at
    every judgement), and a renewal's."""
    net = Net()
    founder = net.founder()
    state = net.state()
    assert state.ingest(founder.credential, NOW).new
    invite = net.invite(uses=40, lifetime=30 * DAY, name=named, member_ttl=7 * DAY)
    for n, (joiner_name, at) in enumerate(
        [("a", T0 + 10), ("b" * 31, T0 + 1000), ("c" * 32, T0 + 5), ("d" * 63, T0 + 20 * DAY)]
    ):
        key, wg = SigningKey.generate(), WireGuardKey.generate()
        enrollment = enroll(invite, node_key=key.public, wg_key=wg.public, name=joiner_name,
                            now=at)  # fmt: skip
        # The sponsor's time before the enrollment's in one of them: the rank is the later.
        admission = state.sponsor(founder.key, enrollment, at + (n % 2) * 50 - 3)
        assert state.ingest(admission, at + 100).new
        held = state._standing.standing(key.public)
        assert type(held) is Sponsored
        assert held.held[0] == PIECES
        assert (held._rank, held._name) == (credential_module.FROM_HELD, None)
        assert held.not_after == at + 7 * DAY
        assert held.rank == max(admission.admitted_at, at)
        assert held.name == (named or joiner_name)
        renewed = held.renewed(at + 9 * DAY)
        assert (renewed.not_after, renewed.rank, renewed.name) == (
            at + 9 * DAY,
            held.rank,
            held.name,
        )
        assert isinstance(renewed, Sponsored)
        assert renewed._rank == credential_module.FROM_HELD


def test_an_admissions_fields_not_read_back_as_made_are_kept() -> None:
    """Bytes held whole, or whose bytes after the last piece cut are not a name and a date
    as usual (or read back otherwise than given), keep the rank and name made with."""
    net = Net()
    founder = net.founder()
    state = net.state()
    assert state.ingest(founder.credential, NOW).new
    invite = net.invite(uses=2, member_ttl=7 * DAY)
    joined = net.join(state, founder, invite, "j", at=T0 + 10)
    assert state.ingest(joined.credential, NOW).new
    held = state._standing.standing(joined.key.public)
    assert isinstance(held, Sponsored)
    terms, made = held.terms, (held.rank, held.name)
    assert credential_module.held_fields(held.held, terms, *made) == (-1, None)
    assert credential_module.held_fields(held.raw, terms, *made) == made  # whole
    other = (made[0] + 1, "other")
    assert credential_module.held_fields(held.held, terms, *other) == other
    at = credential_module._enrolled(held.held)
    for tail in (b"", b"\xc0", b"\xa3ab", b"\xa1\xff\xc1", b"\xa1a\xc1"):
        broken = held.held[:at] + tail
        assert credential_module.held_fields(broken, terms, *made) == made, tail
