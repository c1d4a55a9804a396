"""Site interfaces made anew: Babel started again on them (shell, and a pure rule).

A Babel port is a socket bound to its interface's index. An interface deleted and made
again under the same name (a VLAN or a bridge re-created by the network's manager, a USB
adapter plugged back) has a new index: the old socket reaches nothing, and Babel on that
link stayed dead, neighbours and routes gone, until the daemon was restarted.
:func:`follow_site_links` looks at the indexes every :data:`EVERY` seconds and calls
``restart`` once an interface is back under a new index (the daemon starts its Babel
speaker again, as after a WireGuard key rotation: new ports, neighbours found again within
a few Hellos). While one is gone nothing is done but a line in the log: it may come back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import trio

from meshd.babel.ports import interface_addresses
from meshd.errors import BackendError

log = logging.getLogger(__name__)

#: Seconds between two looks at the site interfaces' indexes.
EVERY: Final = 2.0


async def ready_index(name: str) -> int | None:
    """The interface's index once it can carry Babel again (it has a link-local address
    that is no longer tentative), else None (gone, down, or not ready yet)."""
    try:
        addresses = await interface_addresses(name, wait=0)
    except BackendError:
        return None
    return addresses.index if addresses.link_local is not None else None


def moved(opened: Mapping[str, int], now: Mapping[str, int | None]) -> str | None:
    """The first interface that is back under another index than the one its port was
    opened on (pure); None if none is (one that is gone is not: it may come back)."""
    for name, index in opened.items():
        found = now.get(name)
        if found is not None and found != index:
            return name
    return None


async def follow_site_links(
    opened: Mapping[str, int],
    restart: Callable[[str], None],
    *,
    every: float = EVERY,
    index_of: Callable[[str], Awaitable[int | None]] = ready_index,
) -> None:
    """Call ``restart(name)`` once an interface of ``opened`` (name -> the index its port
    was opened on) is there under another index; log once when one goes and comes back.
    Returns after ``restart``; runs until cancelled otherwise."""
    gone: set[str] = set()
    while True:
        await trio.sleep(every)
        now = {name: await index_of(name) for name in opened}
        for name, index in now.items():
            if index is None and name not in gone:
                gone.add(name)
                log.warning("Babel: interface %s is gone or down; waiting for it", name)
            elif index is not None and name in gone and index == opened[name]:
                gone.discard(name)
                log.info("Babel: interface %s is back", name)
        anew = moved(opened, now)
        if anew is not None:
            log.info(
                "Babel: interface %s was made anew (index %s, was %s): starting Babel again",
                anew,
                now[anew],
                opened[anew],
            )
            restart(anew)
            return
