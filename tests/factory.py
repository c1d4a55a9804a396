"""Builders for trust-layer tests: a network with a root, members, invites and revocations."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from meshd.addressing import Prefix
from meshd.membership import Membership
from meshd.records import (
    ALL_CAPS,
    Admission,
    Announcement,
    Cap,
    Certificate,
    Invite,
    Revocation,
    Role,
    make_announcement,
    make_certificate,
    make_network,
    make_revocation,
    record_id,
)
from meshd.trust.chain import Anchor
from meshd.trust.invites import Issuer, create_invite, enroll
from meshd.trust.keys import SigningKey, WireGuardKey

T0 = 1_800_000_000
DAY = 86400


@dataclass
class Node:
    key: SigningKey
    wg: WireGuardKey
    name: str
    credential: Certificate | Admission
    seq: int = 0

    @property
    def enrollment_id(self) -> bytes:
        """The record id of the enrollment this member was admitted with."""
        assert isinstance(self.credential, Admission)
        return record_id(self.credential.enrollment.raw)

    def announce(self, net: Net, at: int, **kw: Any) -> Announcement:
        self.seq += 1
        return make_announcement(
            self.key, network_id=net.anchor.network_id, seq=self.seq, issued_at=at, **kw
        )


@dataclass
class Net:
    root: SigningKey = field(default_factory=SigningKey.generate)
    name: str = "testnet"

    def __post_init__(self) -> None:
        self.network = make_network(self.root, self.name, T0)
        self.anchor = Anchor.from_network(self.network)
        self.issuer = Issuer(self.root)

    def state(self, **kw: Any) -> Membership:
        return Membership(self.anchor, **kw)

    def admin(
        self,
        caps: Cap = ALL_CAPS,
        *,
        not_after: int = T0 + 365 * DAY,
        prefixes: tuple[Prefix, ...] = (),
    ) -> Issuer:
        key = SigningKey.generate()
        cert = make_certificate(
            self.root,
            network_id=self.anchor.network_id,
            subject=key.public,
            role=Role.ADMIN,
            serial=os.urandom(16),
            not_before=T0,
            not_after=not_after,
            caps=caps,
            name="admin",
            prefixes=prefixes or (self.anchor.overlay,),
        )
        return Issuer(key, cert)

    def founder(
        self, name: str = "founder", issuer: Issuer | None = None, not_after: int = T0 + 365 * DAY
    ) -> Node:
        issuer = issuer or self.issuer
        key, wg = SigningKey.generate(), WireGuardKey.generate()
        cert = make_certificate(
            issuer.key,
            network_id=self.anchor.network_id,
            subject=key.public,
            role=Role.MEMBER,
            serial=os.urandom(16),
            not_before=T0,
            not_after=not_after,
            name=name,
            wg_key=wg.public,
            chain=issuer.chain,
        )
        return Node(key, wg, name, cert)

    def invite(
        self,
        *,
        uses: int = 1,
        lifetime: int = DAY,
        at: int = T0,
        issuer: Issuer | None = None,
        **kw: Any,
    ) -> Invite:
        return create_invite(
            issuer or self.issuer, self.anchor, now=at, lifetime=lifetime, uses=uses, **kw
        )

    def join(
        self, state: Membership, sponsor: Node, invite: Invite, name: str, at: int = T0 + 10
    ) -> Node:
        key, wg = SigningKey.generate(), WireGuardKey.generate()
        enrollment = enroll(invite, node_key=key.public, wg_key=wg.public, name=name, now=at)
        admission = state.sponsor(sponsor.key, enrollment, at)
        return Node(key, wg, name, admission)

    def revoke(
        self,
        target: bytes,
        role: Role = Role.MEMBER,
        *,
        at: int = T0 + 20,
        issuer: Issuer | None = None,
        reason: str = "test",
        sponsored: Sequence[bytes] | None = (),
    ) -> Revocation:
        issuer = issuer or self.issuer
        return make_revocation(
            issuer.key,
            network_id=self.anchor.network_id,
            target=target,
            target_role=role,
            issued_at=at,
            expires_at=at + 400 * DAY,
            reason=reason,
            chain=issuer.chain,
            sponsored=sponsored,
        )
