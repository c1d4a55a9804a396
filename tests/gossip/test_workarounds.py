"""The py-libp2p workarounds still reach what they patch (meshd/gossip/libp2p_workarounds.py).

A patch of a function that a new libp2p renamed or stopped calling patches nothing, silently:
these tests read the installed libp2p's source for each place the module names, and fail on
an upgrade until every workaround has been re-checked (the module's docstring says how).
"""

from __future__ import annotations

import importlib.metadata
import inspect

import libp2p.pubsub.gossipsub as libp2p_gossipsub
import libp2p.pubsub.pubsub as libp2p_pubsub
from libp2p.network.swarm import Swarm
from libp2p.pubsub.pubsub import Pubsub
from libp2p.stream_muxer.yamux.yamux import YamuxStream

from meshd.gossip import libp2p_workarounds as workarounds


def test_the_installed_libp2p_is_the_one_the_workarounds_were_written_for() -> None:
    assert importlib.metadata.version("libp2p") == workarounds.LIBP2P_VERSION


def test_signed_peer_records_are_checked_through_the_patched_name() -> None:
    # Both modules imported the function by name and call it by that name.
    for module in (libp2p_pubsub, libp2p_gossipsub):
        assert "maybe_consume_signed_record(" in inspect.getsource(module), module.__name__
        patched = module.maybe_consume_signed_record
        assert patched is workarounds._consume_signed_record_once


def test_yamux_calls_the_patched_window_update_and_has_what_it_uses() -> None:
    source = inspect.getsource(YamuxStream)
    assert "self._auto_tune_and_send_window_update(" in source
    for name in ("window_lock", "_pending_recv_release", "target_recv_window", "recv_window"):
        assert f"self.{name}" in source, name
    assert "def send_window_update(" in source
    assert YamuxStream._auto_tune_and_send_window_update is workarounds._release_window_at_half


def test_what_the_other_workarounds_reach_into_is_there() -> None:
    pubsub = inspect.getsource(Pubsub)
    assert "self.counter" in pubsub  # seed_sequence_number
    assert "self.peer_queues" in pubsub  # wait_for_queue_room
    assert "self.auto_connector" in inspect.getsource(Swarm)  # stop_auto_connector
