"""What ``meshd netcheck`` and the path column of ``meshd peers`` print, from typed answers."""

from __future__ import annotations

from meshd.cli.asking import _path
from meshd.cli.netcheck import describe
from meshd.control.commands import NetcheckAnswer, PeersAnswer, ReachRow, SeenRow
from meshd.control.typed_json import decode_answer
from tests.control.test_commands import ROW


def test_netcheck_fields_say_nat_reflexive_endpoints_and_who_reaches_us() -> None:
    answer = NetcheckAnswer(
        listen_port=51820,
        local=("192.168.1.2:51820",),
        observing=True,
        seen=(SeenRow("203.0.113.1:51820", 3, False), SeenRow("192.168.1.2:51820", 1, True)),
        reflexive=("203.0.113.1:51820",),
        nat="cone",
        nat_why="3 members see one mapping",
        behind_nat=True,
        reachable_from=(ReachRow("h1", "n" * 26, "198.51.100.1:51820", 1.0),),
        members=4,
    )
    assert describe(answer) == {
        "nat": "cone (3 members see one mapping)",
        "behind_nat": "yes",
        "reflexive": "203.0.113.1:51820",
        "seen_at": "203.0.113.1:51820 by 3, 192.168.1.2:51820 by 1 (own address)",
        "local": "192.168.1.2:51820",
        "listen_port": "51820",
        "reachable": "directly by 1 of 4 members",
    }
    unknown = describe(NetcheckAnswer(None, (), False, (), (), "unknown", "not yet", None, (), 0))
    assert unknown["behind_nat"] == "unknown"
    assert unknown["seen_at"] == unknown["listen_port"] == "-"


def test_the_path_column() -> None:
    def path(**extra: object) -> str:
        return _path(decode_answer(PeersAnswer, [ROW | extra]).rows[0])

    assert path(path="direct", path_endpoint="203.0.113.7:40000") == "direct 203.0.113.7:40000"
    assert path(path="relay", path_via="h1") == "relay via h1"
    assert path(path="none") == "none"
    assert path(path="none", path_state="trying") == "none, trying"
    assert path(path="relay", path_via="h1", path_state="trying") == "relay via h1, trying"
    assert path(path="direct", path_endpoint="[2001:db8::1]:51820", path_state="trying") == (
        "direct [2001:db8::1]:51820"
    )
    assert path() == "-"  # this node, or a daemon that does not say
