"""This node's local state: its state dir, the SQLite store, and the key replacements on disk.

* :mod:`meshd.node.layout`: the state dir's file names (no I/O, light: the CLI's quick path).
* :mod:`meshd.node.statedir`: opening, creating and locking the state dir.
* :mod:`meshd.node.permissions`: refusing a state dir or key file others can read or change.
* :mod:`meshd.node.store`: the on-disk store (SQLite, WAL).
* :mod:`meshd.node.rekey`: replacing this node's WireGuard key, crash-safe.

Nothing is imported here, so ``meshd.node.layout`` stays light.
"""
