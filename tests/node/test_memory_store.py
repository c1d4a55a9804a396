"""The memory benchmark's synthetic stores (benchmarks/memory.py): the members it builds all
stand, certified by the root or joined under invites, and the daemon's load sees them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.memory import INVITE_USES, build_store
from meshd.membership import Membership
from meshd.node.statedir import NodeDir
from meshd.records import Kind


@pytest.mark.parametrize("joined", ["certified", "invited"])
def test_a_synthetic_store_holds_that_many_standing_members(tmp_path: Path, joined: str) -> None:
    members = INVITE_USES + 5  # two invites' worth when invited
    build_store(tmp_path / "n", members, joined=joined)
    node = NodeDir.open(tmp_path / "n")
    try:
        state = Membership(node.anchor)
        now = int(time.time())
        node.store.load_into(state, now)
        assert len(state.members(now)) == members
        admissions = sum(1 for _ in node.store.rows([Kind.ADMISSION]))
        assert admissions == (members - 1 if joined == "invited" else 0)
    finally:
        node.store.close()
