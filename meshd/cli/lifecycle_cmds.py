"""``meshd renew`` and ``meshd leave``: a membership's length, and its end by the member.

``renew`` signs renewals with the root or an admin key holding the invite capability (offline,
like ``revoke``: stored here, or handed to the running daemon, which stores and floods them).
``leave`` signs this node's own departure with its node key and hands it to the running
daemon, which floods it, then stops and removes its WireGuard interface; the state dir is
then marked as left (its node and WireGuard keys deleted), or removed with ``--purge``.
"""

from __future__ import annotations

import base64
import shutil
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshd.cli.app import Json, StateDir, app
from meshd.cli.commands import RootKey
from meshd.cli.output import b64, emit_json, note, when
from meshd.cli.parse import duration
from meshd.cli.stopping import lock_held
from meshd.control.client import ask
from meshd.control.commands import (
    PeersAnswer,
    PeersRequest,
    PublishAnswer,
    PublishRequest,
    StatusAnswer,
    StatusRequest,
)
from meshd.control.typed_json import to_json
from meshd.errors import CommandLineError, DaemonNotRunning, MeshdError, UsageError
from meshd.node.layout import Paths, resolve

if TYPE_CHECKING:
    from meshd.node.statedir import NodeDir

LEFT_MARK = "left"
"""The file that marks a state dir whose node left its network (it holds the leave record)."""
STOP_WAIT = 30.0


@app.command()
def renew(
    node_ref: Annotated[
        str | None,
        typer.Argument(
            metavar="NODE", help="A member's name, node id (or a prefix of it) or WireGuard key."
        ),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Renew every member not excluded.")] = False,
    period: Annotated[
        str, typer.Option("--for", help="How long from now the membership lasts.")
    ] = "365d",
    root_key: RootKey = None,
    state_dir: StateDir = None,
    json: Json = False,
) -> None:
    """Extend members' standing to a new end date, without a new enrollment."""
    from meshd.daemon.renew_policy import Planned, sign_renewals
    from meshd.membership import MemberState
    from meshd.node.statedir import NodeDir, now
    from meshd.records import Cap

    if (node_ref is None) == (not every):
        raise CommandLineError(
            "name one member to renew, or --all", hint="meshd renew NODE | --all"
        )
    length = duration(period, option="--for")
    at = now()
    node = NodeDir.open(resolve(state_dir))
    try:
        issuer = node.issuer(root_key)
        issuer.require(Cap.INVITE)
        rows = _daemon_peers(node)
        state = None
        if rows is None:
            state = node.membership(at)
            rows = [_row(m, state.credentials_end(m.node_key)) for m in state.members(at)]
        members = [r for r in rows if r["state"] != MemberState.REVOKED.value]
        if node_ref is not None:
            row = _find(rows, node_ref)
            if row["state"] == MemberState.REVOKED.value:
                why = "left the network" if row.get("reason") == "left" else "is revoked"
                raise UsageError(
                    f"{row['name'] or row['node_id']} {why}: it cannot be renewed",
                    hint="a member that is excluded joins again with a new invite",
                )
            members = [row]
        target = at + length
        if issuer.certificate is not None and issuer.certificate.not_after < target:
            target = issuer.certificate.not_after
            note(f"renewals end with this admin's certificate, on {when(target)}")
        planned = [
            Planned(base64.b64decode(r["node_key"]), r["name"] or r["node_id"], target)
            for r in members
            if int(r["credentials_end"]) < target
        ]
        kept = [r["name"] or r["node_id"] for r in members if int(r["credentials_end"]) >= target]
        renewals = sign_renewals(issuer, node.anchor.network_id, planned, at)
        if state is None:
            for renewal in renewals:
                publish = PublishRequest(b64(renewal.raw))
                ask(node.paths.socket, publish, PublishAnswer, timeout=10.0)
            where = "stored and flooded by the running daemon"
            ends = {r["node_key"]: int(r["credentials_end"]) for r in _daemon_peers(node) or []}
        else:
            node.store.apply([state.ingest(renewal, at) for renewal in renewals])
            where = "stored; the daemon floods it to every member when it runs (`meshd up`)"
            ends = {b64(p.node_key): state.credentials_end(p.node_key) for p in planned}
    finally:
        node.close()
    # An admin's renewal applies only to members whose grants lie within the admin's.
    refused = [p for p in planned if ends.get(b64(p.node_key), 0) < target]
    planned = [p for p in planned if p not in refused]
    info: dict[str, Any] = {
        "renewed": [{"name": p.name, "not_after": p.not_after} for p in planned],
        "unchanged": kept,
        "outside_grants": [p.name for p in refused],
        "until": target,
    }
    if json:
        emit_json(info)
        return
    if planned:
        print(f"renewed {', '.join(p.name for p in planned)} until {when(target)}")
    else:
        print("nothing to renew")
    for name in kept:
        note(f"{name} already lasts until {when(target)} or later")
    if planned:
        note(where)
    if refused:
        raise UsageError(
            f"not renewed: {', '.join(p.name for p in refused)}: their grants are outside "
            "this admin's",
            hint="renew them with the root key or an admin whose prefixes cover them",
        )


def _find(rows: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    """One member by name, WireGuard key or node id (or its first characters), as
    ``meshd revoke`` finds one; ambiguity is an error."""
    found = (
        [r for r in rows if r["name"] == ref]
        or [r for r in rows if r["wg_public_key"] == ref]
        or [r for r in rows if len(ref) >= 4 and r["node_id"].startswith(ref.lower())]
    )
    unique = {r["node_id"]: r for r in found}
    if not unique:
        raise UsageError(
            f"no member matches {ref!r}",
            hint="give a name, a node id (or its first characters) or a WireGuard key",
        )
    if len(unique) > 1:
        names = ", ".join(f"{r['name']} ({r['node_id'][:10]})" for r in unique.values())
        raise UsageError(
            f"{ref!r} matches {len(unique)} members: {names}", hint="give more of the node id"
        )
    return next(iter(unique.values()))


def _row(member: Any, credentials_end: int) -> dict[str, Any]:
    """A member as the daemon's ``peers`` shows it (the fields ``renew`` uses)."""
    return {
        "name": member.name,
        "node_id": member.node_id,
        "node_key": b64(member.node_key),
        "wg_public_key": b64(member.wg_key),
        "state": member.state.value,
        "reason": member.reason,
        "credentials_end": credentials_end,
    }


def _daemon_peers(node: NodeDir) -> list[dict[str, Any]] | None:
    try:
        answer = ask(node.paths.socket, PeersRequest(), PeersAnswer)
    except DaemonNotRunning:
        return None
    rows: list[dict[str, Any]] = [to_json(row) for row in answer.rows]
    return rows


@app.command()
def leave(
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record.")] = "",
    purge: Annotated[
        bool, typer.Option("--purge", help="Remove the state dir once the daemon has stopped.")
    ] = False,
    state_dir: StateDir = None,
    json: Json = False,
) -> None:
    """Leave the network for good: sign this node's departure, flood it, stop the daemon."""
    from meshd.membership import MemberState
    from meshd.node.statedir import NodeDir, now
    from meshd.records import make_leave, record_id
    from meshd.trust.keys import fingerprint

    if len(reason.encode()) > 256 or not reason.isprintable():
        raise CommandLineError("--reason must be printable and at most 256 bytes")
    root = resolve(state_dir)
    paths = Paths(root)
    if purge:
        for keep in (paths.root_key, paths.admin_key):
            if keep.exists():
                raise UsageError(
                    f"{root} holds {keep.name}, which --purge would delete",
                    hint=f"move {keep} somewhere safe first, or leave without --purge",
                )
    node = NodeDir.open(root)
    try:
        try:
            me = ask(paths.socket, StatusRequest(), StatusAnswer)
        except DaemonNotRunning:
            raise DaemonNotRunning(
                f"no daemon runs for {root}: the departure would reach no one",
                hint="start it (`meshd up`) and run `meshd leave` again, or have an admin "
                "`meshd revoke` this node",
            ) from None
        mine = [r for r in _daemon_peers(node) or [] if r.get("node_id") == me.node_id]
        if mine and mine[0].get("state") == MemberState.REVOKED.value:
            raise UsageError("this node is no longer a member", hint="nothing to leave")
        if not me.connected:
            raise UsageError(
                "no member is connected to this node: the departure would reach no one",
                hint="wait until `meshd status` shows connected members, or have an admin "
                "`meshd revoke` this node",
            )
        record = make_leave(
            node.node_key, network_id=node.anchor.network_id, issued_at=now(), reason=reason
        )
        publish = PublishRequest(b64(record.raw))
        answer = ask(paths.socket, publish, PublishAnswer, timeout=10.0)
        network = node.anchor.network.name
        node_id = fingerprint(node.node_key.public)
        name = node.name
    finally:
        node.close()
    stopped = _wait_for_stop(paths)
    purged = purge and stopped  # never remove files a daemon still has open
    if purged:
        shutil.rmtree(root)
    else:
        _mark_left(paths, record.raw)
    info = {
        "network": network,
        "name": name,
        "node_id": node_id,
        "leave_id": record_id(record.raw).hex(),
        "new": answer.new,
        "daemon_stopped": stopped,
        "state_dir": "removed" if purged else "marked left",
    }
    if json:
        emit_json(info)
        return
    after = "its daemon stopped" if stopped else "its daemon is still stopping"
    kept = "state dir removed" if purged else f"{root} marked as left, its keys deleted"
    if purge and not purged:
        kept += " (not removed while the daemon is stopping: remove it once it has stopped)"
    print(f"left network {network} as {name or node_id} ({node_id[:10]}); {after}; {kept}")


def _wait_for_stop(paths: Paths) -> bool:
    """Wait until the daemon has stopped: it no longer answers, and its lock is free (its
    store closed, its interface gone). Whether it did within STOP_WAIT."""
    deadline = time.monotonic() + STOP_WAIT
    while True:
        try:
            ask(paths.socket, StatusRequest(), StatusAnswer, timeout=2.0)
        except DaemonNotRunning:
            break
        except MeshdError:
            pass  # going down: its socket stops answering mid-way
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    while lock_held(paths.root / "meshd.lock"):  # it still closes its store
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _mark_left(paths: Paths, leave_raw: bytes) -> None:
    """Write the left mark (the leave record), then delete the node and WireGuard keys: the
    identity that left is never used again (the store stays, for `meshd inspect`)."""
    mark = paths.root / LEFT_MARK
    tmp = mark.with_suffix(".tmp")
    tmp.write_bytes(leave_raw)
    tmp.replace(mark)
    for key in (paths.node_key, paths.wg_key):
        key.unlink(missing_ok=True)
