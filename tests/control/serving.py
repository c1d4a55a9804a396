"""A control server on a socket while a client runs in a thread: the client's result."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio

from meshd.control.server import Handler, serve

T = TypeVar("T")


def with_server(path: Path, handler: Handler, client: Callable[[], T], **options: Any) -> T:
    """Serve ``handler`` on ``path`` (with the server's ``options``), run ``client`` in a
    thread, stop the server once it returns and give back what it returned."""
    results: list[T] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve, path, handler, **options))
            results.append(await trio.to_thread.run_sync(client))
            nursery.cancel_scope.cancel()

    trio.run(main)
    return results[0]
