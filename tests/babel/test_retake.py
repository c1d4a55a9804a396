"""A SIGHUP's new ``--babel-originate`` and ``--babel-redistribute`` on a running gateway
(:meth:`BabelService.reconfigure`, :func:`meshd.daemon.babel_site.retake`).

The gateway G of tests/babel/test_site_rules.py, between the mesh (members M and N) and a
site router on ``eth1``, with the filter taking the overlay and 10/8 both ways. Taken at
once means within a second: before, a route that the new rules no longer let go to the site
stayed at the site router until its hold time ran out (3.5 Update intervals: 14 s here), and
a prefix no longer originated likewise at the members.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from ipaddress import ip_network

import pytest

from meshd.babel.core import BabelCore
from meshd.babel.mac import MacKey
from meshd.babel.numbers import INFINITY
from meshd.babel.options import babel_config
from meshd.babel.sources import IPNetwork
from meshd.daemon.babel import BabelService
from tests.babel.segments import Segments
from tests.babel.test_site_rules import HELLO, M_PREFIX, OVERLAY, RULES, SITE, build, run

OWN_PART = ip_network("10.55.0.128/25")
"""Inside G's grant (10.55.0.0/24)."""
NOT_OURS = ip_network("10.99.0.0/24")


class CoreShell:
    """What the service submits to runs on the core at once, as the shell's loop would."""

    def __init__(self, net: Segments, core: BabelCore) -> None:
        self.net = net
        self.core = core

        self.keys: list[tuple[str, tuple[str, ...]]] = []

    def submit(self, work: Callable[[BabelCore, float], None]) -> None:
        work(self.core, self.net.now)

    def set_keys(self, interface: str, keys: Sequence[MacKey]) -> None:
        self.keys.append((interface, tuple(k.key_id for k in keys)))


def gateway(rules: tuple[str, ...] = RULES) -> tuple[Segments, BabelService]:
    net, service = build(rules)
    service._shell = CoreShell(net, net.cores["g"])  # type: ignore[assignment]
    service._own = service.own_origins(service.config)  # as its start makes it
    run(net, service, 10)
    return net, service


def reconfigure(
    service: BabelService, *, originate: tuple[str, ...] = (), rules: tuple[str, ...]
) -> None:
    old = service.config
    new = babel_config(old.interfaces, old.hello_interval, originate, (), rules)
    both = {"originate": new.originate, "redistribute": new.redistribute}
    service.reconfigure(dataclasses.replace(old, **both))  # type: ignore[arg-type]


def reachable(core: BabelCore, prefix: IPNetwork) -> bool:
    view = core.route(prefix)
    return view is not None and view.metric < INFINITY


def test_new_rules_withdraw_at_once_what_no_longer_crosses_either_way() -> None:
    net, service = gateway()
    site, n = net.cores["site"], net.cores["n"]
    assert reachable(site, M_PREFIX)  # a member's prefix, to the site through G
    assert reachable(n, SITE)  # the site's prefix, to the members under G's router-id
    reconfigure(service, rules=(f"{OVERLAY} ge 48 allow",))  # 10/8 no longer crosses
    net.run(0.5)
    assert not reachable(site, M_PREFIX), "the site router kept a route the rules refuse now"
    run(net, service, 1)  # the gateway's look at its site routes, once a second
    assert not reachable(n, SITE)
    # And back: the rules of before let them cross again, at once.
    reconfigure(service, rules=RULES)
    net.run(0.5)
    assert reachable(site, M_PREFIX)
    run(net, service, 1)
    assert reachable(n, SITE)


def test_what_the_new_rules_still_allow_is_not_disturbed() -> None:
    net, service = gateway()
    site, n = net.cores["site"], net.cores["n"]
    seqno = site.route(M_PREFIX).seqno  # type: ignore[union-attr]
    reconfigure(service, rules=(*RULES, "10.200.0.0/16 allow"))
    for _ in range(20):
        net.run(0.1)
        assert reachable(site, M_PREFIX)
        assert reachable(n, SITE)
    assert site.route(M_PREFIX).seqno == seqno  # type: ignore[union-attr]


def test_an_originated_prefix_comes_and_goes_at_once(caplog: pytest.LogCaptureFixture) -> None:
    net, service = gateway()
    n = net.cores["n"]
    g = net.cores["g"]
    assert not reachable(n, OWN_PART)
    with caplog.at_level(logging.INFO, logger="meshd.daemon.babel"):
        reconfigure(service, originate=(str(OWN_PART), str(NOT_OURS)), rules=RULES)
    net.run(0.5)
    view = n.route(OWN_PART)
    assert view is not None
    assert view.metric < INFINITY
    assert view.router_id == g.router_id
    # A prefix our certificate does not grant is refused as at a start: one line, not sent.
    assert not reachable(n, NOT_OURS)
    assert f"not announcing {NOT_OURS}" in caplog.text
    assert f"originating {OWN_PART}" in caplog.text
    with caplog.at_level(logging.INFO, logger="meshd.daemon.babel"):
        reconfigure(service, rules=RULES)
    net.run(0.5)
    assert not reachable(n, OWN_PART), "a member kept a prefix we no longer originate"
    # Our overlay /128 is never withdrawn (nor announced anew) by a reload.
    assert reachable(n, ip_network(f"{service.overlay}/128"))
    assert f"no longer originating {OWN_PART}" in caplog.text
    assert str(service.overlay) not in caplog.text


def test_before_the_core_runs_the_new_settings_are_what_its_start_reads() -> None:
    _, service = build(RULES)  # no core running: nothing to submit to
    reconfigure(service, originate=(str(OWN_PART),), rules=())
    assert service.config.redistribute == ()
    assert service.config.hello_interval == HELLO  # the rest as it was
    assert service.own_origins(service.config) == {
        (ip_network(f"{service.overlay}/128"), None),
        (OWN_PART, None),
    }


def test_new_keys_go_to_every_site_link_and_the_same_ones_nowhere() -> None:
    _, service = gateway()
    shell = service._shell
    assert isinstance(shell, CoreShell)
    old = service.config
    keys = babel_config(keys=["k2:hmac-sha256:" + "22" * 32, "k1:blake2s128:" + "11" * 16]).keys
    service.reconfigure(dataclasses.replace(old, keys=keys))
    assert shell.keys == [("eth1", ("k2", "k1"))]
    service.reconfigure(dataclasses.replace(service.config, redistribute=()))
    assert len(shell.keys) == 1  # the keys as they were: not set again
    service.reconfigure(dataclasses.replace(service.config, keys=()))
    assert shell.keys[-1] == ("eth1", ())
