"""The signed records of a simulated network, built from one seed.

Keys come from the seeded random source and Ed25519 signatures are deterministic, so the
same seed gives the same bytes. Certificates are built once per member and shared by every
node that holds them (records are immutable bytes; each node's :class:`Membership` verifies
them itself).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final

from meshd.records import (
    Role,
    make_announcement,
    make_certificate,
    make_network,
    make_revocation,
)
from meshd.trust.chain import Anchor
from meshd.trust.keys import SigningKey, WireGuardKey, clamp_x25519

T0: Final = 1_800_000_000  # the simulated wall clock at t = 0 (records are valid from here)
_LIFETIME: Final = 10**7


@dataclass
class SimNetwork:
    """A root, and member keys and certificates made on demand (member ``i`` is node ``i``)."""

    rng: random.Random
    root: SigningKey = field(init=False)
    anchor: Anchor = field(init=False)
    _keys: dict[int, SigningKey] = field(default_factory=dict)
    _certs: dict[int, bytes] = field(default_factory=dict)
    _seq: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = SigningKey(self.rng.randbytes(32))
        self.anchor = Anchor.from_network(make_network(self.root, "sim", T0))

    def key(self, member: int) -> SigningKey:
        if member not in self._keys:
            self._keys[member] = SigningKey(self.rng.randbytes(32))
        return self._keys[member]

    def certificate(self, member: int) -> bytes:
        if member not in self._certs:
            self._certs[member] = make_certificate(
                self.root,
                network_id=self.anchor.network_id,
                subject=self.key(member).public,
                role=Role.MEMBER,
                serial=self.rng.randbytes(16),
                not_before=T0,
                not_after=T0 + _LIFETIME,
                name=f"m{member}",
                wg_key=WireGuardKey(clamp_x25519(self.rng.randbytes(32))).public,
            ).raw
        return self._certs[member]

    def announcement(self, member: int, at: float) -> bytes:
        """The member's next announcement (sequence number one higher than its last)."""
        seq = self._seq.get(member, 0) + 1
        self._seq[member] = seq
        return make_announcement(
            self.key(member),
            network_id=self.anchor.network_id,
            seq=seq,
            issued_at=T0 + int(at),
            endpoints=(f"192.0.2.{member % 250 + 1}:51820",),
            addrs=(f"/ip4/192.0.2.{member % 250 + 1}/tcp/4001",),
        ).raw

    def revocation(self, member: int, at: float) -> bytes:
        return make_revocation(
            self.root,
            network_id=self.anchor.network_id,
            target=self.key(member).public,
            target_role=Role.MEMBER,
            issued_at=T0 + int(at),
            expires_at=T0 + _LIFETIME,
            reason="sim",
        ).raw
