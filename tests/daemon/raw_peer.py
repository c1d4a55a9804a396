"""A raw libp2p peer on the network's gossip topic: valid at the libp2p level, a fresh
identity, not a member. It publishes whatever bytes it is given."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import trio

from meshd.gossip.host import GossipHost, HostConfig


def _accept_all(*message: object) -> bool:
    return True


def publish_as_stranger(
    status: dict[str, Any], records: Sequence[bytes], *, max_message_size: int = 256 * 1024
) -> list[bytes]:
    """Connect to the daemon whose ``status`` is given, wait until it is a gossip peer,
    publish ``records``, wait a second, and return what gossip brought back meanwhile."""
    received: list[bytes] = []

    async def run() -> None:
        config = HostConfig(
            identity_seed=os.urandom(32),
            listen_addrs=("/ip4/127.0.0.1/tcp/0",),
            topic=f"/meshd/{status['network_id']}/1",
            max_message_size=max_message_size,
            shutdown_timeout=3.0,
        )
        async with GossipHost(config, _accept_all) as raw:
            result = await raw.connect_any(status["listen_addrs"])
            assert result[0].ok, result
            with trio.fail_after(10):
                while result[0].peer_id not in raw.gossip_peers():  # noqa: ASYNC110
                    await trio.sleep(0.05)
            for data in records:
                await raw.publish(data)
            await trio.sleep(1.0)
            while True:
                try:
                    received.append(raw.messages.receive_nowait().data)
                except trio.WouldBlock:
                    break

    trio.run(run)
    return received
