"""``meshd demo``: a 5-node WireGuard mesh in network namespaces (see meshd/lab/demo.py)."""

from __future__ import annotations

import typer

from meshd.cli.app import app


@app.command()
def demo() -> None:
    """Build a 5-node mesh in network namespaces, ping across it, revoke a node (needs root)."""
    from meshd.lab.demo import main

    status = main()
    if status:
        raise typer.Exit(status)
