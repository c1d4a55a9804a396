"""Publishing our own records on the gossip topic (they are merged and stored first)."""

from __future__ import annotations

import logging

from meshd.daemon.state import NodeState
from meshd.daemon.transport import Transport
from meshd.gossip.streams import TransportError
from meshd.records import record_id

log = logging.getLogger(__name__)


class Flooder:
    def __init__(self, host: Transport, state: NodeState) -> None:
        self.host = host
        self.state = state

    async def flood(self, raw: bytes) -> None:
        """Publish ``raw``, which the owner holds already (the validator lets it pass)."""
        self.state.outgoing.add(raw)
        try:
            await self.host.publish(raw)
            self.state.traffic.published()
        except TransportError as exc:
            log.warning("could not publish record %s: %s", record_id(raw).hex()[:12], exc)
        finally:
            self.state.outgoing.discard(raw)
