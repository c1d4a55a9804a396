"""Hostile inputs against the trust layer, one table: each named case and what must happen.

Every case builds a fresh network (root, a founding member holding a root-issued certificate,
a membership state that knows the founder) and feeds it one hostile thing: bytes, a record, an
enrollment to sponsor or an invite token. The expected outcome is the exact error class and,
for a VerifyError, its ``reason`` code; or, for a replay, that the state ignores it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from meshd.encoding import b64url, pack, unpack_canonical_untrusted
from meshd.errors import DecodeError, MeshdError, VerifyError
from meshd.membership import Membership, MemberState, Outcome
from meshd.records import (
    ALL_CAPS,
    CONTEXTS,
    MAX_RECORD,
    VERSION,
    Admission,
    Cap,
    Certificate,
    Enrollment,
    Invite,
    Kind,
    Record,
    Role,
    decode_record_untrusted,
    kind_of,
    make_admission,
    make_certificate,
    make_invite,
    make_revocation,
    record_id,
    seal_unsigned,
    signed_body,
)
from meshd.trust.chain import Verifier
from meshd.trust.invites import TOKEN_PREFIX, decode_token_untrusted, encode_token, enroll
from meshd.trust.keys import SigningKey, WireGuardKey
from tests.factory import DAY, T0, Net, Node

NOW = T0 + 100


# --- building hostile bytes ---------------------------------------------------------------


def body_items(record: Record) -> list[Any]:
    """The decoded body of a record: ``[kind, version, field...]``."""
    items = unpack_canonical_untrusted(signed_body(record), max_size=MAX_RECORD, what="test")
    assert isinstance(items, list)
    return items


def sign_items(key: SigningKey, items: Sequence[Any], *, context: Kind | None = None) -> bytes:
    """Encode ``items`` as a body and sign it properly (under ``context``, by default its kind)."""
    body = pack(list(items))
    return pack([body, key.sign(CONTEXTS[context or Kind(items[0])], body)])


def sign_body(key: SigningKey, kind: Kind, body: bytes) -> bytes:
    """Wrap arbitrary body bytes, signed under ``kind``'s context, in a canonical envelope."""
    return pack([body, key.sign(CONTEXTS[kind], body)])


def replace(record: Record, key: SigningKey, index: int, value: Any) -> bytes:
    """Re-sign ``record`` with body field ``index`` (counting kind and version) replaced."""
    items = body_items(record)
    items[index] = value
    return sign_items(key, items, context=kind_of(record))


def flip_signature(record: Record, position: int) -> bytes:
    signature = bytearray(record.signature)
    signature[position] ^= 1 << (position % 8)
    return pack([signed_body(record), bytes(signature)])


def array_of(encoded_items: Sequence[bytes]) -> bytes:
    """A msgpack array of already-encoded items (lets a test choose each item's encoding)."""
    assert len(encoded_items) < 16
    return bytes([0x90 | len(encoded_items)]) + b"".join(encoded_items)


def with_wide_int(items: Sequence[Any], index: int) -> bytes:
    """Encode ``items`` canonically except item ``index``, an int written as a uint64."""
    parts = [pack(item) for item in items]
    parts[index] = b"\xcf" + int(items[index]).to_bytes(8, "big")
    return array_of(parts)


# --- the world each case starts from ------------------------------------------------------


@dataclass
class World:
    net: Net = field(default_factory=Net)
    founder: Node = field(init=False)
    state: Membership = field(init=False)

    def __post_init__(self) -> None:
        self.founder = self.net.founder()
        self.state = self.net.state()
        self.state.ingest(self.founder.credential, NOW)

    @property
    def nid(self) -> bytes:
        return self.net.anchor.network_id

    def ingest(self, data: bytes | Record, now: int = NOW) -> Outcome:
        if isinstance(data, bytes):
            return self.state.ingest_untrusted(data, now)
        return self.state.ingest(data, now)

    def enrollment(self, invite: Invite, at: int = T0 + 10, key: bytes | None = None) -> Enrollment:
        node_key = key or SigningKey.generate().public
        wg = WireGuardKey.generate().public
        return enroll(invite, node_key=node_key, wg_key=wg, name="joiner", now=at)

    def elsewhere(self, *members: Node) -> Membership:
        """Another node's state (across a partition) that knows the founder and ``members``."""
        state = self.net.state()
        for node in (self.founder, *members):
            state.ingest(node.credential, NOW)
        return state

    def sponsor(self, enrollment: Enrollment, now: int = NOW) -> Admission:
        return self.state.sponsor(self.founder.key, enrollment, now)

    def join(self, invite: Invite, at: int = T0 + 10) -> Node:
        node = self.net.join(self.state, self.founder, invite, "joiner", at=at)
        self.ingest(node.credential)
        return node

    def member_cert(self, issuer: SigningKey | None = None, **kw: Any) -> Certificate:
        fields: dict[str, Any] = {
            "network_id": self.nid,
            "subject": SigningKey.generate().public,
            "role": Role.MEMBER,
            "serial": os.urandom(16),
            "not_before": T0,
            "not_after": T0 + DAY,
            "name": "member",
            "wg_key": WireGuardKey.generate().public,
        }
        fields.update(kw)
        return make_certificate(issuer or self.net.root, **fields)

    def verify_token(self, text: str) -> None:
        Verifier(self.net.anchor).invite(decode_token_untrusted(text))

    def token(self) -> tuple[str, Invite]:
        """A token whose raw length is not a multiple of 3 (its last base64 character has
        spare bits)."""
        for n in range(3):
            invite = self.net.invite(bootstrap=["/ip4/192.0.2.1/tcp/4001" + "0" * n])
            if len(invite.raw) % 3:
                return encode_token(invite), invite
        raise AssertionError("unreachable")


# --- expected outcomes --------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    error: type[MeshdError]
    reason: str | None = None

    def __str__(self) -> str:
        return f"{self.error.__name__}({self.reason or ''})"


@dataclass(frozen=True)
class Ignored:
    """Accepted without effect: a replay."""

    def __str__(self) -> str:
        return "ignored"


@dataclass(frozen=True)
class Excluded:
    """Kept in the record set, so that every node converges on the same set, but the member
    it would admit does not stand, for ``reason``."""

    reason: str

    def __str__(self) -> str:
        return f"excluded({self.reason})"


@dataclass(frozen=True)
class Parked:
    """Signed under a key that is no root here: it waits in the pending pool (a rollover to
    that key may still come, docs/wire-format.md §6.11), outside the set, with no event, and
    nobody it names stands."""

    def __str__(self) -> str:
        return "parked"


Expected = Refused | Ignored | Excluded | Parked
Action = Callable[[World], object]

DECODE = Refused(DecodeError)


def verify(reason: str) -> Refused:
    return Refused(VerifyError, reason)


CASES: list[Any] = []


def case(case_id: str, expected: Expected, *, xfail: str = "") -> Callable[[Action], Action]:
    def register(action: Action) -> Action:
        marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
        CASES.append(pytest.param(action, expected, id=case_id, marks=marks))
        return action

    return register


# --- malformed bytes: DecodeError ---------------------------------------------------------


def announcement_raw(w: World) -> bytes:
    return w.founder.announce(w.net, NOW).raw


case("empty-input", DECODE)(lambda w: w.ingest(b""))
case("truncated-by-one-byte", DECODE)(lambda w: w.ingest(announcement_raw(w)[:-1]))
case("truncated-to-envelope-header", DECODE)(lambda w: w.ingest(announcement_raw(w)[:3]))
case("trailing-byte", DECODE)(lambda w: w.ingest(announcement_raw(w) + b"\x00"))
case("two-records-back-to-back", DECODE)(lambda w: w.ingest(announcement_raw(w) * 2))
case("record-over-8192-bytes", DECODE)(lambda w: w.ingest(announcement_raw(w) + bytes(MAX_RECORD)))


@case("non-canonical-int-as-uint64", DECODE)
def _wide_int(w: World) -> object:
    ann = w.founder.announce(w.net, NOW)
    body = with_wide_int(body_items(ann), 4)  # seq = 1, written in nine bytes
    return w.ingest(sign_body(w.founder.key, Kind.ANNOUNCEMENT, body))


@case("non-canonical-signature-as-bin16", DECODE)
def _wide_bin(w: World) -> object:
    ann = w.founder.announce(w.net, NOW)
    body = signed_body(ann)
    header = b"\xc5" + len(body).to_bytes(2, "big") if len(body) < 256 else b""
    assert header, "the announcement body is short"
    return w.ingest(b"\x92" + header + body + b"\xc5\x00\x40" + ann.signature)


@case("map-instead-of-envelope-array", DECODE)
def _map_envelope(w: World) -> object:
    ann = w.founder.announce(w.net, NOW)
    return w.ingest(pack({"body": signed_body(ann), "signature": ann.signature}))


@case("map-instead-of-body-array", DECODE)
def _map_body(w: World) -> object:
    items = body_items(w.founder.announce(w.net, NOW))
    body = pack(dict(enumerate(items)))
    return w.ingest(sign_body(w.founder.key, Kind.ANNOUNCEMENT, body))


@case("signature-as-text", DECODE)
def _text_signature(w: World) -> object:
    ann = w.founder.announce(w.net, NOW)
    return w.ingest(pack([signed_body(ann), "x" * 64]))


@case("signature-of-63-bytes", DECODE)
def _short_signature(w: World) -> object:
    ann = w.founder.announce(w.net, NOW)
    return w.ingest(pack([signed_body(ann), ann.signature[:63]]))


def _field_value(index: int, value: Any) -> Action:
    def action(w: World) -> object:
        return w.ingest(replace(w.founder.announce(w.net, NOW), w.founder.key, index, value))

    return action


# Announcement body: [kind, version, network_id, node_key, seq, issued_at, endpoints, addrs,
# prefixes].
case("float-in-integer-field", DECODE)(_field_value(5, float(NOW)))
case("bool-in-integer-field", DECODE)(_field_value(4, True))
case("negative-integer", DECODE)(_field_value(4, -1))
case("nil-in-integer-field", DECODE)(_field_value(4, None))
case("text-where-bytes-expected", DECODE)(_field_value(3, "k" * 32))
case("unknown-version", DECODE)(_field_value(1, VERSION + 1))
case("version-zero", DECODE)(_field_value(1, 0))
case("unknown-record-kind", DECODE)(_field_value(0, 8))
case("record-kind-zero", DECODE)(_field_value(0, 0))
case("too-many-endpoints", DECODE)(_field_value(6, [f"192.0.2.{n}:51820" for n in range(17)]))
case("endpoint-over-64-bytes", DECODE)(_field_value(6, ["e" * 65]))
case("endpoint-not-printable", DECODE)(_field_value(6, ["192.0.2.1:51820\n"]))
case("too-many-prefixes", DECODE)(_field_value(8, [[bytes([10, n, 0, 0]), 16] for n in range(33)]))
case("prefix-with-host-bits", DECODE)(_field_value(8, [[bytes([10, 0, 0, 1]), 8]]))
case("prefix-length-over-32", DECODE)(_field_value(8, [[bytes(4), 33]]))
case("prefix-address-of-5-bytes", DECODE)(_field_value(8, [[bytes(5), 8]]))


@case("extension-type", DECODE)
def _ext(w: World) -> object:
    items = body_items(w.founder.announce(w.net, NOW))
    parts = [pack(item) for item in items]
    parts[5] = b"\xd6\x01" + bytes(4)  # fixext4 of type 1 where issued_at belongs
    return w.ingest(sign_body(w.founder.key, Kind.ANNOUNCEMENT, array_of(parts)))


@case("too-many-fields", DECODE)
def _too_many(w: World) -> object:
    items = body_items(w.founder.announce(w.net, NOW))
    return w.ingest(sign_items(w.founder.key, [*items, 0]))


@case("too-few-fields", DECODE)
def _too_few(w: World) -> object:
    items = body_items(w.founder.announce(w.net, NOW))
    return w.ingest(sign_items(w.founder.key, items[:-1]))


# Revocation body: [kind, version, network_id, issuer, target, target_role, issued_at,
# expires_at, reason, chain, sponsored].
def _rev_sponsored(value: Any) -> Action:
    def action(w: World) -> object:
        return w.ingest(replace(w.net.revoke(w.founder.key.public), w.net.root, 10, value))

    return action


case("revocation-sponsored-unsorted", DECODE)(_rev_sponsored([b"\x02" * 16, b"\x01" * 16]))
case("revocation-sponsored-repeated", DECODE)(_rev_sponsored([b"\x01" * 16] * 2))
case("revocation-sponsored-id-of-15-bytes", DECODE)(_rev_sponsored([b"\x01" * 15]))
case("revocation-sponsored-over-320", DECODE)(
    _rev_sponsored([n.to_bytes(16, "big") for n in range(321)])
)


# Fields #2-#9 are a legacy revocation (no list), #2-#10 a listed one; one field fewer than
# legacy, or one more than listed, is neither.
@case("revocation-of-7-fields", DECODE)
def _rev_7(w: World) -> object:
    items = body_items(w.net.revoke(w.founder.key.public, sponsored=None))
    assert len(items) == 2 + 8  # kind, version, network_id ... chain
    return w.ingest(sign_items(w.net.root, items[:-1]))


@case("revocation-of-10-fields", DECODE)
def _rev_10(w: World) -> object:
    items = body_items(w.net.revoke(w.founder.key.public))
    assert len(items) == 2 + 9  # kind, version, network_id ... chain, sponsored
    return w.ingest(sign_items(w.net.root, [*items, []]))


@case("revocation-legacy-with-a-list-where-chain-belongs", DECODE)
def _rev_legacy_shifted(w: World) -> object:
    # The list moved into the chain's place of a 9-item body: chain items must be certificates.
    items = body_items(w.net.revoke(w.founder.key.public, sponsored=None))
    items[9] = [b"\x01" * 16]
    return w.ingest(sign_items(w.net.root, items))


# Certificate body: [kind, version, network_id, issuer, subject, role, serial, not_before,
# not_after, caps, name, prefixes, max_uses, member_ttl, wg_key, chain].
def _cert_field(index: int, value: Any) -> Action:
    def action(w: World) -> object:
        return w.ingest(replace(w.member_cert(), w.net.root, index, value))

    return action


case("name-over-64-bytes", DECODE)(_cert_field(10, "\u00e9" * 33))  # 33 characters, 66 bytes
case("name-with-control-character", DECODE)(_cert_field(10, "evil\x1b[2J"))
case("name-with-c1-control-character", DECODE)(_cert_field(10, "evil\x9b2J"))
case("unknown-role", DECODE)(_cert_field(5, 9))
case("unknown-capability-bits", DECODE)(_cert_field(9, 4))
case("wg-key-of-31-bytes", DECODE)(_cert_field(14, bytes(31)))
case("max-uses-over-limit", DECODE)(_cert_field(12, 1_000_001))


@case("chain-of-two-certificates", DECODE)
def _long_chain(w: World) -> object:
    admin = w.net.admin()
    assert admin.certificate is not None
    raw = admin.certificate.raw
    return w.ingest(replace(w.member_cert(admin.key), admin.key, 15, [raw, raw]))


@case("records-nested-too-deep", DECODE)
def _deep(w: World) -> object:
    cert = w.member_cert()
    items = body_items(cert)
    raw = cert.raw
    for _ in range(4):
        raw = seal_unsigned(Kind.CERTIFICATE, [*items[2:15], [raw]], cert.signature)
    return w.ingest(raw)


@case("nested-record-of-wrong-kind", DECODE)
def _wrong_nested(w: World) -> object:
    # An admission whose "enrollment" is an announcement.
    ann = w.founder.announce(w.net, NOW)
    items = [int(Kind.ADMISSION), VERSION, w.nid, w.founder.key.public, NOW, ann.raw]
    return w.ingest(sign_items(w.founder.key, items))


# --- another network or another root ------------------------------------------------------


@case("announcement-from-another-network", verify("wrong-network"))
def _other_net_ann(w: World) -> object:
    other = World()
    return w.ingest(other.founder.announce(other.net, NOW).raw)


@case("certificate-from-another-network", verify("wrong-network"))
def _other_net_cert(w: World) -> object:
    return w.ingest(World().founder.credential.raw)


@case("admission-from-another-network", verify("wrong-network"))
def _other_net_adm(w: World) -> object:
    other = World()
    return w.ingest(other.sponsor(other.enrollment(other.net.invite())))


@case("certificate-signed-by-another-root-as-ours", verify("bad-signature"))
def _forged_root(w: World) -> object:
    cert = w.member_cert()
    return w.ingest(sign_items(Net().root, body_items(cert)))


@case("certificate-issued-by-another-root-key", Parked())
def _other_root(w: World) -> object:
    return w.ingest(w.member_cert(Net().root))


@case("invite-token-of-another-network", verify("wrong-network"))
def _other_net_token(w: World) -> object:
    other = World()
    w.verify_token(encode_token(other.net.invite()))
    return None


@case("enrollment-under-another-networks-invite", verify("wrong-network"))
def _other_net_enrollment(w: World) -> object:
    other = World()
    return w.sponsor(other.enrollment(other.net.invite()))


# --- signatures ---------------------------------------------------------------------------


def _flip_announcement(position: int) -> Action:
    def action(w: World) -> object:
        return w.ingest(flip_signature(w.founder.announce(w.net, NOW), position))

    return action


for _position in range(64):
    case(f"signature-bit-flipped-byte-{_position:02d}", verify("bad-signature"))(
        _flip_announcement(_position)
    )


@case("certificate-signature-bit-flipped", verify("bad-signature"))
def _flip_cert(w: World) -> object:
    return w.ingest(flip_signature(w.member_cert(), 31))


@case("admission-signature-bit-flipped", verify("bad-signature"))
def _flip_adm(w: World) -> object:
    return w.ingest(flip_signature(w.sponsor(w.enrollment(w.net.invite())), 0))


@case("revocation-signature-bit-flipped", verify("bad-signature"))
def _flip_rev(w: World) -> object:
    return w.ingest(flip_signature(w.net.revoke(w.founder.key.public), 63))


@case("enrollment-signature-bit-flipped", verify("bad-signature"))
def _flip_enrollment(w: World) -> object:
    enrollment = w.enrollment(w.net.invite())
    forged = decode_record_untrusted(flip_signature(enrollment, 17))
    assert isinstance(forged, Enrollment)
    return w.sponsor(forged)


@case("signature-all-zero", verify("bad-signature"))
def _zero_sig(w: World) -> object:
    return w.ingest(pack([signed_body(w.founder.announce(w.net, NOW)), bytes(64)]))


@case("announcement-signed-by-another-node", verify("bad-signature"))
def _other_signer(w: World) -> object:
    items = body_items(w.founder.announce(w.net, NOW))
    return w.ingest(sign_items(SigningKey.generate(), items))


@case("revocation-signed-under-certificate-context", verify("bad-signature"))
def _rev_as_cert(w: World) -> object:
    rev = w.net.revoke(w.founder.key.public)
    return w.ingest(sign_items(w.net.root, body_items(rev), context=Kind.CERTIFICATE))


@case("announcement-signed-under-enrollment-context", verify("bad-signature"))
def _ann_as_enrollment(w: World) -> object:
    items = body_items(w.founder.announce(w.net, NOW))
    return w.ingest(sign_items(w.founder.key, items, context=Kind.ENROLLMENT))


@case("certificate-signature-rewrapped-as-revocation", verify("bad-signature"))
def _cert_sig_as_rev(w: World) -> object:
    # A root signature over a member certificate, presented as the signature of a revocation
    # of the founder: the body and the context both differ, so it cannot verify.
    cert = w.member_cert()
    rev = w.net.revoke(w.founder.key.public)
    return w.ingest(seal_unsigned(Kind.REVOCATION, body_items(rev)[2:], cert.signature))


# --- time ---------------------------------------------------------------------------------


@case("revocation-past-expires-at", verify("expired"))
def _rev_expired(w: World) -> object:
    rev = make_revocation(
        w.net.root,
        network_id=w.nid,
        target=w.founder.key.public,
        target_role=Role.MEMBER,
        issued_at=T0,
        expires_at=T0 + 50,
    )
    return w.ingest(rev)


@case("membership-past-not-after", verify("expired"))
def _membership_expired(w: World) -> object:
    admission = w.sponsor(w.enrollment(w.net.invite(member_ttl=50)), T0 + 10)
    return w.ingest(admission, T0 + 61)


@case("member-certificate-past-not-after", verify("expired"))
def _cert_expired(w: World) -> object:
    return w.ingest(w.member_cert(not_after=NOW - 1))


@case("invite-sponsored-after-its-end", verify("invite-expired"))
def _invite_late(w: World) -> object:
    return w.sponsor(w.enrollment(w.net.invite(lifetime=50)), T0 + 51)


@case("backdated-enrollment-sponsored-after-invite-end", verify("invite-expired"))
def _backdated(w: World) -> object:
    # The joiner holds the secret and dates its enrollment inside the window; the sponsor's
    # clock decides.
    return w.sponsor(w.enrollment(w.net.invite(lifetime=50), at=T0 + 1), T0 + DAY)


@case("admission-dated-after-invite-end", verify("invite-expired"))
def _adm_after_end(w: World) -> object:
    enrollment = w.enrollment(w.net.invite(lifetime=50))
    admission = make_admission(w.founder.key, enrollment=enrollment, admitted_at=T0 + 51)
    return w.ingest(admission, T0 + 51)


@case("admission-dated-beyond-clock-skew", verify("not-yet-valid"))
def _adm_future(w: World) -> object:
    enrollment = w.enrollment(w.net.invite())
    admission = make_admission(w.founder.key, enrollment=enrollment, admitted_at=NOW + 301)
    return w.ingest(admission)


@case("admission-within-clock-skew-then-replayed", Ignored())
def _adm_skew(w: World) -> object:
    enrollment = w.enrollment(w.net.invite())
    admission = make_admission(w.founder.key, enrollment=enrollment, admitted_at=NOW + 300)
    assert w.ingest(admission).new
    return w.ingest(admission)


@case("announcement-dated-beyond-clock-skew", verify("not-yet-valid"))
def _ann_future(w: World) -> object:
    return w.ingest(w.founder.announce(w.net, NOW + 301))


@case("revocation-dated-beyond-clock-skew", verify("not-yet-valid"))
def _rev_future(w: World) -> object:
    return w.ingest(w.net.revoke(w.founder.key.public, at=NOW + 301))


@case("member-certificate-starting-beyond-clock-skew", verify("not-yet-valid"))
def _cert_future(w: World) -> object:
    return w.ingest(w.member_cert(not_before=NOW + 301, not_after=NOW + DAY))


@case("invite-sponsored-before-its-start", verify("not-yet-valid"))
def _invite_early(w: World) -> object:
    return w.sponsor(w.enrollment(w.net.invite(at=NOW + DAY)), NOW)


@case("certificate-ending-before-it-starts", verify("bad-validity"))
def _cert_backwards(w: World) -> object:
    return w.ingest(w.member_cert(not_before=T0, not_after=T0 - 1))


@case("invite-issued-by-expired-admin", verify("issuer-expired"))
def _admin_expired(w: World) -> object:
    admin = w.net.admin(not_after=T0 + 5)
    return w.sponsor(w.enrollment(w.net.invite(issuer=admin, at=T0 + 6)))


# --- chains and capabilities --------------------------------------------------------------


def _admin_cert(w: World, issuer: SigningKey, **kw: Any) -> tuple[SigningKey, Certificate]:
    key = SigningKey.generate()
    fields: dict[str, Any] = {
        "network_id": w.nid,
        "subject": key.public,
        "role": Role.ADMIN,
        "serial": os.urandom(16),
        "not_before": T0,
        "not_after": T0 + DAY,
        "caps": ALL_CAPS,
        "prefixes": (w.net.anchor.overlay,),
    }
    fields.update(kw)
    return key, make_certificate(issuer, **fields)


@case("admin-certified-by-an-admin", verify("chain-too-deep"))
def _admin_by_admin(w: World) -> object:
    first = w.net.admin()
    assert first.certificate is not None
    key, second = _admin_cert(w, first.key, chain=(first.certificate,))
    return w.ingest(w.member_cert(key, chain=(second,)))


@case("admin-certificate-carrying-a-chain", verify("chain-too-deep"))
def _admin_with_chain(w: World) -> object:
    first = w.net.admin()
    assert first.certificate is not None
    key, second = _admin_cert(w, w.net.root, chain=(first.certificate,))
    return w.ingest(w.member_cert(key, chain=(second,)))


@case("root-certificate-carrying-a-chain", verify("bad-chain"))
def _root_with_chain(w: World) -> object:
    admin = w.net.admin()
    assert admin.certificate is not None
    return w.ingest(w.member_cert(chain=(admin.certificate,)))


@case("certificate-chained-through-an-invite", verify("bad-chain"))
def _chain_through_invite(w: World) -> object:
    invite = w.net.invite()
    member = w.member_cert(SigningKey(invite.secret), chain=(invite.certificate,))
    return w.ingest(member)


@case("certificate-chain-naming-another-admin", verify("bad-chain"))
def _chain_other_admin(w: World) -> object:
    signer, named = w.net.admin(), w.net.admin()
    assert named.certificate is not None
    return w.ingest(w.member_cert(signer.key, chain=(named.certificate,)))


@case("admin-without-invite-capability-issues-invite", verify("missing-capability"))
def _admin_no_invite(w: World) -> object:
    admin = w.net.admin(Cap.REVOKE)
    assert admin.certificate is not None
    invite_key = SigningKey.generate()
    cert = make_certificate(
        admin.key,
        network_id=w.nid,
        subject=invite_key.public,
        role=Role.INVITE,
        serial=os.urandom(16),
        not_before=T0,
        not_after=T0 + DAY,
        max_uses=1,
        member_ttl=DAY,
        chain=(admin.certificate,),
    )
    invite = make_invite(invite_key, network=w.net.network, certificate=cert, bootstrap=())
    return w.sponsor(w.enrollment(invite))


@case("admin-without-invite-capability-certifies-member", verify("missing-capability"))
def _admin_no_invite_member(w: World) -> object:
    admin = w.net.admin(Cap.REVOKE)
    assert admin.certificate is not None
    return w.ingest(w.member_cert(admin.key, chain=(admin.certificate,)))


@case("admin-without-revoke-capability-revokes", verify("missing-capability"))
def _admin_no_revoke(w: World) -> object:
    admin = w.net.admin(Cap.INVITE)
    return w.ingest(w.net.revoke(w.founder.key.public, issuer=admin))


@case("member-certificate-with-capabilities", verify("bad-caps"))
def _member_caps(w: World) -> object:
    return w.ingest(w.member_cert(caps=Cap.INVITE))


@case("member-certificate-without-wireguard-key", verify("bad-certificate"))
def _member_no_wg(w: World) -> object:
    return w.ingest(w.member_cert(wg_key=b""))


@case("admin-certificate-gossiped-as-member", verify("bad-role"))
def _admin_as_member(w: World) -> object:
    admin = w.net.admin()
    assert admin.certificate is not None
    return w.ingest(admin.certificate)


@case("enrollment-under-a-member-certificate", verify("bad-role"))
def _enroll_under_member(w: World) -> object:
    key = SigningKey.generate()
    cert = w.member_cert(subject=key.public)
    fake = Invite(w.net.network, cert, key.seed, (), b"")
    return w.sponsor(w.enrollment(fake))


@case("invite-granting-prefix-outside-its-admin", verify("prefix-not-allowed"))
def _invite_prefix(w: World) -> object:
    admin = w.net.admin(prefixes=(ipaddress.ip_network("10.1.0.0/16"),))
    invite = w.net.invite(issuer=admin, prefixes=[ipaddress.ip_network("10.2.0.0/24")])
    return w.sponsor(w.enrollment(invite))


@case("network-record-gossiped", verify("not-gossiped"))
def _gossip_network(w: World) -> object:
    return w.ingest(w.net.network.raw)


@case("invite-record-gossiped", verify("not-gossiped"))
def _gossip_invite(w: World) -> object:
    return w.ingest(w.net.invite().raw)


# --- revocations --------------------------------------------------------------------------


@case("revocation-of-the-root-key", verify("bad-target"))
def _revoke_root(w: World) -> object:
    return w.ingest(w.net.revoke(w.net.root.public, Role.ADMIN))


@case("admin-revoking-the-root-key", verify("bad-target"))
def _admin_revokes_root(w: World) -> object:
    admin = w.net.admin()
    return w.ingest(w.net.revoke(w.net.root.public, Role.ADMIN, issuer=admin))


@case("revocation-from-root-carrying-a-chain", verify("bad-chain"))
def _root_rev_chain(w: World) -> object:
    admin = w.net.admin()
    assert admin.certificate is not None
    rev = make_revocation(
        w.net.root,
        network_id=w.nid,
        target=w.founder.key.public,
        target_role=Role.MEMBER,
        issued_at=NOW,
        expires_at=NOW + DAY,
        chain=(admin.certificate,),
    )
    return w.ingest(rev)


@case("invite-of-a-revoked-admin", verify("invite-revoked"))
def _revoked_admin_invite(w: World) -> object:
    admin = w.net.admin()
    invite = w.net.invite(issuer=admin)
    w.ingest(w.net.revoke(admin.key.public, Role.ADMIN))
    return w.sponsor(w.enrollment(invite))


@case("revoked-invite-redeemed", verify("invite-revoked"))
def _revoked_invite(w: World) -> object:
    invite = w.net.invite()
    w.ingest(w.net.revoke(invite.certificate.subject, Role.INVITE))
    return w.sponsor(w.enrollment(invite))


@case("member-of-a-revoked-admin-announces", verify("revoked"))
def _revoked_admin_member(w: World) -> object:
    admin = w.net.admin()
    node = w.join(w.net.invite(issuer=admin))
    w.ingest(w.net.revoke(admin.key.public, Role.ADMIN))
    member = w.state.member(node.key.public, NOW)
    assert member is not None
    assert member.reason == "issuer-revoked"
    return w.ingest(node.announce(w.net, NOW))


@case("member-of-a-revoked-invite-announces", verify("revoked"))
def _revoked_invite_member(w: World) -> object:
    invite = w.net.invite(uses=2)
    node = w.join(invite)
    w.ingest(w.net.revoke(invite.certificate.subject, Role.INVITE))
    return w.ingest(node.announce(w.net, NOW))


@case("revoked-member-announces", verify("revoked"))
def _revoked_member(w: World) -> object:
    node = w.join(w.net.invite())
    w.ingest(w.net.revoke(node.key.public))
    return w.ingest(node.announce(w.net, NOW))


@case("revoked-member-re-enrolls-with-its-key", verify("revoked"))
def _rejoin(w: World) -> object:
    node = w.join(w.net.invite())
    w.ingest(w.net.revoke(node.key.public))
    return w.sponsor(w.enrollment(w.net.invite(), key=node.key.public))


@case("revoked-member-readmitted-by-a-sponsor-that-skips-the-check", verify("revoked"))
def _readmitted(w: World) -> object:
    # A sponsor that does not check (or has not heard of the revocation: across a
    # partition) countersigns a new enrollment of the revoked key: its admission depends on
    # that key, and the member stays excluded wherever the revocation is known.
    node = w.join(w.net.invite())
    w.ingest(w.net.revoke(node.key.public))
    unaware = w.elsewhere()  # knows the founder, not the revocation
    enrollment = w.enrollment(w.net.invite(), at=T0 + 30, key=node.key.public)
    admission = unaware.sponsor(w.founder.key, enrollment, T0 + 30)
    w.ingest(admission)
    member = w.state.member(node.key.public, NOW)
    assert member is not None
    assert member.state.value == "revoked"
    return w.ingest(node.announce(w.net, NOW))


# --- invite use ---------------------------------------------------------------------------


@case("invite-used-twice-second-sponsor", verify("invite-used-up"))
def _used_twice(w: World) -> object:
    invite = w.net.invite()
    w.join(invite)
    return w.sponsor(w.enrollment(invite))


@case("conflicting-admissions-loser-announces", verify("revoked"))
def _conflict(w: World) -> object:
    # Two sponsors on two sides of a partition admit two joiners with a single-use invite.
    invite = w.net.invite()
    other = w.net.founder("other")
    w.ingest(other.credential)
    first = w.net.join(w.elsewhere(), w.founder, invite, "first", at=T0 + 10)
    second = w.net.join(w.elsewhere(other), other, invite, "second", at=T0 + 20)
    w.ingest(second.credential)
    w.ingest(first.credential)
    standing = [m.name for m in w.state.members(NOW) if m.state.value == "admitted"]
    assert "first" in standing
    assert "second" not in standing
    return w.ingest(second.announce(w.net, NOW))


@case("node-already-a-member-enrolls-again", verify("already-member"))
def _already(w: World) -> object:
    return w.sponsor(w.enrollment(w.net.invite(), key=w.founder.key.public))


# --- sponsors -----------------------------------------------------------------------------


@case("sponsor-that-is-not-a-member", verify("sponsor-not-member"))
def _not_member_sponsor(w: World) -> object:
    stranger = SigningKey.generate()
    return w.state.sponsor(stranger, w.enrollment(w.net.invite()), NOW)


@case("admin-issued-invite-outliving-the-admin", verify("outlives-issuer"))
def _invite_outlives_admin(w: World) -> object:
    admin = w.net.admin(not_after=T0 + DAY)
    invite = w.net.invite(issuer=admin, lifetime=2 * DAY)
    Verifier(w.net.anchor).certificate(invite.certificate)
    return invite


@case("enrollment-countersigned-again-later", verify("superseded-admission"))
def _countersigned_again(w: World) -> object:
    enrollment = w.enrollment(w.net.invite())
    w.ingest(make_admission(w.founder.key, enrollment=enrollment, admitted_at=NOW - 5))
    return w.ingest(make_admission(w.founder.key, enrollment=enrollment, admitted_at=NOW))


@case("revoked-sponsor-admits-after-its-revocation", Excluded("sponsor-not-member"))
def _revoked_sponsor(w: World) -> object:
    w.ingest(w.net.revoke(w.founder.key.public))
    enrollment = w.enrollment(w.net.invite())
    return w.ingest(make_admission(w.founder.key, enrollment=enrollment, admitted_at=NOW))


@case("sponsor-that-lost-an-invite-race-admits", Excluded("sponsor-not-member"))
def _loser_sponsor(w: World) -> object:
    invite = w.net.invite()
    winner = w.net.join(w.elsewhere(), w.founder, invite, "winner", at=T0 + 10)
    loser = w.net.join(w.elsewhere(), w.founder, invite, "loser", at=T0 + 20)
    w.ingest(winner.credential)
    w.ingest(loser.credential)
    assert w.state.member(loser.key.public, NOW).reason == "invite-used-up"  # type: ignore[union-attr]
    enrollment = w.enrollment(w.net.invite())
    return w.ingest(make_admission(loser.key, enrollment=enrollment, admitted_at=NOW))


# --- announcements ------------------------------------------------------------------------


@case("announcement-replayed", Ignored())
def _replay(w: World) -> object:
    ann = w.founder.announce(w.net, NOW)
    assert w.ingest(ann).new
    return w.ingest(ann.raw)


@case("announcement-with-older-seq", verify("stale-announcement"))
def _older(w: World) -> object:
    old = w.founder.announce(w.net, NOW)
    w.ingest(w.founder.announce(w.net, NOW))
    return w.ingest(old)


@case("announcement-replayed-after-superseded", verify("stale-announcement"))
def _replay_superseded(w: World) -> object:
    old = w.founder.announce(w.net, NOW)
    w.ingest(old)
    w.ingest(w.founder.announce(w.net, NOW))
    return w.ingest(old)


@case("announcement-prefix-outside-certificate", verify("prefix-not-allowed"))
def _ann_prefix(w: World) -> object:
    return w.ingest(w.founder.announce(w.net, NOW, prefixes=[ipaddress.ip_network("10.0.0.0/8")]))


@case("announcement-claims-another-members-address", verify("prefix-not-allowed"))
def _ann_hijack(w: World) -> object:
    node = w.join(w.net.invite(prefixes=[ipaddress.ip_network("10.9.0.0/16")]))
    member = w.state.member(w.founder.key.public, NOW)
    assert member is not None
    stolen = ipaddress.ip_network(f"{member.overlay}/128")
    return w.ingest(node.announce(w.net, NOW, prefixes=[stolen]))


@case("announcement-prefix-wider-than-granted", verify("prefix-not-allowed"))
def _ann_wider(w: World) -> object:
    node = w.join(w.net.invite(prefixes=[ipaddress.ip_network("10.9.0.0/16")]))
    return w.ingest(node.announce(w.net, NOW, prefixes=[ipaddress.ip_network("10.8.0.0/15")]))


# --- invite tokens ------------------------------------------------------------------------


def _tamper(text: str, raw: bytes, needle: bytes) -> str:
    """Change one base64 character whose six bits all fall inside ``needle``'s bytes."""
    start = raw.index(needle)
    end = start + len(needle)
    char = -(-start * 8 // 6) + 1  # the second character fully inside the field
    assert char * 6 + 6 <= end * 8
    position = len(TOKEN_PREFIX) + char
    return text[:position] + _swap(text[position]) + text[position + 1 :]


B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _swap(char: str) -> str:
    """Another base64 character: the same value with its lowest bit flipped."""
    return B64URL[B64URL.index(char) ^ 1]


def _token_case(mutate: Callable[[str, Invite], str]) -> Action:
    def action(w: World) -> object:
        text, invite = w.token()
        w.verify_token(text)  # the untouched token is good
        w.verify_token(mutate(text, invite))
        return None

    return action


case("token-of-another-version", DECODE)(_token_case(lambda t, i: "meshd2" + t[6:]))
case("token-of-another-program", DECODE)(_token_case(lambda t, i: "wgmesh" + t[6:]))
case("token-truncated", DECODE)(_token_case(lambda t, i: t[:-4]))
case("token-with-base64-padding", DECODE)(_token_case(lambda t, i: t + "="))
case("token-with-character-outside-alphabet", DECODE)(
    _token_case(lambda t, i: t[:10] + "+" + t[11:])
)
case("token-with-inner-space", DECODE)(_token_case(lambda t, i: t[:20] + " " + t[20:]))
case("token-too-long", DECODE)(_token_case(lambda t, i: t + "A" * 12_000))
case("token-non-canonical-last-character", DECODE)(_token_case(lambda t, i: t[:-1] + _swap(t[-1])))
case("token-tampered-in-envelope-header", DECODE)(
    _token_case(lambda t, i: t[:6] + ("B" if t[6] != "B" else "C") + t[7:])
)
case("token-tampered-in-secret", verify("bad-signature"))(
    _token_case(lambda t, i: _tamper(t, i.raw, i.secret))
)
case("token-tampered-in-signature", verify("bad-signature"))(
    _token_case(lambda t, i: _tamper(t, i.raw, i.signature))
)
case("token-tampered-in-root-key", verify("wrong-network"))(
    _token_case(lambda t, i: _tamper(t, i.raw, i.network.root_key))
)
case("token-tampered-in-certificate-signature", verify("bad-signature"))(
    _token_case(lambda t, i: _tamper(t, i.raw, i.certificate.signature))
)
case("token-tampered-in-bootstrap-address", verify("bad-signature"))(
    _token_case(lambda t, i: _tamper(t, i.raw, i.bootstrap[0].encode()))
)


@case("token-with-another-invites-secret-re-signed", verify("bad-secret"))
def _wrong_secret(w: World) -> object:
    invite = w.net.invite()
    items = body_items(invite)
    items[4] = SigningKey.generate().seed
    forged = sign_items(SigningKey(invite.secret), items)
    w.verify_token(TOKEN_PREFIX + b64url(forged))
    return None


@case("token-holding-a-member-certificate", verify("bad-role"))
def _token_member(w: World) -> object:
    key = SigningKey.generate()
    cert = w.member_cert(subject=key.public)
    invite = make_invite(key, network=w.net.network, certificate=cert, bootstrap=())
    w.verify_token(encode_token(invite))
    return None


@case("enrollment-signed-with-a-key-not-the-invites", verify("bad-signature"))
def _wrong_enrollment_key(w: World) -> object:
    invite = w.net.invite()
    items = body_items(w.enrollment(invite))
    forged = decode_record_untrusted(sign_items(SigningKey.generate(), items))
    assert isinstance(forged, Enrollment)
    return w.sponsor(forged)


# --- the table ----------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "expected"), CASES)
def test_hostile_input(action: Action, expected: Expected) -> None:
    world = World()
    before = world.state.digest()
    if isinstance(expected, Excluded):
        outcome = action(world)
        assert isinstance(outcome, Outcome)
        assert outcome.new
        record = outcome.record
        assert isinstance(record, Admission)
        member = world.state.member(record.enrollment.node_key, NOW)
        assert member is not None
        assert (member.state, member.reason) == (MemberState.REVOKED, expected.reason)
        return
    if isinstance(expected, Parked):
        outcome = action(world)
        assert isinstance(outcome, Outcome)
        assert outcome.pending
        assert not outcome.new
        assert outcome.stored == ()
        assert outcome.events == ()
        assert world.state.digest() == before
        return
    if isinstance(expected, Ignored):
        outcome = action(world)
        assert isinstance(outcome, Outcome)
        assert not outcome.new
        assert not outcome.pending
        assert outcome.stored == ()
        assert outcome.events == ()
        return
    with pytest.raises(MeshdError) as info:
        action(world)
    error = info.value
    assert type(error) is expected.error, f"{type(error).__name__}: {error}"
    if isinstance(error, VerifyError):
        assert error.reason == expected.reason, str(error)
    # Bytes that do not parse leave no trace in the state they were offered to.
    if isinstance(error, DecodeError):
        assert world.state.digest() == before


# --- members and former members against others' standing (rules a and b) -------------------


def _admitted(state: Membership, node_key: bytes) -> bool:
    member = state.member(node_key, NOW)
    return member is not None and member.state is MemberState.ADMITTED


def test_a_revoked_member_cannot_evict_with_a_copy_dated_earlier() -> None:
    """Attack: a revoked member countersigns, after its revocation, a copy of an honest
    member's enrollment dated before the honest admission. The honest member stays."""
    w = World()
    former = w.net.join(w.state, w.founder, w.net.invite(), "former", at=T0 + 10)
    honest = w.net.join(w.state, w.founder, w.net.invite(), "honest", at=T0 + 50)
    assert isinstance(honest.credential, Admission)
    revocation = w.net.revoke(former.key.public, at=T0 + 20)
    copy = make_admission(former.key, enrollment=honest.credential.enrollment, admitted_at=T0 + 30)
    for order in ((honest.credential, copy), (copy, honest.credential)):
        state = w.net.state()
        for record in (w.founder.credential, former.credential, revocation, *order):
            try:
                state.ingest(record, NOW)
            except VerifyError:
                continue
        assert _admitted(state, honest.key.public)
        assert record_id(honest.credential.raw) in state.record_ids()


def test_a_member_cannot_evict_with_a_copy_dated_before_its_own_admission() -> None:
    """Attack: a standing member countersigns a copy of an honest member's enrollment dated
    before the honest admission and before its own. The honest member stays."""
    w = World()
    honest = w.net.join(w.state, w.founder, w.net.invite(), "honest", at=T0 + 50)
    late = w.net.join(w.state, w.founder, w.net.invite(), "late", at=T0 + 60)
    assert isinstance(honest.credential, Admission)
    copy = make_admission(late.key, enrollment=honest.credential.enrollment, admitted_at=T0 + 40)
    for order in ((honest.credential, copy), (copy, honest.credential)):
        state = w.net.state()
        for record in (w.founder.credential, late.credential, *order):
            try:
                state.ingest(record, NOW)
            except VerifyError:
                continue
        assert _admitted(state, late.key.public)
        assert _admitted(state, honest.key.public)
        assert record_id(honest.credential.raw) in state.record_ids()


def test_a_revoked_member_cannot_admit_with_a_backdated_countersignature() -> None:
    """Attack: a revoked member countersigns, after its revocation, a stolen expired token's
    enrollment, dated inside the invite's window and before the revocation. Nobody is
    admitted, in whatever order the records arrive."""
    w = World()
    former = w.net.join(w.state, w.founder, w.net.invite(), "former", at=T0 + 10)
    stolen = w.net.invite(lifetime=60)  # ended at T0 + 60, before NOW
    revocation = w.net.revoke(former.key.public, at=T0 + 70)
    enrollment = w.enrollment(stolen, at=T0 + 30)
    admission = make_admission(former.key, enrollment=enrollment, admitted_at=T0 + 40)
    for order in ((revocation, admission), (admission, revocation)):
        state = w.net.state()
        for record in (w.founder.credential, former.credential, *order):
            try:
                state.ingest(record, NOW)
            except VerifyError:
                continue
        assert not _admitted(state, enrollment.node_key)


def test_a_revoked_member_cannot_take_an_invites_use_with_a_stolen_token() -> None:
    """Attack 2 aimed at an honest member: with the token of the invite an honest member
    redeemed, a revoked member countersigns a thief's enrollment dated before the honest
    admission. It admits no one and takes none of the invite's uses: the honest member
    stays."""
    w = World()
    former = w.net.join(w.state, w.founder, w.net.invite(), "former", at=T0 + 10)
    invite = w.net.invite()
    honest = w.net.join(w.state, w.founder, invite, "honest", at=T0 + 50)
    revocation = w.net.revoke(former.key.public, at=T0 + 60)
    enrollment = w.enrollment(invite, at=T0 + 20)
    admission = make_admission(former.key, enrollment=enrollment, admitted_at=T0 + 20)
    for order in ((honest.credential, admission), (admission, honest.credential)):
        state = w.net.state()
        for record in (w.founder.credential, former.credential, revocation, *order):
            try:
                state.ingest(record, NOW)
            except VerifyError:
                continue
        assert _admitted(state, honest.key.public)
        assert not _admitted(state, enrollment.node_key)
        assert state.invite_uses(invite.certificate.subject) == 1
