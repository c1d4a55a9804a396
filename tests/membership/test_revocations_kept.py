"""What `meshd revoke` revokes stays revoked for good: its revocations are never pruned.

The attack (honest operations, then a restart): an invite's revocation expired at the end
its members had when it was made (the invite's end and member TTL), but its members can be
renewed after that (auto-renew on the root's node); once the revocation expired it was
pruned where the set was loaded again (a restart, a node that joined later), and the
member stood again there, while nodes that kept running held it revoked. A member's own
revocation had the same limit (its end known to the revoker), and one whose end had passed
could not be revoked at all (its revocation was refused as expired).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from meshd.cli.revoking import KEPT_FOR_GOOD
from meshd.errors import VerifyError
from meshd.membership import MemberState
from meshd.node.store import Store
from meshd.records import U64, Role, make_renewal, make_revocation
from tests.factory import DAY, T0
from tests.trust.test_hostile import World


def test_kept_for_good_is_the_largest_date() -> None:
    assert KEPT_FOR_GOOD == U64


@pytest.mark.parametrize("expires", ["invite's end", "kept for good"])
def test_an_invite_revocation_outlives_its_renewed_members_after_a_restart(
    tmp_path: Path, expires: str
) -> None:
    w = World()
    w.state = state = w.net.state()
    outcomes = [state.ingest(w.founder.credential, T0 + 5)]
    invite = w.net.invite(uses=1, lifetime=DAY, member_ttl=60 * DAY)
    member = w.net.join(state, w.founder, invite, "M", at=T0 + 10)
    outcomes.append(state.ingest(member.credential, T0 + 20))
    renewal = make_renewal(
        w.net.root, network_id=w.nid, subject=member.key.public,
        issued_at=T0 + 35 * DAY, not_after=T0 + 125 * DAY,
    )  # fmt: skip
    outcomes.append(state.ingest(renewal, T0 + 35 * DAY))
    cert = invite.certificate
    until = cert.not_after + cert.member_ttl if expires == "invite's end" else KEPT_FOR_GOOD
    revocation = make_revocation(
        w.net.root, network_id=w.nid, target=cert.subject, target_role=Role.INVITE,
        issued_at=T0 + 40 * DAY, expires_at=until, reason="token leaked", chain=(),
        sponsored=state.sponsored_by(cert.subject),
    )  # fmt: skip
    outcomes.append(state.ingest(revocation, T0 + 40 * DAY))
    store = Store(tmp_path / "meshd.db")
    store.set_meta("network", w.net.network.raw)
    store.apply(outcomes)
    store.close()
    later = T0 + 62 * DAY  # past the invite's end and member TTL, within the renewal
    running = state.member(member.key.public, later)
    assert running is not None
    assert running.state is MemberState.REVOKED
    store = Store(tmp_path / "meshd.db")
    restarted = w.net.state()
    store.load_into(restarted, later)
    store.close()
    again = restarted.member(member.key.public, later)
    if expires == "invite's end":
        # What `meshd revoke --invite` made before: the member stands again after a restart.
        assert again is not None
        assert again.state is MemberState.ADMITTED
    else:
        assert again is not None
        assert again.state is MemberState.REVOKED
        assert again.reason == "issuer-revoked"


@pytest.mark.parametrize("expires", ["its end", "kept for good"])
def test_an_ended_member_can_be_revoked(expires: str) -> None:
    """Its end is in the past: a revocation set to expire then is refused (`expired`)."""
    w = World()
    member = w.join(w.net.invite(member_ttl=DAY), at=T0 + 10)
    now = T0 + 3 * DAY
    end = w.state.credentials_end(member.key.public)
    revocation = make_revocation(
        w.net.root, network_id=w.nid, target=member.key.public, target_role=Role.MEMBER,
        issued_at=now, expires_at=end if expires == "its end" else KEPT_FOR_GOOD, reason="",
        chain=(), sponsored=(),
    )  # fmt: skip
    if expires == "its end":
        with pytest.raises(VerifyError) as caught:
            w.ingest(revocation, now)
        assert caught.value.reason == "expired"
        return
    w.ingest(revocation, now)
    revoked = w.state.member(member.key.public, now)
    assert revoked is not None
    assert revoked.state is MemberState.REVOKED
