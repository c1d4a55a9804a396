"""Ingesting what a sync brings, with the signature checks off the event loop.

A sync can bring thousands of records, and each Ed25519 check costs ~55 us: run on the trio
thread, a new node's first sync of 10,000 members would stall every other task (gossip
heartbeats, Babel Hellos, the control socket) for about half a second. An announcement's
signature depends on nothing but the record itself, so announcements are checked in a worker
thread (libsodium releases the GIL) while the loop runs on; the membership core then merges
them on the trio thread, skipping only that one check. Credentials and revocations are few and
are verified in full by the core.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

import trio

from meshd.membership import decode_batch_untrusted
from meshd.records import Announcement, Record
from meshd.trust.announced import drop_bad_announcement_signatures

THREAD_MIN: Final = 16
"""Fewer announcements than this are checked in line by the core: a thread hop costs more."""


@dataclass(frozen=True, slots=True)
class Checked:
    """Records ready for Membership.merge_batch (or NodeState.merge_batch)."""

    records: list[Record]
    rejected: list[str]  # a reason per record refused here
    announcements_checked: bool  # every announcement in ``records`` has a good signature


Admit = Callable[[list[Record]], list[Record]]
"""Keeps the records the peer's budget lets us verify (meshd.daemon.gate.PeerGate)."""


async def check_sync_records(raws: Iterable[bytes], admit: Admit | None = None) -> Checked:
    """Decode records a sync peer pushed, keep those ``admit`` lets through, and check
    their announcements' signatures. Decoding is cheap; verifying is what a budget bounds."""
    records, rejected = decode_batch_untrusted(raws)
    if admit is not None:
        records = admit(records)
    if sum(type(r) is Announcement for r in records) < THREAD_MIN:
        return Checked(records, rejected, announcements_checked=False)
    kept, refused = await trio.to_thread.run_sync(drop_bad_announcement_signatures, records)
    return Checked(kept, rejected + refused, announcements_checked=True)
