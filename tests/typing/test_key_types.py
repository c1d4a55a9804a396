"""mypy tells node keys, WireGuard keys and record ids apart (NodeKey, WgKey, RecordId).

All three are 32 or 16 raw bytes; one passed for another would type-check as plain bytes and
fail at run time, far from the mistake. The snippets below go through mypy (the project's
config: strict) with the real types of meshd.records and meshd.membership: the right keys
pass, and each swap is an error on its own line.
"""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
from meshd.membership import Member
from meshd.records import Announcement, RecordId, WgRotation, record_id
from meshd.trust.keys import NodeKey, WgKey


def by_node(key: NodeKey) -> None: ...
def by_record(rid: RecordId) -> None: ...
"""

RIGHT = """
def right(member: Member, ann: Announcement, rot: WgRotation) -> None:
    by_node(member.node_key)
    by_node(ann.node_key)
    by_node(rot.node_key)
    by_record(record_id(ann.raw))
    Announcement(ann.network_id, member.node_key, 1, 0, (), (), (), b"")
    bytes_too: bytes = member.wg_key  # each is still bytes where bytes will do
"""

SWAPS = {
    "a WireGuard key as a node key": "by_node(member.wg_key)",
    "a record id as a node key": "by_node(record_id(ann.raw))",
    "plain bytes as a node key": 'by_node(b"k" * 32)',
    "a node key as a record id": "by_record(member.node_key)",
    "a rotation's new key as its node key": "by_node(rot.wg_key)",
    "a WireGuard key in an announcement": (
        'Announcement(ann.network_id, member.wg_key, 1, 0, (), (), (), b"")'
    ),
}


def _mypy(source: str, tmp_path: Path) -> tuple[str, int]:
    path = tmp_path / "snippet.py"
    path.write_text(source)
    out, err, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--no-error-summary", str(path)]
    )
    return out + err, status


def test_the_right_keys_type_check(tmp_path: Path) -> None:
    out, status = _mypy(PRELUDE + RIGHT, tmp_path)
    assert status == 0, out


def test_each_swap_is_a_type_error(tmp_path: Path) -> None:
    lines = [
        f"def swap_{i}(member: Member, ann: Announcement, rot: WgRotation) -> None:\n    {code}\n"
        for i, code in enumerate(SWAPS.values())
    ]
    source = PRELUDE + "\n" + "\n".join(lines)
    out, status = _mypy(source, tmp_path)
    assert status == 1, out
    errors = [line for line in out.splitlines() if ": error:" in line]
    flagged = {int(line.split(":")[1]) for line in errors}
    for what, code in SWAPS.items():
        line_no = source.splitlines().index(f"    {code}") + 1
        assert line_no in flagged, f"mypy let {what} through: {code}\n{out}"
    assert len(flagged) == len(SWAPS), out
