"""``meshd routes``: the running daemon's Babel routes and neighbours.

The command's definition; what it does is in meshd.cli.asking, shared with the quick path.
"""

from __future__ import annotations

from meshd.cli import asking
from meshd.cli.app import Json, StateDir, app


@app.command()
def routes(state_dir: StateDir = None, json: Json = False) -> None:
    """Show the Babel routes (selected first) and neighbours of the running daemon."""
    asking.routes(state_dir, json)
