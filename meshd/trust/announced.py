"""Announcements' signatures and announced prefixes, checked (pure; no clock, no I/O).

An announcement is signed by the member it names, so its check needs no chain
(meshd.trust.chain checks the rest of a record's trust). A batch's signatures are checked
apart from the membership core, in a worker thread if the shell wants (libsodium releases
the GIL): :func:`check_announcement_signatures`, :func:`drop_bad_announcement_signatures`.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshd.addressing import Prefix, prefix_within
from meshd.errors import VerifyError
from meshd.records import CONTEXTS, Announcement, Kind, Record
from meshd.trust.keys import verify

_ANNOUNCEMENT_CONTEXT = CONTEXTS[Kind.ANNOUNCEMENT]


def check_announcement_signature(announcement: Announcement) -> None:
    """Raise VerifyError unless the announcement is signed by the member it names."""
    # A decoded record's envelope is already known to be canonical: its body is the bytes
    # between the bin header (2 bytes, or 3 for bodies over 255) and the signature.
    raw = announcement.raw
    body = raw[3:-66] if raw[1] == 0xC4 else raw[4:-66]
    verify(announcement.node_key, _ANNOUNCEMENT_CONTEXT, body, announcement.signature)


def check_announcement_signatures(
    announcements: Sequence[Announcement],
) -> list[VerifyError | None]:
    """Check a batch of announcement signatures; one result per announcement.

    Pure and free of shared state, so a shell may run it in a worker thread (libsodium releases
    the GIL) while the membership core merges the previous batch, then pass
    ``signature_checked=True`` to :meth:`Membership.ingest` for those that passed.
    """
    results: list[VerifyError | None] = []
    for announcement in announcements:
        try:
            check_announcement_signature(announcement)
        except VerifyError as exc:
            results.append(exc)
        else:
            results.append(None)
    return results


def drop_bad_announcement_signatures(
    records: Sequence[Record],
) -> tuple[list[Record], list[str]]:
    """``records`` without the announcements whose signature does not verify, and the
    reason for each one left out. Pure: a shell may run it in a worker thread."""
    announcements = [r for r in records if isinstance(r, Announcement)]
    results = check_announcement_signatures(announcements)
    refused = {id(a) for a, error in zip(announcements, results, strict=True) if error}
    if not refused:
        return list(records), []
    reasons = [error.reason for error in results if error]
    return [r for r in records if id(r) not in refused], reasons


def check_announced_prefixes(
    announcement: Announcement, allowed: tuple[Prefix, ...], own: Prefix
) -> None:
    """Raise unless every announced prefix is the member's own /128 or inside its grants."""
    for prefix in announcement.prefixes:
        if prefix == own:
            continue
        if not any(prefix_within(prefix, grant) for grant in allowed):
            raise VerifyError(
                "prefix-not-allowed", f"{prefix} is outside what the member's certificate allows"
            )
