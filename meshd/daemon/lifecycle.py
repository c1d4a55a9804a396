"""How a running daemon is asked to stop, other than by a signal.

``meshd down`` sends the control command ``down``; its handler calls :func:`request_down`
for the daemon's state dir, and :func:`stop_on_down`, started beside the daemon by
meshd.daemon.launch.run_until_signalled, ends the daemon's nursery as SIGTERM would: the
gossip host closes, the interface goes, the state dir's lock is released last (``meshd down``
waits for that). A daemon run some other way (a test's nursery) has no waiter, and ``down``
says so.

:func:`stop_when_revoked` ends the daemon when this node's own membership is revoked: it
raises :class:`meshd.errors.NodeRevoked`, whose line and exit status the command line shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import trio

from meshd.errors import KeyHandedOver, NodeRevoked
from meshd.membership import MemberState

log = logging.getLogger(__name__)

T = TypeVar("T")

REPLY_GRACE: Final = 0.2
"""Seconds between a ``down`` request and the shutdown, for its answer to leave."""
REVOKED_POLL: Final = 1.0
REVOKED_NOTE: Final = "revoked"
"""The file in the state dir that says why a revoked node's daemon stopped."""

_waiters: dict[Path, trio.Event] = {}
# Not stopped as revoked: the node left (its own leave stops it) or handed its key over
# (`meshd rotate node` stops it and it starts again under the new key).
_NOT_REVOKED: Final = ("left", "handed-over")


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


def own_revocation(state: Any) -> Callable[[], str | None]:
    """For a NodeState: this node's revocation's reason ("" if it gave none), None while the
    node stands. Revoked means no credential of ours stands (our key, or the invite or admin
    key our credentials depend on, is revoked)."""
    membership, key = state.membership, state.key

    def revocation() -> str | None:
        me = membership.member(key, int(time.time()))
        if me is None or me.state is not MemberState.REVOKED or me.reason in _NOT_REVOKED:
            return None
        found = membership.revocation_of(key)
        return "" if found is None else found.reason

    return revocation


def own_handover(state: Any) -> Callable[[], bool]:
    """For a NodeState: whether this node's key was handed over to a new one (`meshd rotate
    node`): the daemon must start again under the new key."""
    membership, key = state.membership, state.key

    def handed_over() -> bool:
        me = membership.member(key, int(time.time()))
        return me is not None and me.state is MemberState.REVOKED and me.reason == "handed-over"

    return handed_over


async def stop_when_revoked(
    revocation: Callable[[], str | None],
    root: Path,
    handed_over: Callable[[], bool] | None = None,
) -> None:
    """Raise NodeRevoked as soon as ``revocation()`` gives this node's revocation's text
    (None while the node stands), checked every ``REVOKED_POLL`` seconds. The reason is left
    in ``root``/``revoked`` first, for ``meshd status`` once the daemon is gone. Raise
    KeyHandedOver (exit 75: start again) once ``handed_over()`` says our key was handed
    over."""
    while True:
        if handed_over is not None and handed_over():
            log.warning("this node's key was handed over to a new key: stopping to start again")
            raise KeyHandedOver.now()
        reason = revocation()
        if reason is not None:
            log.error("this node is revoked%s: stopping", f" ({reason})" if reason else "")
            with contextlib.suppress(OSError):
                (root / REVOKED_NOTE).write_text(reason + "\n", encoding="utf-8")
            raise NodeRevoked.because(reason)
        await trio.sleep(REVOKED_POLL)


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
