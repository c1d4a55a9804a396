"""How ``meshd status`` writes a while (its ``isolated`` line)."""

from __future__ import annotations

import pytest

from meshd.cli.asking import _span


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "0 s"),
        (42.9, "42 s"),
        (119, "119 s"),
        (120, "2 min"),
        (3599, "59 min"),
        (3600, "1 h 0 min"),
        (3 * 3600 + 12 * 60 + 5, "3 h 12 min"),
        (5 * 86400 + 2 * 3600 + 59, "5 d 2 h"),
        (400 * 86400, "400 d 0 h"),
    ],
)
def test_a_while_is_written_as_a_person_reads_it(seconds: float, text: str) -> None:
    assert _span(seconds) == text
