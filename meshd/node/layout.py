"""Where a node keeps things: the state dir and its file names (no I/O, light to import).

The CLI commands that only ask a running daemon import this, not meshd.node.statedir, so they
stay instant.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

DEFAULT_STATE_DIR = Path("/var/lib/meshd")
STORE_FILES = ("meshd.db", "meshd.db-wal", "meshd.db-shm")  # the store and SQLite's WAL files
STATE_DIR_ENV = "MESHD_STATE_DIR"


def resolve(state_dir: Path | None) -> Path:
    if state_dir is not None:
        return state_dir
    env = os.environ.get(STATE_DIR_ENV)
    return Path(env) if env else DEFAULT_STATE_DIR


class Paths(NamedTuple):
    """The files of the state dir at ``root`` (a NamedTuple: no dataclasses import here)."""

    root: Path

    @property
    def node_key(self) -> Path:
        return self.root / "node.key"

    @property
    def wg_key(self) -> Path:
        return self.root / "wg.key"

    @property
    def root_key(self) -> Path:
        return self.root / "root.key"

    @property
    def admin_key(self) -> Path:
        return self.root / "admin.key"

    @property
    def admin_cert(self) -> Path:
        return self.root / "admin.cert"

    @property
    def db(self) -> Path:
        return self.root / "meshd.db"

    @property
    def socket(self) -> Path:
        return self.root / "meshd.sock"
