"""One read of the WireGuard device for the callers that want one at the same moment.

The reconcile round (:mod:`meshd.daemon.wireguard`), the punching step
(:mod:`meshd.daemon.punching`), ``meshd peers``, ``meshd netcheck`` and a metrics scrape each
read the whole device: at 10,000 peers ~0.06 s of Python and wireguard-go's answer each
time (``meshd status``, which shows two numbers of it, takes them from the last read while
nothing was written since: :meth:`SharedReads.counted`). They often want it at the same
moment: a new membership snapshot wakes the round at once and the step within its next look
(``STEP``, 1 s). The daemon's backend is wrapped in :class:`SharedReads` (by
:func:`meshd.daemon.wireguard_open.open_mesh`): a read begun at most ``SHARED_WITHIN``
before a caller asks, with nothing written to the device since it began, is handed to that
caller (waited for, if still in flight) instead of a new one. Its writes (``set``,
``rekey``) end every read begun before them, so no caller is handed a read from before a
change of ours: the round that a step's kicks ask for reads the device anew. A read that
failed (or was cancelled) is handed to no one: each caller waiting for it reads again; nor
is one that no caller holds any more (a :class:`~meshd.wg.model.DeviceState` of 10,000
peers is ~0.7 MB: kept, it would stay from one read to the next, for nothing). A read
handed on cost its caller nothing, but the next one costs as much as ever: what paces
the periodic reads (:mod:`meshd.daemon.cost_pace`) is the cost of the last read made
(:func:`read_cost`).

:func:`may_share` is the rule, pure; :class:`SharedReads` the thin shell that keeps the last
read and counts the writes.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence

import trio

from meshd.trust.keys import WgKey
from meshd.wg.backend import Backend, ThreadedSet
from meshd.wg.model import DeviceState, IPNetwork, Operation, PeerConfig

#: A read begun this long before at most is handed on: as if its caller had come that much
#: sooner (the punching step looks every second while anything moves).
SHARED_WITHIN = 1.0


def may_share(started: float, writes_then: int, now: float, writes_now: int, fresh: float) -> bool:
    """Whether a read begun at ``started`` (with ``writes_then`` writes counted) may serve a
    caller asking at ``now`` (``writes_now`` counted) that takes a read begun ``fresh``
    seconds before at most."""
    return writes_then == writes_now and now - fresh <= started <= now


class _Read:
    __slots__ = ("done", "listen_port", "peers", "started", "state", "writes")

    def __init__(self, started: float, writes: int) -> None:
        self.started = started
        self.writes = writes
        # What it counted, once read (kept: two numbers, for meshd status).
        self.peers: int | None = None
        self.listen_port: int | None = None
        # Once read, the state while its callers hold it (not kept for the next caller
        # alone: at 10,000 peers ~0.7 MB, from one read to the next).
        self.state: weakref.ref[DeviceState] | None = None
        self.done = trio.Event()

    def held(self) -> DeviceState | None:
        """The state read, if someone still holds it."""
        return self.state() if self.state is not None else None


class SharedReads:
    """A :class:`~meshd.wg.backend.Backend` whose reads are shared (see the module); every
    other call is the wrapped backend's."""

    def __init__(self, backend: Backend, fresh: float = SHARED_WITHIN) -> None:
        self.backend = backend
        self.fresh = fresh
        self._writes = 0
        self._last: _Read | None = None
        self._begun = trio.Event()  # set when the next read of the device begins
        self.cost = 0.0  # seconds the last read of the device took (not one handed on)
        self.reads = 0  # reads of the device made...
        self.shared = 0  # ...and handed on besides

    @property
    def ifname(self) -> str:
        return self.backend.ifname

    async def get(self) -> DeviceState:
        """The device as read at most ``fresh`` seconds before now, with nothing written
        since. Raises what the backend raises."""
        last = self._last
        now = trio.current_time()
        if last is not None and may_share(last.started, last.writes, now, self._writes, self.fresh):
            await last.done.wait()
            if (state := last.held()) is not None:
                self.shared += 1
                return state
            now = trio.current_time()  # it failed, or no one holds it now: read anew
        read = _Read(now, self._writes)
        self._last = read
        self._begun.set()
        self._begun = trio.Event()
        try:
            state = await self.backend.get()
            read.state = weakref.ref(state)
            read.peers, read.listen_port = len(state.peers), state.listen_port
        finally:
            read.done.set()
            if read.state is None and self._last is read:
                self._last = None
        self.reads += 1
        self.cost = trio.current_time() - now
        return state

    def counted(self, within: float) -> tuple[int, int | None] | None:
        """How many peers the last read found, and the listen port, if it ended well,
        began at most ``within`` seconds ago and nothing was written since (so the device
        holds what it read, bar a change made by hand); else None. ``meshd status`` shows
        these rather than read 10,000 peers for two numbers."""
        last = self._last
        if last is None or last.peers is None or last.writes != self._writes:
            return None
        if trio.current_time() - last.started > within:
            return None
        return last.peers, last.listen_port

    def would_share(self) -> bool:
        """Whether a ``get`` now would be handed a read begun before."""
        last, now = self._last, trio.current_time()
        return (
            last is not None
            and (not last.done.is_set() or last.held() is not None)
            and may_share(last.started, last.writes, now, self._writes, self.fresh)
        )

    async def next_read(self) -> None:
        """Until the next read of the device begins (a ``get`` then shares it)."""
        await self._begun.wait()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Around a write (this class's own, or one sent from a worker thread): no read begun
        before its end is handed on after it."""
        self._writes += 1
        try:
            yield
        finally:
            self._writes += 1

    async def set(self, operations: Sequence[Operation]) -> None:
        with self.writing():
            await self.backend.set(operations)

    async def rekey(self, private_key: bytes) -> None:
        with self.writing():
            await self.backend.rekey(private_key)

    def expect(self, peers: Mapping[WgKey, PeerConfig]) -> None:
        self.backend.expect(peers)

    async def replace_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        await self.backend.replace_routes(prefixes)

    async def delete_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        await self.backend.delete_routes(prefixes)

    async def aclose(self) -> None:
        await self.backend.aclose()


def threaded_sets(backend: Backend) -> ThreadedSet | None:
    """``backend`` (itself, or the one a :class:`SharedReads` wraps) if it can set from a
    worker thread (the UAPI backend, and the in-memory one); None otherwise."""
    inner = backend.backend if isinstance(backend, SharedReads) else backend
    return inner if isinstance(inner, ThreadedSet) else None


def writes_counted(backend: Backend) -> contextlib.AbstractContextManager[None]:
    """Around a write sent from a worker thread: counted by ``backend`` if it shares its
    reads (:meth:`SharedReads.writing`)."""
    return backend.writing() if isinstance(backend, SharedReads) else contextlib.nullcontext()


def read_cost(backend: Backend, took: float) -> float:
    """What a read of ``backend`` costs, for the pacing of periodic reads: the last read it
    made, if it shares its reads (one handed on took ``took``, next to nothing); else
    ``took``."""
    return backend.cost if isinstance(backend, SharedReads) else took
