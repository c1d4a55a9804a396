"""The tables of the membership state, shared by the modules that merge into them and read them.

:class:`MembershipTables` holds what one node knows (the record set, who stands, each member's
announcement, key rotation and silence, the pending pool, the last judged states) and the few
operations every other part needs: adding a record to the set or removing it (noted in a
:class:`Change`), and building a member's view. Merging is meshd.membership.merge and
meshd.membership.authority, re-judging meshd.membership.settle, the read side
meshd.membership.queries; meshd.membership.state puts them together as ``Membership``.
Outside this package only ``Membership``'s public methods are used.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from meshd.addressing import host_prefix, overlay_address
from meshd.errors import VerifyError
from meshd.membership.pending import LOCAL, PendingPool
from meshd.membership.recordset import HasRaw, RecordSet
from meshd.membership.roots import RootChain
from meshd.membership.silence import Heard, Silence
from meshd.membership.standing import Standing
from meshd.membership.views import Member, MemberState, Stored, view
from meshd.membership.wgkeys import WgKeys
from meshd.records import U64, Announcement, Kind, record_id
from meshd.records.body import said_of
from meshd.trust.chain import Anchor, Verifier
from meshd.trust.credential import Credential


def ahead_message(what: str, at: int, now: int, tables: MembershipTables) -> str:
    """Why a record dated ``at`` is refused at ``now``: how far ahead of our clock, and that
    a clock is wrong (its maker's, or ours: a clock behind refuses everyone's records)."""
    return (
        f"the {what} is dated {at - now} s ahead of this node's clock, more than the "
        f"{tables.clock_skew} s allowed: its maker's clock or this node's is wrong"
    )


@dataclass(slots=True)
class Change:
    """What one merge did to the set, and whom it may concern."""

    stored: list[Stored] = field(default_factory=list)
    dropped: list[bytes] = field(default_factory=list)
    touched: set[bytes] = field(default_factory=set)
    announced: set[bytes] = field(default_factory=set)
    judgements_changed: bool = False
    signature_checked: bool = False  # the top record's signature was checked by the caller
    source: str = LOCAL  # the peer that delivered the records (the pending pool's quota key)


class MemberEntry(Heard):
    """What the tables keep of one member: when it was last heard from
    (meshd.membership.silence); its credentials (``credentials``: a tuple of them by
    (admitted_at, record id), or the one credential itself when it holds one, as most do;
    None while it holds none) and its earliest that stands (``standing``, None: none does)
    as judged while the sponsorship graph was at ``judged`` (meshd.membership.sponsor_graph);
    its announcement in the set (its record id: record_id of its raw bytes, worked out when
    needed rather than kept); its /128 (derived once, the interned object: a grants() made
    holds it; the overlay address is the /128's); its state as last judged (None: not
    yet). Its node id is derived from its key when asked (:class:`Member`). One slotted
    object in one table by node key: 88 bytes where six tables' entries and an identity
    tuple took 286."""

    __slots__ = ("announcement", "credentials", "judged", "own", "standing", "state")

    def __init__(self) -> None:
        super().__init__()
        self.credentials: Credential | tuple[Credential, ...] | None = None
        self.judged: object = None
        self.standing: Credential | None = None
        self.announcement: Announcement | None = None
        self.own: ipaddress.IPv6Network | None = None
        self.state: MemberState | None = None


class MembershipTables:
    """The membership state of one network, seen from one node: its tables."""

    def __init__(
        self,
        anchor: Anchor,
        *,
        announce_ttl: int | None = None,
        clock_skew: int = 300,
        max_pending: int = 4096,
    ) -> None:
        self.anchor = anchor
        self.verifier = Verifier(anchor)
        self.announce_ttl = announce_ttl
        self.clock_skew = clock_skew
        self.max_pending = max_pending
        self._set = RecordSet()
        # One entry per member (MemberEntry): its credentials and their standing, its
        # announcement, overlay /128, last judged state and when it was last heard from, in
        # one table rather than one table each.
        self._members: dict[bytes, MemberEntry] = {}
        self._standing = Standing(self._members, self._entry)
        self._silence = Silence(self._members, MemberEntry)
        # Records waiting for a member's first credential, by that member's key: its own
        # announcements, and admissions it countersigned.
        self._pending = PendingPool(max_pending)
        # The invite and admin certificates members' credentials were issued under, each
        # once: its bytes (an invite's the very object its members' terms hold) -> its
        # subject; decoded when asked (``issuing_certificates``), not held decoded: ~450
        # bytes an invite with its id, a member each where invites admit one member, as
        # ``meshd invite`` makes them.
        self._issuing: dict[bytes, bytes] = {}
        self._wg = WgKeys()
        self._roots = RootChain(anchor.root_key)
        # New node key -> (issued_at, record id, old key) of its earliest hand-over: the
        # overlay address follows hand-overs back to the key that enrolled.
        self._origin: dict[bytes, tuple[int, bytes, bytes]] = {}
        self._standing.roots = self._roots
        # Revocations and renewals signed under a root leave the set once its acceptance ends
        # (meshd.membership.roots): the next moment that may happen.
        self._retire_after = U64
        # The earliest moment a member judged admitted may stop being so by time alone (its
        # credential's end, its silence): a tick judges every member only from then on
        # (meshd.membership.settle, ``due_at``); before it, only the members in ``_recheck``
        # (heard from while not admitted). One int for all, not one a member; 0: the first
        # tick judges everyone.
        self._next_due = 0
        self._recheck: set[bytes] = set()
        self._ticked = 0  # the last tick's moment

    # --- the record set -----------------------------------------------------------------

    def _add(
        self,
        rid: bytes,
        kind: Kind,
        raw: bytes,
        node: bytes | None,
        change: Change,
        held: HasRaw | None = None,
    ) -> None:
        """Add a record to the set (``held``: the object that holds its bytes elided, which
        the set keeps in their place) and to what the change stores."""
        kept = raw if held is None else held
        self._set.add(rid, kept)
        change.stored.append(Stored(rid, kind, kept, node))

    def _remove(self, rid: bytes, change: Change, *, superseded: bool = False) -> None:
        if self._set.remove(rid) and not superseded:
            change.dropped.append(rid)

    def _judgements_changed(self, change: Change) -> None:
        self._standing.invalidate()
        change.judgements_changed = True

    def _not_future(self, at: int, now: int, what: str) -> None:
        if at > now + self.clock_skew:
            raise VerifyError("not-yet-valid", ahead_message(what, at, now, self))

    # --- members' views -----------------------------------------------------------------

    def first_key(self, node: bytes) -> bytes:
        """The node key a member enrolled with, following its hand-overs back: those of the
        credential it stands on. A key that was handed a membership and also joined with an
        invite of its own, and stands on that (the hand-over's old key is revoked, say),
        keeps its own address: before, it took the old key's /128, revoked or not, and every
        route and rule written for that address reached it."""
        if node in self._origin:
            credential = self._standing.standing(node)
            if credential is not None:
                return self._standing.lineage(credential)[-1]
        seen = {node}
        while (origin := self._origin.get(node)) is not None and origin[2] not in seen:
            node = origin[2]
            seen.add(node)
        return node

    def _entry(self, node: bytes) -> MemberEntry:
        """The member's entry, made when first needed."""
        entry = self._members.get(node)
        if entry is None:
            entry = self._members[node] = MemberEntry()
        return entry

    def _own(self, node: bytes) -> ipaddress.IPv6Network:
        """The member's /128 (derived once, kept in its entry; for a key handed a membership,
        whose address hangs on what it stands on, derived each time)."""
        entry = self._entry(node)
        own = entry.own
        if own is None:
            own = host_prefix(overlay_address(self.anchor.root_key, self.first_key(node)))
            if node not in self._origin:
                entry.own = own
        return own

    def _forget_overlays(self) -> None:
        """A hand-over may move whose key a membership enrolled with: every /128 is derived
        anew when next needed."""
        for entry in self._members.values():
            entry.own = None

    def _judge(self, node: bytes, now: int) -> tuple[MemberState, str, Credential]:
        last = self._silence.for_judging(node, now)
        return self._standing.judge(node, now, last, self.announce_ttl)

    def _view(self, node: bytes, now: int) -> Member:
        return self._member(node, *self._judge(node, now))

    def _member(
        self, node: bytes, state: MemberState, reason: str, credential: Credential
    ) -> Member:
        entry = self._entry(node)
        # The interned /128 itself: the view reads its address from it when asked.
        own = entry.own or self._own(node)
        # The view reads its credential's fields from the one the entry keeps, not from an
        # equal copy judging made (a renewed credential's end is moved in a copy).
        held = entry.standing
        if held is not credential and held != credential:
            held = credential
        return view(
            held,
            self._wg.current(node),
            own,
            state,
            reason,
            entry.announcement,
            entry.last_seen,
        )


def not_newer(ann: Announcement, rid: bytes, current: Announcement | None) -> bool:
    """Whether ``ann`` (record id ``rid``) is no newer than the member's ``current`` one:
    the higher (seq, record id) wins."""
    if current is None:
        return False
    seq, held = ann.seq, current.seq  # each read from its bytes: once
    if held != seq:
        return held > seq
    return record_id(current.raw) >= rid


def says_more(current: Announcement, newer: Announcement) -> bool:
    """Whether ``newer`` tells others anything ``current`` did not (beyond being newer).
    Most say the same (a refresh): their bytes after the date are compared first, without
    decoding their addresses."""
    if current.raw and newer.raw and said_of(current.raw) == said_of(newer.raw):
        return False
    return (
        newer.endpoints != current.endpoints
        or newer.addrs != current.addrs
        or newer.prefixes != current.prefixes
        or newer.relays != current.relays
    )
