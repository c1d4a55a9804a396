"""Closing a host, with py-libp2p 0.8.1's shutdown race contained.

Leaving ``host.run()`` closes neither the connections nor the listeners, and stopping
libp2p's services while it still had work raised ``RuntimeError: Nursery is closed to new
arrivals`` out of ``trio.run``. What is here, and why:

* :func:`close_host` closes the host (connections, then listeners) and contains that race;
* :func:`drop_nursery_closed` removes the race's errors from an exception group, and
  :func:`leaves` flattens nested groups, so that what is left propagates as itself.

To re-check on an upgrade of py-libp2p (the tests are in tests/gossip/test_host.py):

- Shutdown (:func:`close_host`, :func:`drop_nursery_closed`). ``BasicHost.close`` and
  ``host.run()``; the "Nursery is closed to new arrivals" race. Tests:
  test_shutdown_is_prompt_and_leaves_nothing_behind, test_an_error_in_the_body_propagates_unwrapped.
"""

from __future__ import annotations

import logging
from typing import Final

# isort: split
import meshd.gossip.lean_imports  # noqa: F401 (py-libp2p lean: meshd.gossip.lean_imports)

# isort: split
from libp2p.abc import IHost

__all__ = ["close_host", "drop_nursery_closed", "leaves"]

# The workarounds log on their package's logger, whichever module they live in.
logger = logging.getLogger("meshd.gossip.libp2p_workarounds")

_NURSERY_CLOSED: Final = "Nursery is closed to new arrivals"


async def close_host(host: IHost) -> None:
    """``host.close()`` (connections, then listeners), with libp2p's shutdown race contained.

    Leaving ``host.run()`` closes neither; call this before stopping pubsub and gossipsub.
    """
    try:
        await host.close()
    except RuntimeError as exc:
        if _NURSERY_CLOSED not in str(exc):
            raise
        logger.debug("contained libp2p shutdown race in host.close(): %s", exc)


def drop_nursery_closed(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """Remove libp2p's shutdown-race RuntimeErrors from ``group``; return what is left."""
    matched, rest = group.split(lambda e: isinstance(e, RuntimeError) and _NURSERY_CLOSED in str(e))
    if matched is not None:
        logger.debug("contained libp2p shutdown race: %s", _NURSERY_CLOSED)
    return rest


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions in ``error``, with every (nested) exception group flattened."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]
