"""`meshd rotate node` again and again, offline: each hand-over names the one before by id."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from meshd.membership import MemberState
from meshd.node.statedir import NodeDir, now
from meshd.records import Handover, Kind, decode_record_untrusted, record_id
from tests.cli.test_cli import founder, run

__all__ = ["founder"]


def test_rotating_the_node_key_three_times_writes_flat_hand_overs(
    founder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = NodeDir.open(founder)
    try:
        first = node.node_key.public
        before = node.membership().member(first, now())
        assert before is not None
    finally:
        node.close()
    for _ in range(3):
        code, out, err = run(capsys, "rotate", "node", "--json", "--state-dir", str(founder))
        assert code == 0, err
        assert json.loads(out)["overlay_ip"] == str(before.overlay)
    node = NodeDir.open(founder)
    try:
        records = [decode_record_untrusted(raw) for _, raw in node.store.rows([Kind.HANDOVER])]
        handovers = {r.old_key: r for r in records if isinstance(r, Handover)}
        assert len(handovers) == 3
        chain = [handovers[first]]
        while chain[-1].new_key in handovers:
            chain.append(handovers[chain[-1].new_key])
        assert len(chain) == 3
        assert chain[0].previous == b""
        for earlier, later in itertools.pairwise(chain):
            assert later.previous == record_id(earlier.raw)
            assert later.credential.raw == chain[0].credential.raw  # the enrolled one
        assert {len(h.raw) for h in chain[1:]} == {len(chain[1].raw)}
        member = node.membership().member(node.node_key.public, now())
        assert member is not None
        assert member.state is MemberState.ADMITTED
        assert node.node_key.public == chain[-1].new_key
        assert (member.name, member.overlay) == (before.name, before.overlay)
    finally:
        node.close()
