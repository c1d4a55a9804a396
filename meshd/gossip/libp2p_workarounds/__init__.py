"""Workarounds for py-libp2p 0.8.1: the settings, patches and containment meshd relies on.

Written and measured against **py-libp2p 0.8.1** (:data:`LIBP2P_VERSION`, pinned in
pyproject.toml). Most of it reaches into libp2p internals (private attributes, module
globals, a method replaced on a class), so it is tied to that version's source.
docs/gossip.md, "py-libp2p 0.8.1 pitfalls", gives the measured reason for each item.

**Importing this package (any of its modules) patches py-libp2p for the whole process**
(the last lines below): signed peer records are verified once per change, pubsub registers
a peer once at a time (a task and a stream leaked each time two registrations raced), Yamux
returns receive-window credit at half the window and forgets a reset stream at once, TCP
listen ports are not shared (no SO_REUSEPORT), and libp2p's and trio's noisiest log lines
are held to what says something
(filters from :mod:`.logs`). Every other workaround is a function that the host
(:mod:`meshd.gossip.host`, :mod:`meshd.gossip.stack`) calls. By module:

* :mod:`.router`: the gossipsub router's settings, our own messages flooded to every peer
  of the topic, the publish sequence number, publish pacing; the signed-record patch.
* :mod:`.inbound`: the inbound handshake gate, per source and in total, and the end of
  the handlers of closed inbound connections.
* :mod:`.connections`: the auto-connector stopped, the listen queue widened, exclusive
  listen ports, dials to a new address; the Yamux credit patch.
* :mod:`.stream_cap`: the streams a remote may hold open on one connection; the reset
  stream forgotten.
* :mod:`.peerstore`: the host's own peerstore entry never evicted; the peers that are gone
  forgotten.
* :mod:`.shutdown`: closing the host with libp2p's shutdown race contained, and flattening
  what is left of libp2p's exception groups.
* :mod:`.logs`: the bridge from libp2p's loggers to ours, and the filters on them.

Re-checking on an upgrade of py-libp2p. Each module's docstring lists its items, and for
each, the places to read in the new libp2p source: a patch of a function that was renamed or
moved patches nothing, silently. Then run ``.venv/bin/pytest -q tests/gossip tests/daemon``
and measure the CPU per published message (docs/gossip.md, "Figures") with and without each
CPU item: a newer libp2p may make one unnecessary. Last, change :data:`LIBP2P_VERSION`, the
pin and docs/gossip.md. tests/gossip/test_workarounds.py checks that what each patch
replaces is still there.

Two more live with the host, being its own behaviour: libp2p's 32-slot subscription queue
(``pubsub.SUBSCRIPTION_CHANNEL_SIZE``) is drained at once into a larger channel
(:mod:`meshd.gossip.delivery`, ``TopicDelivery.drain``), and ``GossipHost.connect_any``
dials different peers concurrently (:mod:`meshd.gossip.dialling`, ``dial_all``), since each
dial waits out the 250 ms happy-eyeballs delay (``network/swarm.py``); one peer's addresses
go one after another, as py-libp2p dials them anyway.
"""

from __future__ import annotations

import logging
from typing import Final

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.pubsub import gossipsub as libp2p_gossipsub
from libp2p.pubsub import pubsub as libp2p_pubsub
from libp2p.stream_muxer.yamux.yamux import YamuxStream
from libp2p.transport.tcp import tcp as libp2p_tcp

from meshd.gossip.libp2p_workarounds.connections import (
    _open_exclusive_listeners,
    _release_window_at_half,
)
from meshd.gossip.libp2p_workarounds.logs import (
    ACCEPT_LOG_FILTER,
    ACCEPT_LOGGER,
    GOSSIPSUB_LOG_FILTER,
    GOSSIPSUB_LOGGER,
    HOST_LOG_FILTER,
    HOST_LOGGER,
    MULTISELECT_LOG_FILTER,
    MULTISELECT_LOGGER,
    SWARM_LOG_FILTER,
    SWARM_LOGGER,
    TCP_LOG_FILTER,
    TCP_LOGGER,
)
from meshd.gossip.libp2p_workarounds.router import (
    _consume_signed_record_once,
    _register_peer_once,
)
from meshd.gossip.libp2p_workarounds.stream_cap import _reset_and_forget

__all__ = ["LIBP2P_VERSION"]

LIBP2P_VERSION: Final = "0.8.1"
"""The py-libp2p version these workarounds were written and measured against."""


# -- patches (applied when this package is imported) -----------------------------------------

# Both modules imported the function by name: replace it where it is looked up.
libp2p_pubsub.maybe_consume_signed_record = _consume_signed_record_once  # type: ignore[attr-defined]
libp2p_gossipsub.maybe_consume_signed_record = _consume_signed_record_once  # type: ignore[attr-defined]
YamuxStream._auto_tune_and_send_window_update = _release_window_at_half  # type: ignore[method-assign]
YamuxStream.reset = _reset_and_forget  # type: ignore[method-assign]
if not hasattr(libp2p_pubsub.Pubsub._handle_new_peer, "__wrapped__"):
    libp2p_pubsub.Pubsub._handle_new_peer = _register_peer_once(  # type: ignore[method-assign]
        libp2p_pubsub.Pubsub._handle_new_peer
    )
libp2p_tcp._open_reuseport_listeners = _open_exclusive_listeners
logging.getLogger(ACCEPT_LOGGER).addFilter(ACCEPT_LOG_FILTER)
logging.getLogger(GOSSIPSUB_LOGGER).addFilter(GOSSIPSUB_LOG_FILTER)
logging.getLogger(HOST_LOGGER).addFilter(HOST_LOG_FILTER)
logging.getLogger(TCP_LOGGER).addFilter(TCP_LOG_FILTER)
logging.getLogger(MULTISELECT_LOGGER).addFilter(MULTISELECT_LOG_FILTER)
logging.getLogger(SWARM_LOGGER).addFilter(SWARM_LOG_FILTER)
