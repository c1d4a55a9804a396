"""Fixtures for the Babel codec tests: the golden captures of babeld 1.12.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.babel.pcap import Datagram, read_babel_datagrams

VECTORS = Path(__file__).parent / "vectors"
CAPTURES = sorted(VECTORS.glob("*.pcap"))


def golden(name: str) -> list[Datagram]:
    """The Babel datagrams of one capture."""
    return list(read_babel_datagrams(VECTORS / name))


@pytest.fixture(scope="session")
def all_datagrams() -> list[Datagram]:
    """Every Babel datagram of every capture."""
    return [datagram for path in CAPTURES for datagram in read_babel_datagrams(path)]
