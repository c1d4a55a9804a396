"""--babel-redistribute: the rule syntax, first match wins, and where the filter applies."""

from __future__ import annotations

import ipaddress

import pytest

from meshd.babel.options import (
    babel_config,
    crosses_allowed,
    parse_redistribute,
    redistribute_allows,
)
from meshd.babel.sources import IPNetwork
from meshd.errors import UsageError

net = ipaddress.ip_network


def test_rules_parse_with_default_and_explicit_lengths() -> None:
    rule = parse_redistribute("10.1.0.0/16 allow")
    assert (rule.prefix, rule.ge, rule.le, rule.allow) == (net("10.1.0.0/16"), 16, 32, True)
    rule = parse_redistribute("fd00::/8  ge 48 le 64   deny")
    assert (rule.ge, rule.le, rule.allow) == (48, 64, False)
    assert parse_redistribute("0.0.0.0/0 le 0 allow").matches(net("0.0.0.0/0"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "allow",
        "10.1.0.0/16",
        "10.1.0.0/16 permit",
        "10.1.0.1/16 allow",  # host bits set
        "10.1.0.0/16 ge allow",
        "10.1.0.0/16 ge 8 allow",  # shorter than the prefix
        "10.1.0.0/16 le 33 allow",
        "10.1.0.0/16 ge 24 le 20 allow",
        "10.1.0.0/16 ge 20 ge 24 allow",
        "10.1.0.0/16 eq 24 allow",
    ],
)
def test_bad_rules_are_one_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_redistribute(text)
    assert "\n" not in caught.value.one_line()


def test_first_match_wins_and_no_match_denies() -> None:
    rules = babel_config(
        redistribute=["10.1.9.0/24 deny", "10.1.0.0/16 le 24 allow", "fd00::/8 ge 64 allow"]
    ).redistribute
    assert not redistribute_allows(rules, net("10.1.9.0/24"))
    assert not redistribute_allows(rules, net("10.1.9.128/25"))  # inside the denied /24
    assert redistribute_allows(rules, net("10.1.2.0/24"))
    assert redistribute_allows(rules, net("10.1.0.0/16"))
    assert not redistribute_allows(rules, net("10.1.2.0/25"))  # longer than le 24
    assert not redistribute_allows(rules, net("10.2.0.0/16"))  # no rule: denied
    assert redistribute_allows(rules, net("fd00:1::/64"))
    assert not redistribute_allows(rules, net("fd00:1::/48"))
    assert not redistribute_allows(rules, net("10.0.0.0/8"))  # covers the rule, not inside it
    assert redistribute_allows((), net("10.2.0.0/16"))  # no rules at all: everything


def test_the_filter_applies_across_the_boundary_in_both_directions_only() -> None:
    rules = babel_config(redistribute=["10.1.0.0/16 allow"]).redistribute
    site, other = net("10.1.5.0/24"), net("10.9.0.0/16")

    def allowed(learned_on: str | None, announced_on: str, route: IPNetwork) -> bool:
        return crosses_allowed(
            rules, mesh="wg0", learned_on=learned_on, announced_on=announced_on, route=route
        )

    # From a site link into the mesh, and from the mesh out to a site link: filtered.
    assert allowed("eth1", "wg0", site)
    assert not allowed("eth1", "wg0", other)
    assert allowed("wg0", "eth1", site)
    assert not allowed("wg0", "eth2", other)
    # Staying on one side, or our own prefixes: not filtered.
    assert allowed("eth1", "eth2", other)
    assert allowed("wg0", "wg0", other)
    assert allowed(None, "eth1", other)
    assert allowed(None, "wg0", other)
    # No mesh: there is no boundary.
    assert crosses_allowed(rules, mesh=None, learned_on="eth1", announced_on="eth2", route=other)
