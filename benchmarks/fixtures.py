"""Records the benchmarks build their networks from."""

from __future__ import annotations

import os

from meshd.records import Role, make_certificate
from meshd.trust.chain import Anchor
from meshd.trust.keys import SigningKey, WireGuardKey

T0 = 1_800_000_000  # the benchmarks' clock: every record is valid from here on


def member_certificate(root: SigningKey, anchor: Anchor, key: SigningKey, name: str) -> bytes:
    """A member certificate for ``key``, issued directly by the root, valid from T0 on."""
    return make_certificate(
        root,
        network_id=anchor.network_id,
        subject=key.public,
        role=Role.MEMBER,
        serial=os.urandom(16),
        not_before=T0,
        not_after=T0 + 10**7,
        name=name,
        wg_key=WireGuardKey.generate().public,
    ).raw
