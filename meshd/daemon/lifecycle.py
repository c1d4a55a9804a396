"""How a running daemon is asked to stop, other than by a signal.

``meshd down`` sends the control command ``down``; its handler calls :func:`request_down`
for the daemon's state dir, and :func:`stop_on_down`, started beside the daemon by
meshd.daemon.launch.run_until_signalled, ends the daemon's nursery as SIGTERM would: the
gossip host closes, the interface goes, the state dir's lock is released last (``meshd down``
waits for that). A daemon run some other way (a test's nursery) has no waiter, and ``down``
says so.

:func:`stop_when_revoked` ends the daemon when this node's own membership is revoked (as
:mod:`meshd.daemon.standing` decides): it raises :class:`meshd.errors.NodeRevoked`, whose line
and exit status the command line shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import trio

from meshd.daemon.standing import Ended, OwnStanding
from meshd.errors import KeyHandedOver, NodeRevoked
from meshd.membership import MemberState

log = logging.getLogger(__name__)

T = TypeVar("T")

REPLY_GRACE: Final = 0.2
"""Seconds between a ``down`` request and the shutdown, for its answer to leave."""
REVOKED_NOTE: Final = "revoked"
"""The file in the state dir that says why a revoked node's daemon stopped."""

_waiters: dict[Path, trio.Event] = {}


def _key(root: Path) -> Path:
    return root.resolve()


def request_down(root: Path) -> bool:
    """Ask the daemon of ``root`` to stop; False if it was not started to listen for that."""
    event = _waiters.get(_key(root))
    if event is None:
        return False
    event.set()
    return True


async def stop_on_down(root: Path, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` (the daemon's) once ``meshd down`` asks for it."""
    key = _key(root)
    event = _waiters[key] = trio.Event()
    try:
        await event.wait()
        log.info("down: shutting down (asked through the control socket)")
        await trio.sleep(REPLY_GRACE)
        scope.cancel()
    finally:
        if _waiters.get(key) is event:
            del _waiters[key]


def revocation_text(membership: Any, member: Any) -> str | None:
    """The reason a revoked member's revocation gives ("" for none); None unless revoked."""
    if member.state is not MemberState.REVOKED:
        return None
    found = membership.revocation_of(member.node_key)
    return "" if found is None else str(found.reason)


async def stop_when_revoked(standing: OwnStanding, root: Path) -> None:
    """Raise NodeRevoked once this node's own standing (``standing``: NodeState's one watcher
    of it) ends by a revocation; the reason is left in ``root``/``revoked`` first, for ``meshd
    status`` once the daemon is gone. Raise KeyHandedOver (exit 75: start again) once our key
    was handed over. A leave is the departure's (meshd.daemon.renewer.Departure)."""
    ending = await standing.wait()
    if ending.how is Ended.HANDED_OVER:
        log.warning("this node's key was handed over to a new key: stopping to start again")
        raise KeyHandedOver.now()
    if ending.how is Ended.REVOKED:
        reason = ending.reason
        log.error("this node is revoked%s: stopping", f" ({reason})" if reason else "")
        with contextlib.suppress(OSError):
            (root / REVOKED_NOTE).write_text(reason + "\n", encoding="utf-8")
        raise NodeRevoked.because(reason)
    await trio.sleep_forever()


async def interruptible(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work``; Ctrl-C (SIGINT) cancels it and raises KeyboardInterrupt (exit 130).

    trio raises KeyboardInterrupt wherever the main task happens to be, and a library that
    catches too much (py-libp2p's dialer does) turned it into a failed dial; here it is a
    cancellation, and the interrupt is raised once everything has unwound."""
    interrupted = False
    result: list[T] = []
    try:
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    nonlocal interrupted
                    async for _ in signals:
                        interrupted = True
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(watch)
                result.append(await work())
                nursery.cancel_scope.cancel()
    except BaseException:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    if interrupted or not result:
        raise KeyboardInterrupt
    return result[0]


def down_answer(root: Path) -> dict[str, Any]:
    """The control command ``down``: stop the daemon of ``root`` (see :func:`request_down`)."""
    return {"stopping": request_down(root), "pid": os.getpid()}
