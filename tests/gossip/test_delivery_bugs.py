"""A validator that raises on a message (a bug a peer found) rejects it and the host runs on,
without a traceback a message: 10,000 such messages are one traceback and a count."""

from __future__ import annotations

import logging

import pytest
from libp2p.peer.id import ID

from meshd.gossip.config import HostConfig
from meshd.gossip.delivery import TopicDelivery
from meshd.gossip.peers import peer_id_of


def test_a_validator_bug_a_peer_sets_off_again_and_again_is_one_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def validator(data: bytes, author: str, forwarder: str) -> bool:
        return {b"k": True}[data]  # KeyError on anything else: the bug

    own = ID.from_base58(peer_id_of(bytes(32)))
    delivery = TopicDelivery(HostConfig(identity_seed=bytes(32)), validator, own)
    caplog.set_level(logging.DEBUG, logger="meshd.gossip.host")
    for n in range(10_000):
        assert not delivery.accepts(b"x%d" % n, "author", "forwarder")
    assert delivery.accepts(b"k", "author", "forwarder")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, len(errors)
    assert errors[0].exc_info is not None
    assert "the gossip validator (message rejected) raised KeyError" in errors[0].getMessage()
