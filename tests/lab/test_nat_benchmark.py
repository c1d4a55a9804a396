"""The pure parts of benchmarks/nat.py (benchmarks/nat_layout.py): which pairs of its lab
the NATs let be direct, the share of those that are, and the summary's targets (the
benchmark itself runs by hand, as root)."""

from __future__ import annotations

from benchmarks.nat_layout import (
    LAYOUT,
    NATS,
    Site,
    allowed_pairs,
    can_be_direct,
    pairs,
    share,
    summarise,
)

PUBLIC, CONE, SYMMETRIC = Site("public"), Site("cone", ("a",)), Site("symmetric", ("b",))


def test_which_nats_allow_a_direct_path() -> None:
    assert can_be_direct(PUBLIC, SYMMETRIC)
    assert can_be_direct(PUBLIC, PUBLIC)
    assert can_be_direct(CONE, Site("cone", ("c", "cgn")))
    assert not can_be_direct(CONE, SYMMETRIC)
    assert not can_be_direct(SYMMETRIC, Site("symmetric", ("c",)))
    # One LAN behind one NAT: yes; two homes behind one carrier NAT: no hairpin, no.
    assert can_be_direct(Site("symmetric", ("lan",)), Site("symmetric", ("lan",)))
    assert not can_be_direct(Site("cone", ("h1", "cgn")), Site("cone", ("h2", "cgn")))


def test_the_benchmark_lab_is_eight_hosts_of_every_kind() -> None:
    assert len(LAYOUT) == 8
    assert {s.kind for s in LAYOUT.values()} == {"public", "cone", "symmetric"}
    assert any(len(s.nats) == 2 for s in LAYOUT.values())  # a double NAT
    inner = [s.nats[0] for s in LAYOUT.values() if s.nats]
    assert any(inner.count(n) == 2 for n in inner)  # two hosts behind one NAT
    assert all(n in NATS for s in LAYOUT.values() for n in s.nats)
    assert len(pairs(LAYOUT)) == 28
    # Public with anyone (13), the four cone-type hosts among themselves (6); not the
    # symmetric pair, nor symmetric with cone (9).
    assert len(allowed_pairs(LAYOUT)) == 19
    assert ("h5", "h6") not in allowed_pairs(LAYOUT)


def test_share_counts_allowed_pairs_and_names_the_rest() -> None:
    found = [("h2", "h1"), ("h7", "h8"), ("h5", "h6")]
    result = share(found, LAYOUT)
    assert (result["direct"], result["allowed"]) == (2, 19)
    assert result["share"] == 2 / 19
    assert result["unexpected"] == ["h5-h6"]
    assert "h3-h4" in result["missing"]
    assert share(allowed_pairs(LAYOUT), LAYOUT)["share"] == 1.0


def test_summary_targets_and_missed_rounds() -> None:
    summary = summarise(
        {
            "cone_join": [1.0, 3.0, 1.5],
            "symmetric_relay": [1.0, None, 1.0],
            "direct_share": [1.0, 1.0],
            "public_restart": [None],
        }
    )
    assert summary["cone_join"]["median"] == 1.5
    assert summary["cone_join"]["met"]
    assert summary["symmetric_relay"]["missed"] == 1
    assert not summary["symmetric_relay"]["met"]
    assert summary["direct_share"]["met"]
    assert summary["public_restart"]["median"] is None
    assert not summary["public_restart"]["met"]
    assert not summarise({"direct_share": [1.0, 0.9]})["direct_share"]["met"]
