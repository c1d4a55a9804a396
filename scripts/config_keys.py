"""Write the table of config keys into docs/config.md (between its ``keys`` markers).

    .venv/bin/python scripts/config_keys.py

The table is what ``meshd config keys --markdown`` prints, from the options of ``meshd up``
and ``meshd join``; tests/cli/test_configfile.py fails while the docs hold another one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meshd.cli.configfile.keys import keys  # noqa: E402
from meshd.cli.configfile.presenting import markdown_table  # noqa: E402

MARKERS = re.compile(r"(<!-- keys: begin[^\n]*-->\n)(.*?)(<!-- keys: end -->)", re.S)


def main() -> int:
    docs = ROOT / "docs" / "config.md"
    text = docs.read_text()
    table = markdown_table(keys())
    updated = MARKERS.sub(lambda m: m.group(1) + table + m.group(3), text)
    if updated == text:
        print(f"{docs.relative_to(ROOT)}: already up to date")
        return 0
    docs.write_text(updated)
    print(f"{docs.relative_to(ROOT)}: table of {len(keys())} keys written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
