"""``meshd rotate``: replace this node's keys without leaving the network."""

from __future__ import annotations

from typing import Any

import typer

from meshd.cli.app import Json, StateDir, app
from meshd.cli.output import b64, emit_fields, emit_json
from meshd.control.client import ask
from meshd.control.commands import (
    PublishAnswer,
    PublishRequest,
    RotateWgAnswer,
    RotateWgRequest,
    StatusAnswer,
    StatusRequest,
)
from meshd.control.typed_json import to_json
from meshd.errors import ControlError, DaemonNotRunning, UsageError
from meshd.node.layout import Paths, resolve

rotate_app = typer.Typer(help="Replace this node's keys.", no_args_is_help=True)
app.add_typer(rotate_app, name="rotate")


@rotate_app.command("wg")
def rotate_wg(state_dir: StateDir = None, json: Json = False) -> None:
    """Replace this node's WireGuard key; every member switches to the new one.

    The new private key is written to wg.key (0600) first; then a rotation signed by the node
    key is stored and flooded. With a daemon running, it switches the interface at once;
    otherwise the next `meshd up` starts with the new key and peers learn it by sync.
    """
    paths = Paths(resolve(state_dir))
    answer: dict[str, Any]
    try:
        answer = to_json(ask(paths.socket, RotateWgRequest(), RotateWgAnswer, timeout=15.0))
        answer["where"] = "stored, flooded and programmed by the running daemon"
    except DaemonNotRunning:
        answer = _offline(paths)
    if json:
        emit_json(answer)
    else:
        emit_fields(answer)


def _offline(paths: Paths) -> dict[str, Any]:
    from meshd.daemon.rekey import view
    from meshd.node.rekey import rotate_wg_key
    from meshd.node.statedir import NodeDir, now

    at = now()
    node = NodeDir.open(paths.root)
    try:
        state = node.membership(at)
        if not state.grants(node.node_key.public):
            raise UsageError(
                "this node is not a standing member: it has no WireGuard key in the network "
                "to rotate",
                hint="check `meshd status`",
            )
        _, rotation = rotate_wg_key(node, state, at)
        node.store.apply([state.ingest(rotation, at)])
    finally:
        node.close()
    answer = view(rotation)
    answer["where"] = "stored; the next `meshd up` uses the new key and floods the rotation"
    return answer


@rotate_app.command("node")
def rotate_node(state_dir: StateDir = None, json: Json = False) -> None:
    """Replace this node's node key (its identity and libp2p peer id).

    The old key signs a hand-over to the new one; the member keeps its name, overlay address,
    grants and remaining validity, and the old key stands no more. A running daemon floods
    the hand-over and stops with exit status 75 (systemd's Restart=on-failure starts it again
    under the new key; in a terminal, run `meshd up` again).
    """
    import os

    from meshd.cli.stopping import wait_stopped
    from meshd.node.rekey import NEXT_NODE_KEY
    from meshd.node.statedir import NodeDir, now
    from meshd.records import (
        MAX_SPONSORED,
        Admission,
        Certificate,
        Handover,
        decode_record_untrusted,
        make_handover,
    )
    from meshd.trust.keyfiles import write_secret
    from meshd.trust.keys import SigningKey, fingerprint

    paths = Paths(resolve(state_dir))
    try:
        ask(paths.socket, StatusRequest(), StatusAnswer)
        running = True
    except DaemonNotRunning:
        running = False
    at = now()
    node = NodeDir.open(paths.root)
    try:
        state = node.membership(at)
        old = node.node_key
        raw = state.credential_record(old.public)
        member = state.member(old.public, at)
        if raw is None or member is None:
            raise UsageError(
                "this node is not a standing member: it has no membership to hand over",
                hint="check `meshd status`",
            )
        sponsored = state.sponsored_by(old.public)
        if len(sponsored) > MAX_SPONSORED:
            raise UsageError(
                f"this node countersigned {len(sponsored)} admissions, more than one hand-over "
                f"lists ({MAX_SPONSORED})",
                hint="ask an admin to revoke this key (listing them) and join again",
            )
        pending = paths.root / NEXT_NODE_KEY
        if pending.exists():
            raise UsageError(
                f"{pending} exists: a node key rotation was cut short",
                hint="run `meshd up` once (it finishes it), or remove the file",
            )
        new = SigningKey.generate()
        write_secret(pending, new.seed)  # the new key is kept before anything is signed
        credential = decode_record_untrusted(raw)
        if not isinstance(credential, Certificate | Admission | Handover):
            raise UsageError("this node's credential cannot be handed over")
        record = make_handover(
            old,
            new,
            network_id=node.anchor.network_id,
            issued_at=at,
            wg_key=member.wg_key,
            credential=credential,
            sponsored=sponsored,
        )
        first = state.first_key(old.public)
        if running:
            try:
                ask(paths.socket, PublishRequest(b64(record.raw)), PublishAnswer, timeout=10.0)
            except ControlError as exc:
                # The daemon stops as soon as it holds the hand-over, which can be before its
                # answer leaves (it has stored it: its disk sync runs on the way out).
                if "closed the connection without answering" not in str(exc):
                    raise
            where = (
                "flooded by the daemon, which stopped (exit 75) to start again under the new "
                "key: systemd restarts it; in a terminal, run `meshd up` again"
            )
        else:
            node.store.apply([state.ingest(record, at)])
            where = "stored; `meshd up` runs under the new key and floods it by sync"
        node.store.set_meta("first_key", first)
        if running:
            # The daemon stops by itself once it holds the hand-over (KeyHandedOver, exit 75);
            # the new key goes in place after it has let the state dir go.
            wait_stopped(paths.root)
        os.replace(pending, paths.node_key)
    finally:
        node.close()
    answer = {
        "old_node_id": fingerprint(old.public),
        "node_id": fingerprint(new.public),
        "overlay_ip": str(member.overlay),
        "where": where,
    }
    if json:
        emit_json(answer)
    else:
        emit_fields(answer)
