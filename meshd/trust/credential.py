"""What a verified membership credential says, whatever its form (pure).

meshd.trust.chain makes a :class:`Credential` from a member certificate, an admission or a
node key hand-over once it has checked it; meshd.membership judges members from them. A
member's credential is kept for as long as it is in the set, one or more a member, so what
many members share (their invite's and admin's keys) is one object they refer to.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshd.addressing import Prefix


@dataclass(frozen=True, slots=True)
class Credential:
    """What a verified membership credential says, whatever its form: a member certificate's
    as it is (its sponsor, invite and admission fields are the defaults, read from the class
    rather than kept: 112 bytes where 17 slots took 168); an admission's or a hand-over's is
    a :class:`Sponsored`, which keeps them."""

    node_key: bytes
    wg_key: bytes
    name: str
    admitted_at: int
    not_after: int
    prefixes: tuple[Prefix, ...]
    # Keys besides its own whose revocation excludes this member: its invite's, its admin's;
    # no repeats, never its own key (``depends_on`` adds it). A tuple: 0 to 2 keys, where a
    # frozenset of one key alone takes 216 bytes; () for a member the root certified (one
    # shared empty tuple), and one tuple shared by the members of an invite
    # (:class:`SharedIssuers`), whose first key is the very ``invite`` they hold.
    issuers: tuple[bytes, ...]
    record_id: bytes
    # The root key the credential's chain ends at (the network's first root, or one it was
    # rolled over to): judged against the roots' overlap windows (meshd.membership.roots).
    root: bytes = b""
    # The admin key whose certificate (or invite) the credential was issued under (b"": the
    # root's own): an admin key handed over (meshd.membership.standing) issues nothing dated
    # after its cut-off (``admin_at``).
    admin: bytes = b""

    @property
    def invite(self) -> bytes | None:
        """For members who came with an invite: the invite key (None: certified)."""
        return None

    @property
    def max_uses(self) -> int:
        """The invite's use limit (0 without an invite)."""
        return 0

    @property
    def sponsor(self) -> bytes | None:
        """For admissions: the member that countersigned it (None for certificates)."""
        return None

    @property
    def enrollment(self) -> bytes:
        """For admissions: the record id of the enrollment countersigned (b"" otherwise)."""
        return b""

    @property
    def rank(self) -> int:
        """For admissions: the time by which it ranks among its invite's admissions."""
        return 0

    @property
    def origin(self) -> bytes:
        """The record id of the credential the member enrolled with (a certificate or an
        admission): the same for every key a chain of hand-overs passes the membership to.
        A certificate's is its own."""
        return self.record_id

    @property
    def admin_at(self) -> int:
        """The date ``admin`` signed the credential: a certificate's not_before."""
        return self.admitted_at

    @property
    def depends_on(self) -> tuple[bytes, ...]:
        """Keys whose revocation excludes this member: its own (first), then ``issuers``."""
        return (self.node_key, *self.issuers)


@dataclass(frozen=True, slots=True)
class Sponsored(Credential):
    """An admission's credential or a hand-over's: countersigned by a sponsor."""

    # For members who came with an invite: the invite key and its use limit.
    invite: bytes | None = None
    max_uses: int = 0
    # The member that countersigned it, the record id of the enrollment it countersigned (a
    # hand-over's: its own), and the time by which it ranks among its invite's admissions:
    # the later of the sponsor's time and the enrollment's, so that a copy of the enrollment
    # countersigned again and dated earlier cannot rank before the enrollment.
    sponsor: bytes | None = None
    enrollment: bytes = b""
    rank: int = 0
    # See Credential.origin and Credential.admin.
    origin: bytes = b""
    admin_at: int = 0


def issuers_of(node_key: bytes, keys: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """``keys`` (a credential's issuers' keys) without repeats or the member's own key, in
    their order: the credential's ``issuers``."""
    if not keys:
        return ()
    return tuple(k for k in dict.fromkeys(keys) if k != node_key)


class SharedIssuers:
    """One copy of each credential's ``issuers`` tuple (the keys of an invite and its
    admin), shared by every member admitted under that invite. Bounded: when full it starts
    again (later members then share a new copy)."""

    __slots__ = ("_kept", "_limit")

    def __init__(self, limit: int) -> None:
        self._kept: dict[tuple[bytes, ...], tuple[bytes, ...]] = {}
        self._limit = limit

    def share(self, issuers: tuple[bytes, ...]) -> tuple[bytes, ...]:
        """The one kept tuple equal to ``issuers`` (a member certified directly has none)."""
        if not issuers:
            return ()
        found = self._kept.get(issuers)
        if found is None:
            if len(self._kept) >= self._limit:
                self._kept.clear()
            self._kept[issuers] = found = issuers
        return found
