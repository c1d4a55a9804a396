"""The gossip budgets of the peer gate (pure, fake clock)."""

from __future__ import annotations

from meshd.daemon.budgets import FORWARDER_BURST, GOSSIP_STRANGERS_BURST, GOSSIP_STRANGERS_RATE
from meshd.daemon.gate import PeerGate


def test_forwarders_that_are_no_members_share_one_gossip_budget() -> None:
    """Each forwarder has its own rate, keyed by its peer id, which a stranger mints at will:
    128 stranger connections each at a forwarder's burst made 64,000 messages to check in a
    second. Non-member forwarders now also share one budget."""
    gate = PeerGate(is_member_peer=lambda peer: peer.startswith("member"))
    allowed = sum(
        gate.allow_gossip(f"author{n}-{k}", f"stranger{n}", 0.0)
        for n in range(128)
        for k in range(500)
    )
    assert allowed == GOSSIP_STRANGERS_BURST
    assert gate.reject_reasons["rate-limited"] == 128 * 500 - allowed
    # A member forwarder is not held back by what strangers spent.
    members = sum(gate.allow_gossip(f"a{k}", "member1", 0.0) for k in range(int(FORWARDER_BURST)))
    assert members == FORWARDER_BURST
    # The shared budget refills at its rate.
    later = sum(gate.allow_gossip(f"b{k}", f"stranger{k}", 1.0) for k in range(1000))
    assert later == GOSSIP_STRANGERS_RATE
