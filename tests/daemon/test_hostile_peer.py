"""A raw libp2p peer, valid at the libp2p level but not a member, publishing bad records."""

from __future__ import annotations

import os
from pathlib import Path

from meshd.node.statedir import now
from meshd.node.store import Store
from meshd.records import (
    Announcement,
    Kind,
    Role,
    decode_untrusted,
    make_announcement,
    make_revocation,
)
from meshd.trust.keys import SigningKey
from tests.daemon.raw_peer import publish_as_stranger
from tests.daemon.support import daemons, wait_for


def test_forged_replayed_and_oversized_records_go_nowhere(tmp_path: Path) -> None:
    with daemons(tmp_path, "founder", "node1", "node2") as (founder, n1, n2):
        founder.init()
        founder.up()
        n1.join(founder.invite("--name", "node1"))
        wait_for(lambda: founder.states().get("node1") == "admitted", 10, "node1 admitted")
        wait_for(lambda: n1.ask("status")["digest"] == founder.ask("status")["digest"], 10, "quiet")
        status = founder.ask("status")
        before = {d.name: d.ask("status")["digest"] for d in (founder, n1)}
        store = Store(founder.state_dir / "meshd.db")
        try:
            genuine = next(raw for _, raw in store.rows([Kind.ANNOUNCEMENT]))
        finally:
            store.close()
        stranger = SigningKey.generate()
        forged_signature = genuine[:-1] + bytes([genuine[-1] ^ 1])

        ann = decode_untrusted(genuine, Announcement)
        strangers_announcement = make_announcement(
            stranger, network_id=ann.network_id, seq=1, issued_at=now()
        ).raw
        forged_revocation = make_revocation(
            stranger,
            network_id=ann.network_id,
            target=ann.node_key,
            target_role=Role.MEMBER,
            issued_at=now(),
            expires_at=now() + 3600,
        ).raw
        attacks = [
            forged_signature,
            genuine,  # a replay of what everyone has
            strangers_announcement,
            forged_revocation,
            os.urandom(100_000),  # oversized, and garbage
            b"\x92" + os.urandom(300),
        ]
        received = publish_as_stranger(status, attacks)
        # Nothing stored, nothing forwarded: the digests did not move.
        after = founder.ask("status")
        assert after["digest"] == before["founder"]
        assert n1.ask("status")["digest"] == before["node1"]
        rejected = after["rejected"]
        # The forged copy is refused as stale or as badly signed, whichever check comes first;
        # the replay is merely known (not counted); the oversized one never reaches us. The
        # stranger's announcement and revocation name no key we know: they are refused, or wait
        # in the pending pool (bounded per source) for a credential or a root rollover that
        # would make them valid; either way nothing of theirs is applied (the digests above).
        assert rejected.get("decode", 0) >= 1, rejected
        waiting = after["pending"] - status["pending"]
        assert rejected.get("bad-chain", 0) + waiting >= 2, (rejected, waiting)
        assert sum(rejected.values()) + waiting >= 4, (rejected, waiting)
        # Honest gossip goes on: a new member is seen by the others.
        n2.join(founder.invite("--name", "node2"))
        wait_for(lambda: n1.states().get("node2") == "admitted", 10, "node2 seen by node1")
        # The stranger was dropped (or is about to be) and never became a peer entry.
        assert "" not in n1.states()
        assert all(m not in received for m in attacks[2:])
