"""``meshd rotate``: replace this node's keys without leaving the network."""

from __future__ import annotations

from typing import Any

import typer

from meshd.cli.app import Json, StateDir, app
from meshd.cli.output import emit_fields, emit_json
from meshd.control.client import request
from meshd.errors import DaemonNotRunning, UsageError
from meshd.layout import Paths, resolve

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
    try:
        answer: dict[str, Any] = request(paths.socket, "rotate-wg", {}, timeout=15.0)
        answer["where"] = "stored, flooded and programmed by the running daemon"
    except DaemonNotRunning:
        answer = _offline(paths)
    if json:
        emit_json(answer)
    else:
        emit_fields(answer)


def _offline(paths: Paths) -> dict[str, Any]:
    from meshd.daemon.rekey import view
    from meshd.rekey import rotate_wg_key
    from meshd.statedir import NodeDir, now

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
