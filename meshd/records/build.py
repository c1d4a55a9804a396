"""Building and signing records (for this node's own records, and for tests)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from meshd.addressing import Prefix
from meshd.encoding import pack
from meshd.records.announcement import Announcement
from meshd.records.decode import decode_untrusted
from meshd.records.ids import record_id
from meshd.records.types import (
    CONTEXTS,
    HANDOVER_ACCEPT_CONTEXT,
    VERSION,
    AdminHandover,
    Admission,
    Cap,
    Certificate,
    Enrollment,
    Handover,
    Invite,
    Kind,
    Leave,
    Network,
    Renewal,
    Revocation,
    Role,
    Rollover,
    WgRotation,
    handover_acceptance,
)
from meshd.trust.keys import SigningKey


def encode_prefix(prefix: Prefix) -> list[Any]:
    return [prefix.network_address.packed, prefix.prefixlen]


def _seal(kind: Kind, fields: Sequence[Any], key: SigningKey) -> bytes:
    body = pack([int(kind), VERSION, *fields])
    return pack([body, key.sign(CONTEXTS[kind], body)])


def seal_unsigned(kind: Kind, fields: Sequence[Any], signature: bytes) -> bytes:
    """Encode a record with a given signature (tests use it to build hostile records)."""
    return pack([pack([int(kind), VERSION, *fields]), signature])


def make_network(root: SigningKey, name: str, created_at: int) -> Network:
    return decode_untrusted(_seal(Kind.NETWORK, [root.public, name, created_at], root), Network)


def make_certificate(
    issuer: SigningKey,
    *,
    network_id: bytes,
    subject: bytes,
    role: Role,
    serial: bytes,
    not_before: int,
    not_after: int,
    caps: Cap = Cap.NONE,
    name: str = "",
    prefixes: Sequence[Prefix] = (),
    max_uses: int = 0,
    member_ttl: int = 0,
    wg_key: bytes = b"",
    chain: Sequence[Certificate] = (),
) -> Certificate:
    fields = [
        network_id,
        issuer.public,
        subject,
        int(role),
        serial,
        not_before,
        not_after,
        int(caps),
        name,
        [encode_prefix(p) for p in prefixes],
        max_uses,
        member_ttl,
        wg_key,
        [c.raw for c in chain],
    ]
    return decode_untrusted(_seal(Kind.CERTIFICATE, fields, issuer), Certificate)


def recertify(
    issuer: SigningKey,
    cert: Certificate,
    *,
    network_id: bytes,
    not_before: int,
    not_after: int,
    subject: bytes | None = None,
    serial: bytes | None = None,
) -> Certificate:
    """``cert`` certified again by ``issuer``: the same role, capabilities, name and prefixes,
    for ``subject`` (``cert``'s own by default: a renewal, or the same key under a new root;
    another key: its successor), with a fresh random serial unless one is given."""
    return make_certificate(
        issuer,
        network_id=network_id,
        subject=cert.subject if subject is None else subject,
        role=cert.role,
        serial=os.urandom(16) if serial is None else serial,
        not_before=not_before,
        not_after=not_after,
        caps=cert.caps,
        name=cert.name,
        prefixes=cert.prefixes,
    )


def make_enrollment(
    invite_key: SigningKey,
    *,
    invite: Certificate,
    node_key: bytes,
    wg_key: bytes,
    name: str,
    created_at: int,
) -> Enrollment:
    fields = [invite.network_id, invite.raw, node_key, wg_key, name, created_at]
    return decode_untrusted(_seal(Kind.ENROLLMENT, fields, invite_key), Enrollment)


def make_admission(sponsor: SigningKey, *, enrollment: Enrollment, admitted_at: int) -> Admission:
    fields = [enrollment.network_id, sponsor.public, admitted_at, enrollment.raw]
    return decode_untrusted(_seal(Kind.ADMISSION, fields, sponsor), Admission)


def make_announcement(
    node: SigningKey,
    *,
    network_id: bytes,
    seq: int,
    issued_at: int,
    endpoints: Sequence[str] = (),
    addrs: Sequence[str] = (),
    prefixes: Sequence[Prefix] = (),
    relays: bool = False,
) -> Announcement:
    """``relays``: this member relays for others (a 10th body item, true); a member that
    does not writes the 9 items of before, byte for byte."""
    fields: list[object] = [
        network_id,
        node.public,
        seq,
        issued_at,
        list(endpoints),
        list(addrs),
        [encode_prefix(p) for p in prefixes],
    ]
    if relays:
        fields.append(True)
    return decode_untrusted(_seal(Kind.ANNOUNCEMENT, fields, node), Announcement)


def make_revocation(
    issuer: SigningKey,
    *,
    network_id: bytes,
    target: bytes,
    target_role: Role,
    issued_at: int,
    expires_at: int,
    reason: str = "",
    chain: Sequence[Certificate] = (),
    sponsored: Iterable[bytes] | None = (),
) -> Revocation:
    """``sponsored``: ids of the enrollments whose admissions countersigned by the target (or
    by members under it) keep standing (any order; repeats are dropped). None writes a legacy
    revocation (the 9-item layout, without the list), as releases before the list did."""
    fields: list[object] = [
        network_id,
        issuer.public,
        target,
        int(target_role),
        issued_at,
        expires_at,
        reason,
        [c.raw for c in chain],
    ]
    if sponsored is not None:
        fields.append(sorted(set(sponsored)))
    return decode_untrusted(_seal(Kind.REVOCATION, fields, issuer), Revocation)


def make_invite(
    invite_key: SigningKey,
    *,
    network: Network,
    certificate: Certificate,
    bootstrap: Sequence[str],
) -> Invite:
    fields = [network.raw, certificate.raw, invite_key.seed, list(bootstrap)]
    return decode_untrusted(_seal(Kind.INVITE, fields, invite_key), Invite)


def make_wg_rotation(
    node: SigningKey, *, network_id: bytes, counter: int, issued_at: int, wg_key: bytes
) -> WgRotation:
    """A member's switch to the WireGuard public key ``wg_key`` (``counter`` from 1 up)."""
    fields = [network_id, node.public, counter, issued_at, wg_key]
    return decode_untrusted(_seal(Kind.WG_ROTATION, fields, node), WgRotation)


def make_renewal(
    issuer: SigningKey,
    *,
    network_id: bytes,
    subject: bytes,
    issued_at: int,
    not_after: int,
    role: Role = Role.MEMBER,
    chain: Sequence[Certificate] = (),
) -> Renewal:
    """Extend the standing of the member whose node key is ``subject`` to ``not_after``."""
    fields = [network_id, issuer.public, subject, int(role), issued_at, not_after]
    fields.append([c.raw for c in chain])
    return decode_untrusted(_seal(Kind.RENEWAL, fields, issuer), Renewal)


def make_rollover(
    old_root: SigningKey, *, network_id: bytes, new_root: bytes, issued_at: int, overlap_until: int
) -> Rollover:
    """The root ``old_root`` hands the network to ``new_root``; certificates under the old
    root are accepted until ``overlap_until``."""
    fields = [network_id, old_root.public, new_root, issued_at, overlap_until]
    return decode_untrusted(_seal(Kind.ROLLOVER, fields, old_root), Rollover)


def make_handover(
    old: SigningKey,
    new: SigningKey,
    *,
    network_id: bytes,
    issued_at: int,
    wg_key: bytes,
    credential: Certificate | Admission | Handover,
    sponsored: Iterable[bytes] = (),
    legacy: bool = False,
) -> Handover:
    """The member holding ``old`` hands its membership to ``new`` (which accepts it).

    ``credential``: the old key's credential. A hand-over is flat: when the old key got its
    membership by a hand-over, the record names that one by id (``previous``) and carries the
    enrolled credential it started from, so its size does not grow along a chain. ``legacy``
    writes the 8-item layout of releases before, which nests ``credential`` as it is."""
    accepted = new.sign(
        HANDOVER_ACCEPT_CONTEXT, handover_acceptance(network_id, old.public, new.public)
    )
    previous = b""
    if isinstance(credential, Handover) and not legacy:
        previous = record_id(credential.raw)
        while isinstance(credential, Handover):
            credential = credential.credential
    fields: list[object] = [
        network_id,
        old.public,
        new.public,
        issued_at,
        wg_key,
        credential.raw,
        sorted(set(sponsored)),
        accepted,
    ]
    if not legacy:
        fields.append(previous)
    return decode_untrusted(_seal(Kind.HANDOVER, fields, old), Handover)


def make_admin_handover(
    root: SigningKey,
    *,
    network_id: bytes,
    old_cert: Certificate,
    new_cert: Certificate,
    issued_at: int,
) -> AdminHandover:
    """The root ``root`` hands the admin key of ``old_cert`` over to ``new_cert``'s subject:
    the old key's records dated up to ``issued_at`` keep standing, none dated later does."""
    fields = [network_id, root.public, old_cert.raw, new_cert.raw, issued_at]
    return decode_untrusted(_seal(Kind.ADMIN_HANDOVER, fields, root), AdminHandover)


def make_leave(node: SigningKey, *, network_id: bytes, issued_at: int, reason: str = "") -> Leave:
    """The member holding ``node`` leaves the network."""
    fields = [network_id, node.public, issued_at, reason]
    return decode_untrusted(_seal(Kind.LEAVE, fields, node), Leave)
