"""Invites and their tokens (pure).

An invite is a fresh Ed25519 key certified by the root or an admin (role ``invite``), with a
validity window, a use limit, the prefixes its members may announce, and how long their
membership lasts. The token hands the invite's secret key to the joiner together with the
network definition, the certificate and bootstrap addresses; the whole payload is signed by the
invite key, so a token altered anywhere is refused.

Token text: ``meshd1`` followed by the URL-safe base64 (no padding) of the signed payload.
The version digit changes whenever the payload's layout does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from meshd.addressing import Prefix
from meshd.encoding import b64url, b64url_decode_untrusted
from meshd.errors import DecodeError, UsageError
from meshd.records import (
    Cap,
    Certificate,
    Enrollment,
    Invite,
    Role,
    decode_untrusted,
    make_certificate,
    make_enrollment,
    make_invite,
)
from meshd.trust.chain import Anchor
from meshd.trust.keys import SigningKey

TOKEN_PREFIX = "meshd1"  # noqa: S105 (a format marker, not a secret)
MAX_TOKEN_CHARS = 12_000
DEFAULT_MEMBER_TTL = 365 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Issuer:
    """A key that may issue certificates: the root, or an admin with its certificate."""

    key: SigningKey
    certificate: Certificate | None = None

    @property
    def chain(self) -> tuple[Certificate, ...]:
        return () if self.certificate is None else (self.certificate,)

    def require(self, cap: Cap) -> None:
        if self.certificate is not None and cap not in self.certificate.caps:
            raise UsageError(
                f"this admin key lacks the {(cap.name or '').lower()} capability",
                hint="ask the network's root holder for a key that has it",
            )


def create_invite(
    issuer: Issuer,
    anchor: Anchor,
    *,
    now: int,
    lifetime: int,
    uses: int = 1,
    name: str = "",
    prefixes: Sequence[Prefix] = (),
    member_ttl: int = DEFAULT_MEMBER_TTL,
    bootstrap: Sequence[str] = (),
) -> Invite:
    """Certify a fresh invite key and wrap it, with its secret, in a signed token payload."""
    issuer.require(Cap.INVITE)
    invite_key = SigningKey.generate()
    cert = make_certificate(
        issuer.key,
        network_id=anchor.network_id,
        subject=invite_key.public,
        role=Role.INVITE,
        serial=os.urandom(16),
        not_before=now,
        not_after=now + lifetime,
        name=name,
        prefixes=prefixes,
        max_uses=uses,
        member_ttl=member_ttl,
        chain=issuer.chain,
    )
    return make_invite(invite_key, network=anchor.network, certificate=cert, bootstrap=bootstrap)


def encode_token(invite: Invite) -> str:
    return TOKEN_PREFIX + b64url(invite.raw)


def looks_like_token(text: str) -> bool:
    return text.startswith(TOKEN_PREFIX)


def decode_token_untrusted(text: str) -> Invite:
    """Parse a token's text. Raises DecodeError only; checks no signature."""
    text = text.strip()
    if len(text) > MAX_TOKEN_CHARS:
        raise DecodeError("the invite token is too long")
    if not text.startswith("meshd"):
        raise DecodeError("this is not a meshd invite token (it should start with 'meshd1')")
    if not text.startswith(TOKEN_PREFIX):
        raise DecodeError("the invite token is of a version this meshd does not know")
    raw = b64url_decode_untrusted(text[len(TOKEN_PREFIX) :], what="invite token")
    return decode_untrusted(raw, Invite)


def enroll(invite: Invite, *, node_key: bytes, wg_key: bytes, name: str, now: int) -> Enrollment:
    """The joiner's side: sign an enrollment for this node with the invite's secret."""
    return make_enrollment(
        SigningKey(invite.secret),
        invite=invite.certificate,
        node_key=node_key,
        wg_key=wg_key,
        name=name,
        created_at=now,
    )


def anchor_of(invite: Invite) -> Anchor:
    """The trust anchor a token carries (its network record, self-signed by the root)."""
    return Anchor.from_network(invite.network)
