"""The ``none`` backend: an in-memory device with WireGuard's semantics.

For simulations and daemon tests on machines without WireGuard: peers change exactly as
:func:`meshd.wg.reconcile.apply_operations` says, routes are remembered, nothing is sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager

from meshd.trust.keys import WgKey
from meshd.wg.backend import InterfaceConfig
from meshd.wg.model import DeviceState, IPNetwork, Operation, PeerConfig
from meshd.wg.reconcile import apply_operations


class NullBackend:
    def __init__(self, config: InterfaceConfig) -> None:
        self.config = config
        self.state = DeviceState(
            public_key=config.public_key,
            has_private_key=True,
            listen_port=config.listen_port or None,
            fwmark=config.fwmark,
        )
        self.routes: set[IPNetwork] = set()

    @property
    def ifname(self) -> str:
        return self.config.ifname

    async def get(self) -> DeviceState:
        return self.state

    async def set(self, operations: Sequence[Operation]) -> None:
        self.state = apply_operations(self.state, operations)

    def prepared_set(self, operations: Sequence[Operation]) -> Callable[[], None]:
        """:class:`meshd.wg.backend.ThreadedSet`: applied when called."""
        ops = list(operations)

        def apply() -> None:
            self.state = apply_operations(self.state, ops)

        return apply

    def expect(self, peers: Mapping[WgKey, PeerConfig]) -> None:
        """Nothing to do: the in-memory device holds the values it was set to."""

    async def replace_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        self.routes.update(prefixes)

    async def rekey(self, private_key: bytes) -> None:
        self.config = dataclasses.replace(self.config, private_key=private_key)
        self.state = dataclasses.replace(self.state, public_key=self.config.public_key)

    async def delete_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        self.routes.difference_update(prefixes)

    async def aclose(self) -> None:
        self.state = DeviceState()
        self.routes.clear()


@asynccontextmanager
async def open_null_backend(config: InterfaceConfig) -> AsyncIterator[NullBackend]:
    backend = NullBackend(config)
    try:
        yield backend
    finally:
        await backend.aclose()
