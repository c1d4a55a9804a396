"""Encode/decode round trips of every record kind, the signed body, and invite tokens."""

from __future__ import annotations

import ipaddress
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshd.addressing import Prefix
from meshd.encoding import pack
from meshd.records import (
    ALL_CAPS,
    CONTEXTS,
    MAX_ENDPOINTS,
    MAX_NAME,
    MAX_PREFIXES,
    MAX_REASON,
    MAX_RECORD,
    MAX_SPONSORED,
    U64,
    VERSION,
    Cap,
    Kind,
    Record,
    Revocation,
    Role,
    decode_record_untrusted,
    kind_of,
    make_admission,
    make_announcement,
    make_certificate,
    make_enrollment,
    make_invite,
    make_network,
    make_revocation,
    record_id,
    signed_body,
)
from meshd.trust.chain import Anchor, Verifier, check_signature
from meshd.trust.invites import decode_token_untrusted, encode_token, looks_like_token
from meshd.trust.keys import SigningKey
from tests.factory import DAY, T0, Net

# Printable text that every text field accepts: letters, marks, digits, punctuation, symbols
# and the ASCII space.
PRINTABLE = st.characters(categories=["L", "M", "N", "P", "S"], include_characters=" ")


def text_of(max_bytes: int) -> st.SearchStrategy[str]:
    """Printable text of at most ``max_bytes`` UTF-8 bytes."""
    return st.text(PRINTABLE, max_size=max_bytes).map(
        lambda s: s.encode()[:max_bytes].decode(errors="ignore")
    )


names = text_of(MAX_NAME)
endpoints = st.lists(text_of(64), max_size=MAX_ENDPOINTS)
addrs = st.lists(text_of(256), max_size=MAX_ENDPOINTS)
u64 = st.integers(0, U64)
keys = st.binary(min_size=32, max_size=32).map(SigningKey)
blobs32 = st.binary(min_size=32, max_size=32)
serials = st.binary(min_size=16, max_size=16)


@st.composite
def prefix(draw: st.DrawFn) -> Prefix:
    if draw(st.booleans()):
        length = draw(st.integers(0, 32))
        return ipaddress.IPv4Network((draw(st.integers(0, 2**32 - 1)), length), strict=False)
    length = draw(st.integers(0, 128))
    return ipaddress.IPv6Network((draw(st.integers(0, 2**128 - 1)), length), strict=False)


prefixes = st.lists(prefix(), max_size=MAX_PREFIXES)


def assert_round_trip(record: Record) -> None:
    """Decoding the bytes gives the same record, whose signature covers its body."""
    decoded = decode_record_untrusted(record.raw)
    assert decoded == record
    assert type(decoded) is type(record)
    outer = msgpack.unpackb(record.raw)
    assert outer == [signed_body(record), record.signature]
    assert msgpack.unpackb(signed_body(record))[:2] == [int(kind_of(record)), VERSION]
    check_signature(decoded)
    assert record_id(decoded.raw) == record_id(record.raw)


@given(keys, names, u64)
def test_network_round_trip(root: SigningKey, name: str, created: int) -> None:
    network = make_network(root, name, created)
    assert (network.root_key, network.name, network.created_at) == (root.public, name, created)
    assert_round_trip(network)


@given(
    keys,
    blobs32,
    st.sampled_from(Role),
    serials,
    u64,
    u64,
    st.sampled_from([Cap.NONE, Cap.INVITE, Cap.REVOKE, ALL_CAPS]),
    names,
    prefixes,
    st.integers(0, 1_000_000),
    u64,
    st.sampled_from([b"", bytes(range(32))]),
)
def test_certificate_round_trip(
    issuer: SigningKey,
    subject: bytes,
    role: Role,
    serial: bytes,
    not_before: int,
    not_after: int,
    caps: Cap,
    name: str,
    granted: list[Prefix],
    max_uses: int,
    member_ttl: int,
    wg_key: bytes,
) -> None:
    net = Net()
    admin = net.admin()
    cert = make_certificate(
        issuer,
        network_id=net.anchor.network_id,
        subject=subject,
        role=role,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        caps=caps,
        name=name,
        prefixes=granted,
        max_uses=max_uses,
        member_ttl=member_ttl,
        wg_key=wg_key,
        chain=admin.chain,
    )
    assert cert.role is role
    assert cert.caps == caps
    assert cert.prefixes == tuple(granted)
    assert cert.chain == admin.chain
    assert (cert.not_before, cert.not_after, cert.max_uses, cert.member_ttl) == (
        not_before,
        not_after,
        max_uses,
        member_ttl,
    )
    assert (cert.name, cert.wg_key, cert.subject, cert.serial) == (name, wg_key, subject, serial)
    assert_round_trip(cert)


@given(keys, blobs32, blobs32, names, u64, u64)
def test_enrollment_and_admission_round_trip(
    sponsor: SigningKey,
    node_key: bytes,
    wg_key: bytes,
    name: str,
    created: int,
    admitted: int,
) -> None:
    net = Net()
    invite = net.invite()
    enrollment = make_enrollment(
        SigningKey(invite.secret),
        invite=invite.certificate,
        node_key=node_key,
        wg_key=wg_key,
        name=name,
        created_at=created,
    )
    assert enrollment.invite == invite.certificate
    assert (enrollment.node_key, enrollment.wg_key, enrollment.name) == (node_key, wg_key, name)
    assert enrollment.created_at == created
    assert_round_trip(enrollment)
    admission = make_admission(sponsor, enrollment=enrollment, admitted_at=admitted)
    assert admission.enrollment == enrollment
    assert (admission.sponsor, admission.admitted_at) == (sponsor.public, admitted)
    assert_round_trip(admission)


@given(keys, u64, u64, endpoints, addrs, prefixes, st.booleans())
def test_announcement_round_trip(
    node: SigningKey,
    seq: int,
    issued: int,
    eps: list[str],
    libp2p: list[str],
    announced: list[Prefix],
    relays: bool,
) -> None:
    ann = make_announcement(
        node,
        network_id=bytes(16),
        seq=seq,
        issued_at=issued,
        endpoints=eps,
        addrs=libp2p,
        prefixes=announced,
        relays=relays,
    )
    assert (ann.node_key, ann.seq, ann.issued_at) == (node.public, seq, issued)
    assert (ann.endpoints, ann.addrs, ann.prefixes) == (tuple(eps), tuple(libp2p), tuple(announced))
    assert ann.relays is relays
    assert_round_trip(ann)


@given(
    keys,
    blobs32,
    st.sampled_from(Role),
    u64,
    u64,
    text_of(MAX_REASON),
    st.booleans(),
    st.none() | st.lists(st.binary(min_size=16, max_size=16), max_size=MAX_SPONSORED),
)
def test_revocation_round_trip(
    issuer: SigningKey,
    target: bytes,
    role: Role,
    issued: int,
    expires: int,
    reason: str,
    with_chain: bool,
    sponsored: list[bytes] | None,
) -> None:
    net = Net()
    chain = net.admin().chain if with_chain else ()
    rev = make_revocation(
        issuer,
        network_id=net.anchor.network_id,
        target=target,
        target_role=role,
        issued_at=issued,
        expires_at=expires,
        reason=reason,
        chain=chain,
        sponsored=sponsored,
    )
    # None: a legacy revocation (9 body items, no list).
    assert rev.sponsored == (None if sponsored is None else tuple(sorted(set(sponsored))))
    assert rev.legacy is (sponsored is None)
    assert (rev.target, rev.target_role, rev.issued_at, rev.expires_at) == (
        target,
        role,
        issued,
        expires,
    )
    assert (rev.reason, rev.chain) == (reason, chain)
    assert_round_trip(rev)


def test_a_legacy_revocation_decodes_unchanged() -> None:
    """A revocation in the layout written before the ``sponsored`` list (9 body items),
    encoded here by hand and signed under the revocation context, decodes as legacy: no list,
    the same bytes, the same record id. make_revocation(sponsored=None) writes exactly it."""
    net = Net()
    target = SigningKey.generate().public
    body = pack(
        [
            int(Kind.REVOCATION),
            VERSION,
            net.anchor.network_id,
            net.root.public,
            target,
            int(Role.MEMBER),
            T0 + 20,
            T0 + 400 * DAY,
            "left",
            [],
        ]
    )
    raw = pack([body, net.root.sign(CONTEXTS[Kind.REVOCATION], body)])
    rev = decode_record_untrusted(raw)
    assert isinstance(rev, Revocation)
    assert rev.legacy
    assert rev.sponsored is None
    assert (rev.target, rev.issued_at, rev.reason, rev.raw) == (target, T0 + 20, "left", raw)
    assert record_id(rev.raw) == record_id(raw)
    Verifier(net.anchor).revocation(rev)
    built = make_revocation(
        net.root,
        network_id=net.anchor.network_id,
        target=target,
        target_role=Role.MEMBER,
        issued_at=T0 + 20,
        expires_at=T0 + 400 * DAY,
        reason="left",
        sponsored=None,
    )
    assert built.raw == raw
    # With an empty list it is another record (10 items), not legacy.
    listed = make_revocation(
        net.root,
        network_id=net.anchor.network_id,
        target=target,
        target_role=Role.MEMBER,
        issued_at=T0 + 20,
        expires_at=T0 + 400 * DAY,
        reason="left",
    )
    assert listed.sponsored == ()
    assert not listed.legacy
    assert listed.raw != raw


@given(names, prefixes, addrs, st.integers(1, 1_000_000), st.booleans())
def test_invite_and_token_round_trip(
    name: str, granted: list[Prefix], bootstrap: list[str], uses: int, by_admin: bool
) -> None:
    net = Net()
    issuer = net.admin(prefixes=(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")))
    invite = net.invite(
        uses=uses,
        name=name,
        prefixes=granted,
        bootstrap=bootstrap,
        issuer=issuer if by_admin else None,
    )
    assert invite.bootstrap == tuple(bootstrap)
    assert invite.certificate.prefixes == tuple(granted)
    assert invite.certificate.max_uses == uses
    assert_round_trip(invite)

    token = encode_token(invite)
    assert looks_like_token(token)
    assert token.isascii()
    assert token.isprintable()
    assert decode_token_untrusted(token) == invite
    assert decode_token_untrusted(f"  {token}\n") == invite
    Verifier(net.anchor).invite(decode_token_untrusted(token))
    assert Anchor.from_network(invite.network) == net.anchor


def test_make_invite_binds_the_secret() -> None:
    net = Net()
    invite_key = SigningKey.generate()
    cert = make_certificate(
        net.root,
        network_id=net.anchor.network_id,
        subject=invite_key.public,
        role=Role.INVITE,
        serial=bytes(16),
        not_before=T0,
        not_after=T0 + DAY,
        max_uses=1,
    )
    invite = make_invite(invite_key, network=net.network, certificate=cert, bootstrap=())
    assert invite.secret == invite_key.seed
    assert invite.signer == invite_key.public


# --- the signed body around the bin 8 / bin 16 boundary ----------------------------------


def announcement_with_body(size: int) -> Record:
    """An announcement whose body is exactly ``size`` bytes (padded with endpoints and an
    address)."""
    node = SigningKey(bytes(range(32)))

    def body(eps: list[str], addr: str) -> bytes:
        return pack(
            [int(Kind.ANNOUNCEMENT), VERSION, bytes(16), node.public, 1, T0, eps, [addr], []]
        )

    for extra in range(3):
        eps = ["e"] * extra
        for length in range(257):
            if len(body(eps, "a" * length)) == size:
                ann = make_announcement(
                    node,
                    network_id=bytes(16),
                    seq=1,
                    issued_at=T0,
                    endpoints=eps,
                    addrs=["a" * length],
                )
                assert signed_body(ann) == body(eps, "a" * length)
                return ann
    raise AssertionError(f"no announcement body of {size} bytes")


@pytest.mark.parametrize("size", [*range(150, 160), *range(250, 262)])
def test_signed_body_is_the_body_inside_the_encoding(size: int) -> None:
    ann = announcement_with_body(size)
    body, signature = msgpack.unpackb(ann.raw)
    assert signed_body(ann) == body
    assert signature == ann.signature
    assert ann.raw == pack([body, signature])
    header = 2 if size <= 255 else 3
    assert len(ann.raw) == 1 + header + size + 2 + 64
    check_signature(ann)


@pytest.mark.parametrize("kind", list(Kind))
def test_contexts_are_distinct_and_name_their_kind(kind: Kind) -> None:
    assert CONTEXTS[kind] == f"meshd/v1/{kind.name.lower()}\x00".encode()
    assert len(set(CONTEXTS.values())) == len(Kind)


@given(st.lists(st.binary(max_size=20), max_size=12), st.integers(0, 2**32))
def test_signed_body_of_any_length(padding: list[bytes], salt: int) -> None:
    # Bodies from tens of bytes to several hundred: the split never misses a byte.
    node = SigningKey(bytes(32))
    ann = make_announcement(
        node,
        network_id=bytes(16),
        seq=salt,
        issued_at=T0,
        addrs=[p.hex() for p in padding],
    )
    outer: list[Any] = msgpack.unpackb(ann.raw)
    assert signed_body(ann) == outer[0]


def test_the_largest_revocation_fits_in_a_record() -> None:
    """An admin's revocation with the longest reason, a chain of an admin certificate with
    the most prefixes, and the most sponsored ids, fits in MAX_RECORD (with room left for the
    admin certificate's longest name)."""
    net = Net()
    prefixes = tuple(ipaddress.ip_network(f"fd00:{n:x}::/32") for n in range(MAX_PREFIXES))
    admin = net.admin(prefixes=prefixes)
    assert len(admin.chain[0].raw) > 700
    rev = make_revocation(
        admin.key,
        network_id=net.anchor.network_id,
        target=bytes(32),
        target_role=Role.MEMBER,
        issued_at=U64,
        expires_at=U64,
        reason="\u00e9" * (MAX_REASON // 2),
        chain=admin.chain,
        sponsored=[n.to_bytes(16, "big") for n in range(MAX_SPONSORED)],
    )
    assert len(rev.raw) + MAX_NAME <= MAX_RECORD
