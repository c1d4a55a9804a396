"""Member views made by hand for the mesh-state tests (no signatures: the core never checks)."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import replace

from meshd.membership import Member, MemberState
from meshd.records import Announcement
from meshd.trust.keys import NodeKey, WgKey

NETWORK = b"\x01" * 32
OVERLAY = ipaddress.IPv6Network("fd00:1:2::/48")


def key(seed: int | str, purpose: str = "node") -> bytes:
    return hashlib.sha256(f"{purpose}:{seed}".encode()).digest()


def member(
    seed: int | str,
    *,
    wg: int | str | None = None,
    state: MemberState = MemberState.ADMITTED,
    admitted_at: int = 1000,
    endpoints: tuple[str, ...] | None = ("192.0.2.1:51820",),
) -> Member:
    node_key = key(seed)
    announcement = None
    if endpoints is not None:
        announcement = Announcement(
            NETWORK, NodeKey(node_key), 1, admitted_at, endpoints, (), (), b""
        )
    iid = int.from_bytes(hashlib.sha256(node_key).digest()[:8], "big")
    return Member(
        node_key=NodeKey(node_key),
        node_id=node_key.hex()[:20],
        name=str(seed),
        wg_key=WgKey(key(seed if wg is None else wg, "wg")),
        overlay=OVERLAY.network_address + iid,
        state=state,
        reason="" if state is MemberState.ADMITTED else "test",
        admitted_at=admitted_at,
        not_after=admitted_at + 10**6,
        announcement=announcement,
        last_seen=admitted_at,
    )


def relay(m: Member) -> Member:
    """``m`` with an announcement that says it relays (``Announcement.relays``)."""
    assert m.announcement is not None
    return replace(m, announcement=replace(m.announcement, relays=True))
