"""Helpers for the libp2p transport tests: trio without a plugin, hosts on loopback."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from meshd.gossip.host import GossipHost, HostConfig, Validator

TOPIC = "/meshd/test/1"


def run_trio(test: Callable[[], Awaitable[None]], *, timeout: float = 15.0) -> None:
    """Run an async test body under trio with an overall deadline."""

    async def main() -> None:
        with trio.fail_after(timeout):
            await test()

    trio.run(main)


def accept_all(data: bytes, author: str, forwarder: str) -> bool:
    return True


def config(seed: bytes | None = None, **overrides: Any) -> HostConfig:
    settings: dict[str, Any] = {
        "identity_seed": seed if seed is not None else os.urandom(32),
        "listen_addrs": ("/ip4/127.0.0.1/tcp/0",),
        "topic": TOPIC,
        "shutdown_timeout": 3.0,
        "stream_timeout": 3.0,
        "dial_timeout": 3.0,
    }
    settings.update(overrides)
    return HostConfig(**settings)


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds; callers bound it with ``trio.fail_after``."""
    with trio.fail_after(5.0):
        while not condition():  # noqa: ASYNC110 - host state exposes no event to wait on
            await trio.sleep(0.01)


@asynccontextmanager
async def running_hosts(
    *configs: HostConfig, validators: list[Validator] | None = None
) -> AsyncIterator[list[GossipHost]]:
    """Start one host per config (validators default to accepting everything)."""
    validators = validators or [accept_all] * len(configs)
    async with AsyncExitStack() as stack:
        hosts = [
            await stack.enter_async_context(GossipHost(cfg, validator))
            for cfg, validator in zip(configs, validators, strict=True)
        ]
        yield hosts


async def link(dialer: GossipHost, listener: GossipHost) -> None:
    """Connect two hosts and wait until each sees the other on the topic."""
    results = await dialer.connect_any(listener.listen_addrs())
    assert results[0].ok, results
    await wait_until(
        lambda: (
            listener.peer_id in dialer.gossip_peers() and dialer.peer_id in listener.gossip_peers()
        )
    )
