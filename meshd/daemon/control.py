"""The control service: the daemon's side of ``meshd.sock``, one handler per command.

Requests arrive decoded into their type (:mod:`meshd.control.commands`, decoded by
:mod:`meshd.control.typed_json`: an unknown command or malformed arguments is answered with a
ControlDecodeError); :attr:`Control.handlers` is the one table from request type to handler,
and each handler returns its command's answer type, or raises a MeshdError the client shows.
A :class:`~meshd.control.commands.Change` is answered once what was committed is on disk; a
:class:`~meshd.control.commands.Query` at once.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from meshd.control.commands import (
    ANSWERS,
    Change,
    ConnectAnswer,
    ConnectRequest,
    ConnectResultRow,
    DownAnswer,
    DownRequest,
    InviteBootstrapAnswer,
    InviteBootstrapRequest,
    NetcheckAnswer,
    NetcheckRequest,
    PeerRow,
    PeersAnswer,
    PeersRequest,
    PublishAnswer,
    PublishRequest,
    Request,
    RevokeRequest,
    RotateWgAnswer,
    RotateWgRequest,
    RoutesAnswer,
    RoutesRequest,
    SponsoredAnswer,
    SponsoredRequest,
    StatusAnswer,
    StatusRequest,
    SyncAnswer,
    SyncRequest,
)
from meshd.control.paused import collector_paused
from meshd.control.server import ControlStats
from meshd.control.server import serve as serve_control
from meshd.control.typed_json import decode_answer, decode_request, to_json
from meshd.control.wire import fields
from meshd.daemon import babel_views, revoker, seeing_views, state_views, wireguard_views
from meshd.daemon.lifecycle import down_answer
from meshd.daemon.rekey import rotate_wg
from meshd.daemon.renewer import add_expiry, expiring_view
from meshd.daemon.transport import key_of
from meshd.errors import MeshdError, UsageError
from meshd.membership import Member, Revoked
from meshd.records import decode_record_untrusted, record_id

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from meshd.daemon.service import Daemon
    from meshd.daemon.state import NodeState

Handler = Callable[[Any], Awaitable[Any]]
A = TypeVar("A")
_HEX = frozenset("0123456789abcdefABCDEF")


class Turns:
    """Requests of one slow kind, ``at_once`` at a time; past ``waiting`` waiting, another is
    answered at once that the daemon is busy."""

    def __init__(self, what: str, *, at_once: int, waiting: int) -> None:
        self.what = what
        self.waiting = waiting
        self._limiter = trio.CapacityLimiter(at_once)

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        waiting = self._limiter.statistics().tasks_waiting
        if waiting >= self.waiting:
            raise MeshdError(
                f"the daemon is busy: {waiting} other {self.what} requests are waiting",
                hint="try again in a few seconds",
            )
        async with self._limiter:
            yield


class Control:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.stats = ControlStats()
        self.started = time.monotonic()
        # One view of every member at a time: at 10,000 members each takes ~0.8 s of CPU and
        # ~6 MB; 64 at once missed every deadline, held the event loop 3 s behind, and kept
        # ~0.5 GB (an answer past its deadline waits here, cancelled, at no cost). Dials
        # (`meshd connect`: up to 16 addresses, ~5 s each that does not answer) a few at a
        # time. Past a few waiting, a request of either is answered "busy" at once, so that
        # such requests do not hold the socket's 64 connections (every other command would
        # find them full: 105 of 137 `status` calls were closed unanswered).
        self._views = Turns("views of every member (peers)", at_once=1, waiting=4)
        self._dials = Turns("dials (connect)", at_once=4, waiting=4)
        self.handlers: dict[type[Request], Handler] = {
            StatusRequest: self.status,
            PeersRequest: self.peers,
            RoutesRequest: self.routes,
            InviteBootstrapRequest: self.invite_bootstrap,
            PublishRequest: self.publish,
            ConnectRequest: self.connect,
            SponsoredRequest: self.sponsored,
            SyncRequest: self.sync,
            # meshd revoke NODE: signed, stored and flooded here (meshd/daemon/revoker.py)
            RevokeRequest: partial(revoker.revoke, daemon.state, daemon.flooder.flood),
            DownRequest: self.down,
            RotateWgRequest: self.rotate_wg,
            NetcheckRequest: self.netcheck,
        }

    async def run(self, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        socket = self.daemon.state.node.paths.socket
        await serve_control(socket, self.dispatch, stats=self.stats, task_status=task_status)

    async def dispatch(self, cmd: str, args: dict[str, Any]) -> Any:
        """The JSON answer to one request (the control server's handler)."""
        request = decode_request(cmd, args)
        answer = await self.ask(request, ANSWERS[type(request)])
        with collector_paused():
            return to_json(answer)

    async def ask(self, request: Request, answer: type[A]) -> A:
        """One command's typed answer, asked inside the daemon (:class:`Ask`) or through the
        socket (:meth:`dispatch`): the same handler table either way."""
        result = await self.handlers[type(request)](request)
        if isinstance(request, Change):
            # What it stored (a revocation, a publish) is on disk before the user hears so.
            # A Query answers at once: it stored nothing, and what others committed may wait
            # for its fsync as long as the disk takes (peers and status stay instant).
            await self.daemon.state.disk.synced()
        if not isinstance(result, answer):
            raise TypeError(f"{type(request).__name__} is answered by {type(result).__name__}")
        return result

    async def status(self, request: StatusRequest) -> StatusAnswer:
        d = self.daemon
        view = state_views.status_view(d.state)
        view["listen_addrs"] = d.announcer.listen_addrs()
        view["endpoints"] = list(d.announcer.endpoints)
        view["wireguard"] = await wireguard_views.status_view(d.mesh)
        view["wireguard"]["mtu"] = await wireguard_views.link_mtu(d.mesh)
        view["config"] = d.reloader.view() if d.reloader is not None else None
        if d.relaying is not None:  # --relay: whether we forward for others, and why
            view["wireguard"]["relay"] = d.relaying.view()
        view["peer_id"] = d.host.peer_id
        view["connected"] = len(d.host.connected_peers())
        view["isolated_since"] = d.connections.alone_since
        # What the rejoin dials, as the start and the last SIGHUP set it (no store read).
        dialled = d.connections.policy.rejoin.bootstrap
        view["bootstrap"] = [a for addrs in dialled.values() for a in addrs]
        view["syncs"] = d.antientropy.syncs
        view["budgets"] = d.budgets_view()
        view["uptime"] = round(time.monotonic() - self.started, 1)
        view["tasks"] = trio_task_count()
        view["shed"] = d.shed_view()
        view["expiring"] = expiring_view(d.state)
        return _typed(StatusAnswer, view)

    async def peers(self, request: PeersRequest) -> PeersAnswer:
        async with self._views.turn():
            return await self._peers(request)

    async def _peers(self, request: PeersRequest) -> PeersAnswer:
        d = self.daemon
        connected = {k for p in d.host.connected_peers() if (k := key_of(p))}
        device = await wireguard_views.peer_stats(d.mesh)
        with collector_paused():
            # One view of each member for every column (or of those named alone).
            members = _named(d.state, request.member) if request.member else d.state.members()
        # Each column in turn, letting the event loop run between them: at 10,000 members
        # each takes ~0.1-0.2 s (a scrape of the metrics takes this view too). Each step
        # only builds the rows: the collector waits for its end (meshd.control.paused).
        checkpoint = trio.lowlevel.checkpoint
        await checkpoint()
        with collector_paused():
            rows = state_views.peers_view(d.state, connected, device, members)
        await checkpoint()
        if d.babel is not None:
            with collector_paused():
                for member, row in zip(members, rows, strict=True):
                    row.update(babel_views.peer_route(d.babel, member))
            await checkpoint()
        with collector_paused():
            seeing_views.add_paths(
                d.state, rows, device, time.time(), seeing_views.attempts(d), members
            )
            seeing_views.add_kept_handshakes(rows, members, d.punching.last_handshake)
            add_expiry(rows)
        typed: list[PeerRow] = []
        for start in range(0, len(rows), ROWS_AT_ONCE):
            await checkpoint()
            with collector_paused():
                typed.extend(_typed_rows(rows[start : start + ROWS_AT_ONCE]))
        return PeersAnswer(tuple(typed))

    async def netcheck(self, request: NetcheckRequest) -> NetcheckAnswer:
        return _typed(NetcheckAnswer, await seeing_views.netcheck(self.daemon))

    async def routes(self, request: RoutesRequest) -> RoutesAnswer:
        if self.daemon.babel is None:
            raise UsageError(
                "Babel is not running: it runs on the mesh with a WireGuard backend, and "
                "with the routers of --babel-interface links",
                hint="start with --wg-backend auto, kernel or userspace, or --babel-interface",
            )
        return _typed(RoutesAnswer, babel_views.routes_view(self.daemon.babel))

    async def down(self, request: DownRequest) -> DownAnswer:
        return _typed(DownAnswer, down_answer(self.daemon.state.node.paths.root))

    async def invite_bootstrap(self, request: InviteBootstrapRequest) -> InviteBootstrapAnswer:
        return InviteBootstrapAnswer(tuple(self.daemon.invite_addrs()))

    async def publish(self, request: PublishRequest) -> PublishAnswer:
        try:
            raw = base64.b64decode(request.record.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise UsageError("publish: args.record is not base64") from None
        outcome = self.daemon.state.add_local(decode_record_untrusted(raw))
        if outcome.new:
            await self.daemon.flooder.flood(raw)
        excluded = tuple(
            e.member.name or e.member.node_id for e in outcome.events if isinstance(e, Revoked)
        )
        return PublishAnswer(outcome.new, record_id(raw).hex(), excluded)

    async def connect(self, request: ConnectRequest) -> ConnectAnswer:
        d = self.daemon
        async with self._dials.turn():
            results = await d.host.connect_any(list(request.addrs[:16]), d.mesh.underlay.networks)
        return ConnectAnswer(tuple(ConnectResultRow(r.addr, r.peer_id, r.error) for r in results))

    async def sponsored(self, request: SponsoredRequest) -> SponsoredAnswer:
        # What a revocation of args.target lists (Revocation.sponsored), from the membership
        # held here: `meshd revoke` then need not load and verify the store.
        target = request.target
        key = bytes.fromhex(target) if len(target) == 64 and _HEX.issuperset(target) else b""
        if not key:
            raise UsageError("sponsored needs args.target: a 32-byte key in hex")
        membership = self.daemon.state.membership
        return SponsoredAnswer(
            tuple(rid.hex() for rid in membership.sponsored_by(key)),
            membership.only_legacy_revocations(key),
        )

    async def rotate_wg(self, request: RotateWgRequest) -> RotateWgAnswer:
        d = self.daemon
        return _typed(RotateWgAnswer, await rotate_wg(d.state, d.mesh, d.flooder.flood, d.babel))

    async def sync(self, request: SyncRequest) -> SyncAnswer:
        peers = self.daemon.host.connected_peers()
        for peer in peers:
            self.daemon.antientropy.request(peer)
        return SyncAnswer(len(peers))


ROWS_AT_ONCE = 1000
"""Rows of ``meshd peers`` checked between two turns of the event loop (~4 ms)."""


def _named(state: NodeState, ref: str) -> list[Member]:
    """``meshd peers MEMBER``: the members ``ref`` names, found among the latest snapshot's
    views (made at the last change; else among all members now: one admitted since), each
    then viewed now; not a view of every member (~80 ms at 10,000)."""
    try:
        found = state_views.select_members(state.feed.current.members, ref)
    except UsageError:
        found = []
    now = state.clock()
    fresh = [m for f in found if (m := state.membership.member(f.node_key, now)) is not None]
    return fresh or state_views.select_members(state.members(), ref)


def _typed(cls: type[A], view: dict[str, Any]) -> A:
    """A view the daemon built as a dict, as its answer type: every key must be a field (a
    key added to a view without its field fails here, in the daemon's tests)."""
    unknown = set(view) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise TypeError(f"{cls.__name__} has no field for {sorted(unknown)}")
    return decode_answer(cls, view)


def _typed_rows(views: list[dict[str, Any]]) -> tuple[PeerRow, ...]:
    """Rows of ``meshd peers`` the daemon built as dicts, as PeerRows, checked as
    :func:`_typed` checks an answer: every key a field, every value of its field's type (the
    rows read field by field, :mod:`meshd.control.rows`)."""
    unknown = set().union(*views) - {f.name for f in fields(PeerRow)}
    if unknown:
        raise TypeError(f"PeerRow has no field for {sorted(unknown)}")
    return decode_answer(PeersAnswer, views).rows


def trio_task_count() -> int:
    """Trio tasks alive in this process: the root task and every task in its nursery tree."""
    count = 0
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        if task is None:
            continue
        count += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count
