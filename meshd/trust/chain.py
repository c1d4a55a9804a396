"""Signature and issuer-chain checks against one trust root (pure; no clock, no I/O).

The chain is bounded: ``root -> [admin] -> invite -> member`` for members who joined with an
invite (their admission is countersigned by a sponsoring member), and ``root -> [admin] ->
member`` for members certified directly (the founder). Only the root certifies admins, so a
chain is at most one admin deep. Each link must have been valid when the next one was made.

Whether a key has been revoked, and whether something is valid *now*, depends on the
membership state and the time; meshd.membership decides that. What a verified credential
says is meshd.trust.credential.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshd.addressing import Prefix, overlay_prefix, prefix_within
from meshd.errors import VerifyError
from meshd.records import (
    CONTEXTS,
    HANDOVER_ACCEPT_CONTEXT,
    AdminHandover,
    Admission,
    Announcement,
    Cap,
    Certificate,
    Enrollment,
    Handover,
    Invite,
    Leave,
    Network,
    Record,
    Renewal,
    Revocation,
    Role,
    Rollover,
    WgRotation,
    handover_acceptance,
    kind_of,
    record_id,
    signed_body,
)
from meshd.records.elide import elide_certificate, elide_pieces
from meshd.trust.announced import check_announcement_signature
from meshd.trust.credential import (
    Credential,
    HandedOver,
    Shared,
    Sponsored,
    Terms,
    held_fields,
    issuers_of,
    sponsored_pieces,
)
from meshd.trust.keys import SigningKey, fingerprint_bytes, verify

MAX_CACHE = 65536
MAX_INVITES = 4096  # invites kept checked, with their members' terms


def check_signature(record: Record) -> None:
    """Raise VerifyError unless the record's signature is its signer's over its body."""
    verify(record.signer, CONTEXTS[kind_of(record)], signed_body(record), record.signature)


@dataclass(frozen=True, slots=True)
class Anchor:
    """A verified network definition: the root key and what derives from it."""

    network: Network
    network_id: bytes

    @classmethod
    def from_network(cls, network: Network) -> Anchor:
        check_signature(network)
        return cls(network, fingerprint_bytes(network.root_key))

    @property
    def root_key(self) -> bytes:
        return self.network.root_key

    @property
    def overlay(self) -> Prefix:
        return overlay_prefix(self.network.root_key)


class UnknownRoot(VerifyError):
    """The record's chain ends at a key that is no root known here (yet): it may be a root
    a rollover not yet received hands over to, so the record waits for one."""

    def __init__(self, key: bytes) -> None:
        super().__init__("unknown-root", "the record's chain ends at a key that is no root here")
        self.key = key


class Verifier:
    """Checks records against one trust root, remembering the certificates it has checked."""

    def __init__(self, anchor: Anchor) -> None:
        self.anchor = anchor
        self._good_certs: dict[bytes, None] = {}
        # One issuers' tuple, and one Terms, for the members of an invite (or of a root).
        self._issuers: Shared[tuple[bytes, ...]] = Shared(MAX_CACHE)
        self._terms: Shared[Terms] = Shared(MAX_CACHE)
        # The invites admissions came under, by their bytes (one object for all of an
        # invite's members, meshd.records.decode: its hash is kept), checked, with their
        # members' Terms once one was made for a member whose key is none of the invite's:
        # the next member of that invite needs neither worked out again.
        self._invites: dict[bytes, Terms | None] = {}
        # The network's first root, and every key a verified rollover handed over to (only
        # grows; which of them stand, and until when, is meshd.membership.roots' judgement).
        self.roots: set[bytes] = {anchor.root_key}
        # True only while this node's own store is loaded: its rows were verified before
        # they were written and are sealed (meshd.node.store), so their signatures (the
        # record's and its chain's) are not checked again; every other check runs.
        self.signatures_trusted = False

    def _signature(self, record: Record) -> None:
        if not self.signatures_trusted:
            check_signature(record)

    def _root_or_admin(self, issuer: bytes, chain: tuple[Certificate, ...]) -> bool:
        """Whether ``issuer`` is a root (True) or an admin showing its chain (False); an
        issuer that is neither and shows no chain may be a root not known yet."""
        if issuer in self.roots:
            return True
        if not chain:
            raise UnknownRoot(issuer)
        return False

    def _network(self, network_id: bytes) -> None:
        if network_id != self.anchor.network_id:
            raise VerifyError("wrong-network", "the record belongs to another network")

    def certificate(self, cert: Certificate) -> None:
        """Check a certificate's signature, network, and issuer chain up to the root."""
        cid = record_id(cert.raw)
        if cid in self._good_certs:
            return
        self._network(cert.network_id)
        if cert.not_after < cert.not_before:
            raise VerifyError("bad-validity", "the certificate ends before it starts")
        if cert.role is Role.ADMIN:
            if cert.chain or not self._root_or_admin(cert.issuer, cert.chain):
                raise VerifyError("chain-too-deep", "only the root may certify an admin")
        elif cert.issuer in self.roots:
            if cert.chain:
                raise VerifyError("bad-chain", "a certificate from the root carries no chain")
        else:
            self._root_or_admin(cert.issuer, cert.chain)
            self._issued_by_admin(cert, cert.chain, Cap.INVITE, cert.not_before)
            admin = cert.chain[0]
            if cert.not_after > admin.not_after:
                raise VerifyError(
                    "outlives-issuer",
                    "the certificate is valid longer than the admin that issued it",
                )
            for prefix in cert.prefixes:
                if not any(prefix_within(prefix, allowed) for allowed in admin.prefixes):
                    raise VerifyError(
                        "prefix-not-allowed", f"the admin may not grant the prefix {prefix}"
                    )
        if cert.role is not Role.ADMIN and cert.caps:
            raise VerifyError("bad-caps", "only admin certificates carry capabilities")
        if cert.role is Role.MEMBER and len(cert.wg_key) != 32:
            raise VerifyError("bad-certificate", "a member certificate names a WireGuard key")
        self._signature(cert)
        if cert.role is not Role.ADMIN:
            # A member's is checked once, as it joins the set; an invite's is kept checked
            # with its members' terms (``_invites``): an id here too was ~80 bytes a member
            # where each has an invite of its own. Only admins' are checked again and again.
            return
        if len(self._good_certs) >= MAX_CACHE:
            self._good_certs.clear()
        self._good_certs[cid] = None

    def forget_shared(self) -> None:
        """Let go of what was kept to share between the members of an invite, or of a root
        (their issuers' tuple and terms, the invites checked): a batch that shared them
        ended. What the credentials made hold stays theirs; the next member of an invite
        checks the invite again and shares new copies with those after it. After a store's
        load, where members of invites of one use (what ``meshd invite`` makes) each left an
        entry in every table (~0.1 KiB a member, and held until the tables filled)."""
        self._invites.clear()
        self._issuers.clear()
        self._terms.clear()

    def _issued_by_admin(
        self, record: Record, chain: tuple[Certificate, ...], cap: Cap, at: int
    ) -> None:
        """Check that ``record`` was issued by the admin in ``chain`` holding ``cap`` at ``at``."""
        if len(chain) != 1:
            raise VerifyError("bad-chain", "the issuer is not the root and shows no admin chain")
        admin = chain[0]
        if admin.role is not Role.ADMIN or admin.subject != record.signer:
            raise VerifyError("bad-chain", "the chain does not certify the issuer as an admin")
        self.certificate(admin)
        if cap not in admin.caps:
            raise VerifyError(
                "missing-capability",
                f"the admin lacks the {(cap.name or str(int(cap))).lower()} capability",
            )
        if not admin.not_before <= at <= admin.not_after:
            raise VerifyError("issuer-expired", "the admin was not valid when it signed")

    def member_certificate(self, cert: Certificate) -> Credential:
        if cert.role is not Role.MEMBER:
            raise VerifyError("bad-role", "a member credential must be a member certificate")
        self.certificate(cert)
        issuers = issuers_of(cert.subject, tuple(c.subject for c in cert.chain))
        root = cert.chain[0].issuer if cert.chain else cert.issuer
        admin = cert.issuer if cert.chain else b""
        # Its origin is its own id and its admin signed it at not_before (Credential's);
        # its dates are read from its bytes, the record set's.
        terms = self._terms.share(
            Terms(cert.prefixes, self._issuers.share(issuers), root, admin, network=cert.network_id)
        )
        # Held without what it is put back together with (meshd.records.elide).
        held = elide_certificate(
            cert.raw, terms.network, terms.admin or terms.root, cert.subject, cert.wg_key
        )
        return Credential(cert.subject, cert.wg_key, held, terms)

    def enrollment(self, enrollment: Enrollment) -> None:
        invite = enrollment.invite
        self._network(enrollment.network_id)
        if invite.role is not Role.INVITE:
            raise VerifyError("bad-role", "an enrollment must be signed under an invite")
        if enrollment.node_key == self.anchor.root_key:
            raise VerifyError("bad-target", "the root key cannot be enrolled as a member")
        if invite.raw not in self._invites:
            self.certificate(invite)  # a certificate checked once stays good: roots only grow
            if len(self._invites) >= MAX_INVITES:
                self._invites.clear()
            self._invites[invite.raw] = None
        self._signature(enrollment)

    def admission(self, admission: Admission) -> Credential:
        """Check an admission, its enrollment and the invite's chain. Not the sponsor's status."""
        # Its id first: the one the caller just worked out (record_id keeps the last), not a
        # copy made after checking its chain (49 bytes each, kept twice).
        rid = record_id(admission.raw)
        self._network(admission.network_id)
        enrollment = admission.enrollment
        invite = enrollment.invite
        self.enrollment(enrollment)
        if not invite.not_before <= admission.admitted_at <= invite.not_after:
            raise VerifyError(
                "invite-expired", "the admission was not made while the invite was valid"
            )
        self._signature(admission)
        # Counted from the enrollment, which every copy of it shares: a member countersigning
        # a copy dated later cannot lengthen the membership, nor one dated earlier shorten it.
        not_after = enrollment.created_at + invite.member_ttl
        terms = self._invite_terms(invite, enrollment.node_key)
        node_key, wg_key = enrollment.node_key, enrollment.wg_key
        # Its date is read from its bytes, held without what they are put back together
        # with (meshd.records.elide).
        pieces = sponsored_pieces(terms, admission.sponsor, node_key, wg_key)
        held = elide_pieces(admission.raw, pieces)
        # Its rank and name are read from those bytes and its terms when asked (where they
        # read back as they are here), not kept (meshd.trust.credential.held_fields).
        rank, name = held_fields(
            held,
            terms,
            max(admission.admitted_at, enrollment.created_at),
            # An invite made for a named member names the member; otherwise the joiner does.
            invite.name or enrollment.name,
        )
        enrolled = record_id(enrollment.raw)
        return Sponsored(
            node_key,
            wg_key,
            held,
            terms,
            not_after,
            admission.sponsor,
            enrolled,
            rank,
            # Its membership is its enrollment's: copies of it countersigned again (one
            # replaces another, dated earlier) are the same membership, which a hand-over
            # carrying any of them passes on.
            enrolled,
            _name=name,
            record_id=rid,
        )

    def _invite_terms(self, invite: Certificate, node_key: bytes) -> Terms:
        """What the members of ``invite`` share (one object for all of them); ``invite``
        is the one :meth:`enrollment` just checked."""
        kept = self._invites.get(invite.raw)
        if kept is not None and node_key not in kept.issuers:
            return kept  # its issuers are the invite's keys, as they are for this member
        keys = (invite.subject, *(c.subject for c in invite.chain))
        issuers = self._issuers.share(issuers_of(node_key, keys))
        # The invite's key as the shared tuple holds it: one object for all its members.
        invite_key = issuers[0] if issuers and issuers[0] == invite.subject else invite.subject
        terms = self._terms.share(
            Terms(
                invite.prefixes,
                issuers,
                invite.chain[0].issuer if invite.chain else invite.issuer,
                invite.issuer if invite.chain else b"",
                invite.not_before,
                invite_key,
                invite.max_uses,
                network=invite.network_id,
                invite_raw=invite.raw,
                invite_name=invite.name,
            )
        )
        if node_key not in keys:
            self._invites[invite.raw] = terms
        return terms

    def announcement(self, announcement: Announcement, *, signature_checked: bool = False) -> None:
        """Check an announcement's network and signature (unless the caller already checked it
        with :func:`check_announcement_signatures`)."""
        if announcement.network_id != self.anchor.network_id:
            self._network(announcement.network_id)
        if not signature_checked and not self.signatures_trusted:
            check_announcement_signature(announcement)

    def revocation(self, revocation: Revocation) -> None:
        self._network(revocation.network_id)
        if not self._root_or_admin(revocation.issuer, revocation.chain):
            self._issued_by_admin(revocation, revocation.chain, Cap.REVOKE, revocation.issued_at)
        elif revocation.chain:
            raise VerifyError("bad-chain", "a revocation from the root carries no chain")
        if revocation.target in self.roots:  # the first root, or one a rollover named
            raise VerifyError("bad-target", "a root key cannot be revoked")
        self._signature(revocation)

    def wg_rotation(self, rotation: WgRotation) -> None:
        """Check a WireGuard key rotation's network and its signature by the member."""
        self._network(rotation.network_id)
        self._signature(rotation)

    def renewal(self, renewal: Renewal) -> None:
        """Check a renewal: network, target, the issuer's chain (an admin needs the invite
        capability, valid when it signed, and may not renew past its own end), signature."""
        self._network(renewal.network_id)
        if renewal.role is not Role.MEMBER:
            raise VerifyError("bad-role", "only memberships are renewed")
        if renewal.subject == self.anchor.root_key:
            raise VerifyError("bad-target", "the root key is not a member")
        if renewal.not_after < renewal.issued_at:
            raise VerifyError("bad-validity", "the renewal ends before it was made")
        if not self._root_or_admin(renewal.issuer, renewal.chain):
            self._issued_by_admin(renewal, renewal.chain, Cap.INVITE, renewal.issued_at)
            if renewal.not_after > renewal.chain[0].not_after:
                raise VerifyError(
                    "outlives-issuer", "the renewal lasts longer than the admin that signed it"
                )
        elif renewal.chain:
            raise VerifyError("bad-chain", "a renewal from the root carries no chain")
        self._signature(renewal)

    def leave(self, leave: Leave) -> None:
        """Check a departure: network, and the signature of the member that leaves."""
        self._network(leave.network_id)
        if leave.node_key == self.anchor.root_key:
            raise VerifyError("bad-target", "the root key is not a member")
        self._signature(leave)

    def handover(self, handover: Handover) -> Credential:
        """Check a node key hand-over: network, keys, the old key's credential it names, the
        old key's signature and the new key's acceptance. Returns the new key's credential:
        the old one's name, grants, validity and chain, sponsored by the old key (so it stands
        while a credential of the old key would, and takes no invite use)."""
        rid = record_id(handover.raw)  # first: the caller's (see admission)
        self._network(handover.network_id)
        old, new = handover.old_key, handover.new_key
        if new == old or new in self.roots:
            raise VerifyError("bad-target", "a hand-over goes to another key, not a root")
        held = handover.credential
        if isinstance(held, Certificate):
            credential = self.member_certificate(held)
        elif isinstance(held, Admission):
            credential = self.admission(held)
        else:
            credential = self.handover(held)  # legacy: the old key's own hand-over, nested
        if credential.node_key != old and not handover.previous:
            # Unless the record names the hand-over that gave the old key this membership
            # (then Membership._merge_handover checks that link against the set).
            raise VerifyError("bad-chain", "the credential handed over is not the old key's")
        self._signature(handover)
        accepted = handover_acceptance(handover.network_id, old, new)
        verify(new, HANDOVER_ACCEPT_CONTEXT, accepted, handover.new_signature)
        terms = Terms(
            credential.prefixes,
            self._issuers.share(issuers_of(new, tuple(k for k in credential.issuers if k != old))),
            credential.root,
            credential.admin,
            credential.admin_at,
        )
        return HandedOver(
            new,
            handover.wg_key,
            handover.raw,
            self._terms.share(terms),
            credential.not_after,
            sponsor=old,
            enrollment=rid,
            _rank=handover.issued_at,
            origin=credential.origin,
            _name=credential.name,
            admitted_at=credential.admitted_at,
            record_id=rid,
        )

    def admin_handover(self, handover: AdminHandover) -> None:
        """Check an admin key hand-over: network, both admin certificates, a successor
        certified by the signing root with the old key's grants and no longer, signature."""
        self._network(handover.network_id)
        old, new = handover.old_cert, handover.new_cert
        if old.role is not Role.ADMIN or new.role is not Role.ADMIN:
            raise VerifyError("bad-role", "an admin hand-over names two admin certificates")
        if new.issuer != handover.root or handover.root in (old.subject, new.subject):
            raise VerifyError("bad-chain", "only a root hands an admin key over")
        if new.subject == old.subject or new.subject in self.roots:
            raise VerifyError("bad-target", "an admin key is handed over to another key")
        if (new.caps, new.prefixes) != (old.caps, old.prefixes):
            raise VerifyError("bad-grants", "the successor's grants are not the old key's")
        if new.not_after > old.not_after:
            raise VerifyError(
                "outlives-issuer", "the successor is valid longer than the key it replaces"
            )
        if not self._root_or_admin(handover.root, ()):
            raise VerifyError("bad-chain", "only a root hands an admin key over")
        self.certificate(old)
        self.certificate(new)
        self._signature(handover)

    def rollover(self, rollover: Rollover) -> None:
        """Check a root rollover: network, a new key that is no root yet, the window, and
        the signature of the root it hands over from (which must be a root known here)."""
        self._network(rollover.network_id)
        if rollover.new_root in (self.anchor.root_key, rollover.old_root):
            raise VerifyError("bad-target", "a rollover hands over to a key that is no root yet")
        if rollover.overlap_until < rollover.issued_at:
            raise VerifyError("bad-validity", "the overlap ends before the rollover was made")
        self._signature(rollover)
        if rollover.old_root not in self.roots:
            raise UnknownRoot(rollover.old_root)

    def invite(self, invite: Invite) -> None:
        """Check an invite token's payload: chain, signature, and that the secret fits."""
        if invite.network.raw != self.anchor.network.raw:
            raise VerifyError("wrong-network", "the invite is for another network")
        cert = invite.certificate
        if cert.role is not Role.INVITE:
            raise VerifyError("bad-role", "the token does not hold an invite certificate")
        self.certificate(cert)
        self._signature(invite)
        if SigningKey(invite.secret).public != cert.subject:
            raise VerifyError("bad-secret", "the invite secret does not match its certificate")
