"""Fixtures of the daemon's tests (the fakes themselves: tests/daemon/fakes.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshd.node.statedir import NodeDir
from tests.daemon.fakes import found


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeDir]:
    """A founded network's state dir (tmp_path/n), opened, closed after the test."""
    opened = found(tmp_path / "n")
    try:
        yield opened
    finally:
        opened.close()
