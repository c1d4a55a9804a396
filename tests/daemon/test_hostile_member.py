"""Members and former members, through real daemons, against other members' standing.

A raw libp2p peer publishes records signed with a member's own node key (read from its state
dir, as a thief of that key would): a countersigned copy of an honest member's enrollment
dated earlier (rule (a): it must not evict the honest member), and, after the member's
revocation, a backdated admission of a stolen expired token's enrollment (rule (b): it must
admit no one).
"""

from __future__ import annotations

import time
from pathlib import Path

from meshd.node.store import Store
from meshd.records import Admission, Kind, decode_untrusted, make_admission, record_id
from meshd.trust.invites import decode_token_untrusted, enroll
from meshd.trust.keyfiles import read_secret
from meshd.trust.keys import SigningKey, WireGuardKey
from tests.daemon.raw_peer import publish_as_stranger
from tests.daemon.support import Daemon, daemons, meshd, wait_for


def _publish(target: Daemon, records: list[bytes]) -> None:
    """Publish ``records`` on the network's topic from a fresh libp2p identity."""
    publish_as_stranger(target.ask("status"), records)


def _admission_of(daemon: Daemon, node_key: bytes) -> Admission:
    store = Store(daemon.state_dir / "meshd.db")
    try:
        for _, raw in store.rows([Kind.ADMISSION]):
            admission = decode_untrusted(raw, Admission)
            if admission.enrollment.node_key == node_key:
                return admission
    finally:
        store.close()
    raise AssertionError("no admission of that member in the store")


def _stored(daemon: Daemon, rid: bytes) -> bool:
    store = Store(daemon.state_dir / "meshd.db")
    try:
        return any(r == rid for r, _ in store.rows([Kind.ADMISSION]))
    finally:
        store.close()


def _all_admitted(daemon: Daemon, *names: str) -> bool:
    states = daemon.states()
    return all(states.get(name) in ("admitted", "self") for name in names)


def _node_key(daemon: Daemon) -> SigningKey:
    return SigningKey(read_secret(daemon.state_dir / "node.key"))


def test_a_copy_dated_before_the_honest_admission_evicts_no_one(tmp_path: Path) -> None:
    """Attack 1: a standing member countersigns a copy of an honest member's enrollment dated
    before the honest admission (and before its own): the honest member stays admitted on
    every node."""
    with daemons(tmp_path, "founder", "honest", "mallory") as (founder, honest, mallory):
        founder.init()
        founder.up()
        token = founder.invite("--name", "honest")
        time.sleep(1.5)  # room for a copy dated between the invite's start and the admission
        honest.join(token)
        mallory.join(founder.invite("--name", "mallory"))
        nodes = (founder, honest, mallory)
        for node in nodes:
            wait_for(
                lambda node=node: _all_admitted(node, "honest", "mallory"),  # type: ignore[misc]
                15,
                f"all admitted at {node.name}",
                describe=node.states,
            )
        genuine = _admission_of(founder, _node_key(honest).public)
        invite = genuine.enrollment.invite
        at = genuine.admitted_at - 1
        assert at >= invite.not_before
        copy = make_admission(_node_key(mallory), enrollment=genuine.enrollment, admitted_at=at)
        _publish(founder, [copy.raw])
        rid = record_id(copy.raw)
        wait_for(lambda: _stored(founder, rid), 10, "the copy to reach the founder's store")
        time.sleep(1.0)
        for node in nodes:
            assert _all_admitted(node, "honest"), (node.name, node.states())


def test_a_revoked_member_admits_no_one_with_a_backdated_countersignature(
    tmp_path: Path,
) -> None:
    """Attack 2: after its revocation, a member countersigns a stolen expired token's
    enrollment, dated inside the invite's window and before the revocation: the new key is
    admitted nowhere. The member it sponsored before (listed by `meshd revoke`) stays."""
    names = ("founder", "honest", "mallory", "kid")
    with daemons(tmp_path, *names) as (founder, honest, mallory, kid):
        founder.init()
        founder.up()
        honest.join(founder.invite("--name", "honest"))
        mallory.join(founder.invite("--name", "mallory"))
        wait_for(lambda: founder.states().get("mallory") == "admitted", 15, "mallory admitted")
        through_mallory = mallory.ask("status")["listen_addrs"][0]
        kid.join(founder.invite("--name", "kid", "--bootstrap", through_mallory))
        wait_for(lambda: founder.states().get("kid") == "admitted", 15, "kid admitted")
        assert _admission_of(founder, _node_key(kid).public).sponsor == _node_key(mallory).public
        # A token made while mallory stands, stolen, never redeemed; mallory is revoked after
        # its window opened.
        stolen = decode_token_untrusted(founder.invite("--expires", "5s"))
        time.sleep(1.5)
        result = meshd("revoke", "mallory", "--state-dir", str(founder.state_dir))
        assert result.returncode == 0, result.stderr
        for node in (founder, honest):
            wait_for(
                lambda node=node: node.states().get("mallory") == "revoked",  # type: ignore[misc]
                10,
                f"mallory revoked at {node.name}",
            )
            assert node.states().get("kid") == "admitted", (node.name, node.states())
        invite = stolen.certificate
        wait_for(lambda: time.time() > invite.not_after + 1, 10, "the stolen token to expire")
        joiner = SigningKey.generate()
        # Inside the window, after mallory's own admission and before its revocation.
        at = invite.not_before
        assert _admission_of(founder, _node_key(mallory).public).admitted_at <= at
        enrollment = enroll(
            stolen,
            node_key=joiner.public,
            wg_key=WireGuardKey.generate().public,
            name="stowaway",
            now=at,
        )
        admission = make_admission(_node_key(mallory), enrollment=enrollment, admitted_at=at)
        _publish(founder, [admission.raw])
        rid = record_id(admission.raw)
        wait_for(lambda: _stored(founder, rid), 10, "the admission to reach the founder's store")
        wait_for(lambda: _stored(honest, rid), 10, "the admission to reach the honest member")
        time.sleep(1.0)
        for node in (founder, honest):
            assert node.states().get("stowaway") != "admitted", (node.name, node.states())
