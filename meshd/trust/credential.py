"""What a verified membership credential says, whatever its form (pure).

meshd.trust.chain makes a :class:`Credential` from a member certificate, an admission or a
node key hand-over once it has checked it; meshd.membership judges members from them. A
member's credential is kept for as long as it is in the set, one or more a member, so what
many members share (their invite's and admin's keys) is one object they refer to.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Generic, TypeVar

from meshd.addressing import Prefix
from meshd.records.body import (
    admitted_at_at,
    admitted_at_of,
    enrolled_at_at,
    enrolled_name_at,
    name_at,
    name_of,
    not_after_at,
    not_after_of,
    not_before_at,
    not_before_of,
)
from meshd.records.elide import (
    ENVELOPE,
    HELD_CERT_DATES,
    PIECES,
    after_piece,
    restore_certificate,
    restore_pieces,
)
from meshd.records.ids import record_id

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Terms:
    """What a credential says that many share: the members of one invite (one object for all
    of them, :class:`Shared`), the members one root certified directly."""

    prefixes: tuple[Prefix, ...]
    # Keys besides its own whose revocation excludes the member: its invite's, its admin's;
    # no repeats, never its own key (``depends_on`` adds it). A tuple: 0 to 2 keys, where a
    # frozenset of one key alone takes 216 bytes; () for a member the root certified (one
    # shared empty tuple), and one tuple shared by the members of an invite, whose first
    # key is the very ``invite`` they hold.
    issuers: tuple[bytes, ...]
    # The root key the credential's chain ends at (the network's first root, or one it was
    # rolled over to): judged against the roots' overlap windows (meshd.membership.roots).
    root: bytes = b""
    # The admin key whose certificate (or invite) the credential was issued under (b"": the
    # root's own), and the date that admin signed it (the invite's not_before; None: the
    # credential's admitted_at, a certificate's not_before): an admin key handed over
    # (meshd.membership.standing) issues nothing dated after its cut-off.
    admin: bytes = b""
    admin_at: int | None = None
    # For members who came with an invite: the invite key and its use limit.
    invite: bytes | None = None
    max_uses: int = 0
    # The network's id, and the invite's bytes for its members: what a credential's bytes
    # are put back together with (meshd.records.elide; b"": its bytes are held whole).
    network: bytes = b""
    invite_raw: bytes = b""
    # The invite's name for the member it was made for ("": the joiner names itself): what
    # an admission's name is, else its enrollment's, read from its bytes (Sponsored).
    invite_name: str = ""


@dataclass(frozen=True, slots=True)
class Credential:
    """What a verified membership credential says, whatever its form: a member certificate's
    as it is, what it shares with others in its ``terms`` and its sponsor's fields the
    defaults, read from the class rather than kept; its dates (``admitted_at``: the
    certificate's not_before, ``not_after``) and its ``name`` read from the certificate's
    bytes ``raw`` when asked, and its ``record_id`` worked out from them. Those bytes are
    held (``held``) without the network id and the three keys it keeps or shares anyway
    (:mod:`meshd.records.elide`), and the record set keeps the credential in their place:
    152 bytes where they took 272. The credential: 64 bytes and neither a name nor an id
    kept (49 bytes), where 17 slots took 168, then 7 slots and two ints 152, then 6 slots 80
    and its name ~56, then 5 slots 72 and its id. Its end moved by renewals, it is a
    :class:`Renewed`. An admission's or a hand-over's is a :class:`Sponsored` (which keeps
    its end, and its record id, which its origin or enrollment holds anyway; an admission's
    rank and name are read from its bytes and its invite's terms, a hand-over's kept)."""

    node_key: bytes
    wg_key: bytes
    # The certificate's bytes without the network id, keys and issuer it is put back together
    # with (meshd.records.elide: ``raw``), or whole; a Sponsored's: its admission's or
    # hand-over's, whole.
    held: bytes
    terms: Terms

    if TYPE_CHECKING:  # properties set after the class is made (below)

        @property
        def raw(self) -> bytes: ...

        @property
        def record_id(self) -> bytes: ...

        @property
        def name(self) -> str: ...

        @property
        def admitted_at(self) -> int: ...

        @property
        def not_after(self) -> int: ...

    @property
    def prefixes(self) -> tuple[Prefix, ...]:
        return self.terms.prefixes

    @property
    def issuers(self) -> tuple[bytes, ...]:
        return self.terms.issuers

    @property
    def root(self) -> bytes:
        return self.terms.root

    @property
    def admin(self) -> bytes:
        return self.terms.admin

    @property
    def admin_at(self) -> int:
        at = self.terms.admin_at
        return self.admitted_at if at is None else at

    @property
    def invite(self) -> bytes | None:
        return self.terms.invite

    @property
    def max_uses(self) -> int:
        return self.terms.max_uses

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
        """What the member enrolled with: a certificate's record id, or an admission's
        enrollment's (copies of an enrollment countersigned again are one membership): the
        same for every key a chain of hand-overs passes the membership to. A certificate's
        is its own (worked out from its bytes)."""
        return self.record_id

    @property
    def depends_on(self) -> tuple[bytes, ...]:
        """Keys whose revocation excludes this member: its own (first), then ``issuers``."""
        return (self.node_key, *self.terms.issuers)

    def renewed(self, not_after: int) -> Credential:
        """This credential with its end moved to ``not_after`` (by renewals: a certificate's
        is then a :class:`Renewed`, which keeps its end)."""
        if isinstance(self, Sponsored | Renewed):
            return replace(self, not_after=not_after)
        return Renewed(self.node_key, self.wg_key, self.held, self.terms, not_after)


@dataclass(frozen=True, slots=True)
class Sponsored(Credential):
    """An admission's credential (``raw``: the admission's bytes, the record set's) or a
    hand-over's (:class:`HandedOver`): countersigned by a sponsor."""

    # When it ends: kept (the enrollment's date and the invite's member_ttl; read at every
    # judgement, six times a member in a load); when it was admitted is read from the
    # admission's bytes ``raw`` (a hand-over's: HandedOver's).
    not_after: int = 0
    # The member that countersigned it, the record id of the enrollment it countersigned (a
    # hand-over's: its own), and the time by which it ranks among its invite's admissions
    # (``rank``; FROM_HELD: worked out from the admission's bytes held elided when asked,
    # checked as the credential was made, not kept): the later of the sponsor's time and
    # the enrollment's, so that a copy of the enrollment countersigned again and dated
    # earlier cannot rank before the enrollment.
    sponsor: bytes | None = None
    enrollment: bytes = b""
    _rank: int = 0
    origin: bytes = b""  # see Credential.origin
    # The member's name (``name``): the invite's or the enrollment's; None: read where the
    # enrollment's lies in the admission's bytes held elided, or the terms' invite name.
    _name: str | None = ""
    # Its record id (the admission's or hand-over's): the object ``origin`` (an admission's)
    # or ``enrollment`` (a hand-over's) holds too, kept as the sponsorship graph reads it
    # at every step (meshd.membership.spreading).
    record_id: bytes = b""


@dataclass(frozen=True, slots=True)
class Renewed(Credential):
    """A certificate's credential with its end moved by renewals (meshd.membership.lifecycle):
    its end kept, its admission still read from its certificate's bytes."""

    not_after: int = 0


@dataclass(frozen=True, slots=True)
class HandedOver(Sponsored):
    """A hand-over's credential (``raw``: the hand-over's bytes): the old key's admission
    date, kept."""

    admitted_at: int = 0


def _raw(credential: Credential) -> bytes:
    """Its certificate's (admission's, hand-over's) bytes, put back together if held elided."""
    held = credential.held
    if not held or held[0] == ENVELOPE:
        return held
    terms = credential.terms
    return restore_certificate(
        held, terms.network, terms.admin or terms.root, credential.node_key, credential.wg_key
    )


def sponsored_pieces(
    terms: Terms, sponsor: bytes | None, node_key: bytes, wg_key: bytes
) -> tuple[bytes, ...]:
    """What an admission's bytes are held without (meshd.records.elide.elide_pieces), in the
    order they come: its network id and sponsor, its enrollment's network id, invite, node
    key and WireGuard key."""
    network = terms.network
    return (network, sponsor or b"", network, terms.invite_raw, node_key, wg_key)


def _sponsored_raw(credential: Sponsored) -> bytes:
    """Its admission's bytes (a hand-over's, held whole), put back together if held elided."""
    held = credential.held
    if not held or held[0] == ENVELOPE:
        return held
    pieces = sponsored_pieces(
        credential.terms, credential.sponsor, credential.node_key, credential.wg_key
    )
    return restore_pieces(held, pieces)


def _record_id(credential: Credential) -> bytes:
    """The record id of a certificate's credential: of its bytes (read where a credential
    is judged, hence rarely: while a hand-over links it, or its member holds several)."""
    return record_id(credential.raw)


# Its dates and name are read from its bytes held elided where they lie there, not from the
# whole put back together (a judgement reads them at every member).


def _admitted_at(credential: Credential) -> int:
    """When the member was admitted: its certificate's not_before."""
    held = credential.held
    if held and held[0] != ENVELOPE:
        return not_before_at(held, HELD_CERT_DATES)
    return not_before_of(held)


def _sponsored_at(credential: Sponsored) -> int:
    """When the member was admitted: its admission's admitted_at, read where it lies in the
    bytes held elided (right after the sponsor's key, the second piece cut), else from the
    whole."""
    held = credential.held
    if held and held[0] == PIECES:
        return admitted_at_at(held, after_piece(held, _SPONSORED_PIECES, 1))
    return admitted_at_of(credential.raw)


_SPONSORED_PIECES = 6  # sponsored_pieces' count
FROM_HELD = -1
"""A Sponsored's rank worked out from its admission's bytes held elided (no date is
negative)."""


def _enrolled(held: bytes) -> int:
    """Where the enrollment's name lies in an admission held elided: right after the
    member's WireGuard key, the last piece cut."""
    return after_piece(held, _SPONSORED_PIECES, _SPONSORED_PIECES - 1)


def _sponsored_rank(credential: Sponsored) -> int:
    kept = credential._rank
    if kept != FROM_HELD:
        return kept
    created = enrolled_at_at(credential.held, _enrolled(credential.held))
    assert created is not None  # checked as the credential was made (held_fields)
    return max(_sponsored_at(credential), created)


def _sponsored_name(credential: Sponsored) -> str:
    kept = credential._name
    if kept is not None:
        return kept
    named = credential.terms.invite_name or enrolled_name_at(
        credential.held, _enrolled(credential.held)
    )
    assert named is not None
    return named


def held_fields(held: bytes, terms: Terms, rank: int, name: str) -> tuple[int, str | None]:
    """An admission's rank and name as its Sponsored keeps them: FROM_HELD (None for the
    name) where they are read back from its bytes held elided (``held``, of
    :func:`sponsored_pieces`' pieces) and ``terms`` as they are, else as given (bytes held
    whole, or written otherwise than usual)."""
    if not held or held[0] != PIECES:
        return rank, name
    at = _enrolled(held)
    try:
        created = enrolled_at_at(held, at)
        enrolled_name = enrolled_name_at(held, at)
    except (IndexError, KeyError, UnicodeDecodeError, struct.error):
        return rank, name  # not the usual layout: kept as given
    if created is None or enrolled_name is None:
        return rank, name
    admitted = admitted_at_at(held, after_piece(held, _SPONSORED_PIECES, 1))
    return (
        FROM_HELD if max(admitted, created) == rank else rank,
        None if (terms.invite_name or enrolled_name) == name else name,
    )


def _name(credential: Credential) -> str:
    """The member's name: its certificate's."""
    held = credential.held
    if held and held[0] != ENVELOPE:
        name = name_at(held, HELD_CERT_DATES)
        if name is not None:
            return name
    return name_of(credential.raw)


def _not_after(credential: Credential) -> int:
    """When its membership ends, unless renewed (meshd.membership.lifecycle)."""
    held = credential.held
    if held and held[0] != ENVELOPE:
        return not_after_at(held, HELD_CERT_DATES)
    return not_after_of(held)


# After the dataclass is made: a property in the class body would be taken for a default.
# The slots of a subclass that keeps one (Sponsored, Renewed, HandedOver) are found first.
setattr(Credential, "raw", property(_raw))  # noqa: B010
setattr(Credential, "record_id", property(_record_id))  # noqa: B010
setattr(Credential, "admitted_at", property(_admitted_at))  # noqa: B010
setattr(Credential, "not_after", property(_not_after))  # noqa: B010
setattr(Credential, "name", property(_name))  # noqa: B010
setattr(Sponsored, "admitted_at", property(_sponsored_at))  # noqa: B010
setattr(Sponsored, "raw", property(_sponsored_raw))  # noqa: B010
setattr(Sponsored, "rank", property(_sponsored_rank))  # noqa: B010
setattr(Sponsored, "name", property(_sponsored_name))  # noqa: B010


def issuers_of(node_key: bytes, keys: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """``keys`` (a credential's issuers' keys) without repeats or the member's own key, in
    their order: the credential's ``issuers``."""
    if not keys:
        return ()
    return tuple(k for k in dict.fromkeys(keys) if k != node_key)


class Shared(Generic[T]):
    """One copy of each value that credentials hold, shared by every credential that holds
    an equal one (the issuers' keys and the terms of an invite's members). Bounded: when
    full it starts again (later credentials then share a new copy)."""

    __slots__ = ("_kept", "_limit")

    def __init__(self, limit: int) -> None:
        self._kept: dict[T, T] = {}
        self._limit = limit

    def share(self, value: T) -> T:
        """The one kept value equal to ``value``."""
        found = self._kept.get(value)
        if found is None:
            if len(self._kept) >= self._limit:
                self._kept.clear()
            self._kept[value] = found = value
        return found

    def clear(self) -> None:
        """Keep no copy: credentials made from now on share new ones."""
        self._kept.clear()
