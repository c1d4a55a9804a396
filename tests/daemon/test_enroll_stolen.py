"""An enrollment seen in transit, presented to a real sponsor by another peer (attack).

Enrollments travel in the clear inside the admissions members flood. A peer that copies one
and presents it to a sponsor over the enrollment protocol must be refused: the sponsor
countersigns only for the peer whose Noise-authenticated key is the enrollment's node key
(``wrong-peer``), and the invite it names is not used up by the attempt, so its holder still
joins with it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from meshd.daemon.streams import request_admission
from meshd.errors import VerifyError
from meshd.gossip import enroll as enroll_protocol
from meshd.gossip.host import GossipHost
from meshd.trust.invites import decode_token_untrusted, enroll
from meshd.trust.keys import SigningKey, WireGuardKey
from tests.daemon.support import daemons, wait_for
from tests.gossip.support import config


def _refuse(data: bytes, author: str, forwarder: str) -> bool:
    return False


def test_an_enrollment_presented_by_another_peer_is_refused_and_the_invite_kept(
    tmp_path: Path,
) -> None:
    with daemons(tmp_path, "founder", "j") as (founder, joiner):
        founder.init()
        founder.up()
        token = founder.invite("--name", "j", "--uses", "1")
        sponsor = founder.ask("status")["peer_id"]
        invite = decode_token_untrusted(token)
        victim, wg = SigningKey.generate(), WireGuardKey.generate()
        seen = enroll(
            invite, node_key=victim.public, wg_key=wg.public, name="j", now=int(time.time())
        )

        async def attack() -> str:
            async with GossipHost(config(), _refuse) as thief:  # a key of its own
                await thief.connect(f"{founder.listen}/p2p/{sponsor}")
                stream = await thief.open_stream(sponsor, enroll_protocol.PROTOCOL_ID)
                with pytest.raises(VerifyError) as refused:
                    await request_admission(stream, seen)
                return refused.value.reason

        assert trio.run(attack) == "wrong-peer"
        assert [p for p in founder.peers() if p != "founder"] == []  # nobody admitted
        joiner.join(token)  # the invite (one use) is still whole
        wait_for(lambda: founder.states().get("j") == "admitted", 20, "j admitted")
