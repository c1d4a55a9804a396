"""docs/metrics.md lists every metric the endpoint serves, as the catalogue says."""

from __future__ import annotations

import re
from pathlib import Path

from meshd.metrics.collector import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_table_is_the_catalogue() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    rows = re.findall(r"^\| `(meshd_\w+)` \| (\w+) \| ([^|]*) \| (.*) \|$", text, re.M)
    documented = [
        (name, kind, tuple(re.findall(r"`(\w+)`", labels)), meaning)
        for name, kind, labels, meaning in rows
    ]
    assert documented == [(s.name, s.kind, s.labels, s.help) for s in CATALOGUE]
