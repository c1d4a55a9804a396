"""The martian prefixes, babeld's list (``meshd.babel.martians``): what lies inside a
range is martian, what only covers one is not."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from meshd.babel.martians import martian
from tests.babel.test_martian_updates import MARTIANS, ORDINARY


@pytest.mark.parametrize("text", MARTIANS)
def test_martian_ranges(text: str) -> None:
    assert martian(ip_network(text))


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_prefixes_are_no_martians(text: str) -> None:
    assert not martian(ip_network(text))
