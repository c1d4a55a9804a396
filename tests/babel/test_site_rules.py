"""Rule (c): what a gateway learns on its site link (``--babel-interface``) and the mesh.

The gateway G is a member with a WireGuard mesh interface ``wg0`` (members M and N, which
reach each other only through G) and a site link ``eth1``. Its core has the hooks the
daemon gives it (:meth:`BabelService.core_config`) and its site routes are originated as
the daemon does (``meshd.daemon.babel_site.reoriginate``, once a second). On the site link:

- an honest site router announcing 10.55.0.0/24 (inside G's grants) and 10.66.0.0/24;
- speakers that take a member's router-id from G's own announcements on the LAN and claim,
  with a newer seqno and a link cost of 1, the prefix granted to M, N's overlay /128, and
  (under a router-id of their own) the overlay /48.

The attack: M's prefix, N's /128 and the /48 were selected at G through the LAN, carried
onto the mesh under the members' router-ids, and so other members' traffic went to the
attacker. Rule (c): none of it is taken on the LAN, nothing learnt there is announced on
the mesh as it is, site routes cross only by an explicit ``allow`` rule and under G's
router-id, and nothing stays broken when the attackers stop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from ipaddress import IPv6Address, IPv6Network, ip_network

import pytest

from meshd.babel.config import CoreConfig, no_jitter
from meshd.babel.core import BabelCore
from meshd.babel.options import BabelConfig, MemberOrigins, babel_config, router_id_of
from meshd.babel.routes import RouteChanged, RouteInstalled
from meshd.babel.sources import IPNetwork
from meshd.daemon.babel import BabelService
from meshd.daemon.babel_site import reoriginate
from meshd.membership import Member, MemberState
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.addresses import link_local_from_wg_key
from tests.babel.segments import Segments

HELLO = 1.0
OVERLAY = IPv6Network("fd5a:0:1::/48")
G_KEY, M_KEY, N_KEY = (bytes([c]) * 32 for c in b"gmn")
OVERLAY_OF = {
    G_KEY: IPv6Address("fd5a:0:1::a"),
    M_KEY: IPv6Address("fd5a:0:1::b"),
    N_KEY: IPv6Address("fd5a:0:1::c"),
}
# Each member's link-local on the mesh, derived from its WireGuard key as the daemon's is
# (the gateway knows a neighbour by it: whose routes it may bring).
MESH_LL = {key: link_local_from_wg_key(key) for key in (G_KEY, M_KEY, N_KEY)}
M_PREFIX = ip_network("10.77.0.0/24")
"""Granted to M, originated by M."""
SITE = ip_network("10.55.0.0/24")
"""Granted to G, announced by the site router."""
OFF_GRANT = ip_network("10.66.0.0/24")
"""Announced by the site router, granted to no one."""
GRANTS: dict[bytes, list[IPNetwork]] = {
    G_KEY: [IPv6Network((OVERLAY_OF[G_KEY], 128)), SITE],
    M_KEY: [IPv6Network((OVERLAY_OF[M_KEY], 128)), M_PREFIX],
    N_KEY: [IPv6Network((OVERLAY_OF[N_KEY], 128))],
}
N_HOST = GRANTS[N_KEY][0]
ATTACK_SEQNO = 50
PROTECTED = (M_PREFIX, N_HOST, OVERLAY)
RULES = (f"{OVERLAY} ge 48 allow", "10.0.0.0/8 le 24 allow")
"""A filter that lets the overlay and 10/8 cross: the attack worked even so."""


def member(key: bytes, name: str, overlay: IPv6Address | None = None) -> Member:
    return Member(
        node_key=NodeKey(key),
        node_id=name,
        name=name,
        wg_key=WgKey(key),
        overlay=overlay or OVERLAY_OF[key],
        state=MemberState.ADMITTED,
        reason="",
        admitted_at=0,
        not_after=2**40,
        announcement=None,
        last_seen=None,
    )


MEMBERS = [member(G_KEY, "g"), member(M_KEY, "m"), member(N_KEY, "n")]


class FakeMesh:
    ifname = "wg0"

    def set_extra_prefixes(self, extra: object) -> None:
        pass

    def follow_babel(self, hello_interval: float) -> None:
        pass


def gateway(
    rules: Sequence[str], grants: dict[bytes, list[IPNetwork]] = GRANTS
) -> tuple[BabelService, BabelCore]:
    service = BabelService(
        babel_config(interfaces=["eth1"], hello_interval=HELLO, redistribute=rules),
        node_key=G_KEY,
        overlay=OVERLAY_OF[G_KEY],
        own_wg_key=G_KEY,
        members=lambda: MEMBERS,
        grants=lambda key: grants.get(key, []),
        mesh=FakeMesh(),
    )
    service._sync_members()
    core = BabelCore(
        router_id_of(G_KEY), dataclasses.replace(service.core_config(), random=no_jitter)
    )
    core.add_interface("wg0", kind="unicast-peers", hello_interval=HELLO, link_local=MESH_LL[G_KEY])
    core.add_interface("eth1", kind="wired", hello_interval=HELLO, link_local=LAN["g"])
    for key in (M_KEY, N_KEY):
        core.add_neighbour("wg0", MESH_LL[key])
    core.originate(GRANTS[G_KEY][0])
    return service, core


def mesh_member(key: bytes) -> BabelCore:
    origins = MemberOrigins(GRANTS)
    config = CoreConfig(accept=origins.accept, accept_on=frozenset(["wg0"]))
    core = BabelCore(router_id_of(key), config)
    core.add_interface("wg0", kind="unicast-peers", hello_interval=HELLO, link_local=MESH_LL[key])
    core.add_neighbour("wg0", MESH_LL[G_KEY])
    for prefix in GRANTS[key]:
        core.originate(prefix)
    return core


LAN = {
    "g": IPv6Address("fe80::1:1"),
    "site": IPv6Address("fe80::1:2"),
    "as-m": IPv6Address("fe80::66:1"),
    "as-n": IPv6Address("fe80::66:2"),
    "as-48": IPv6Address("fe80::66:3"),
}


def lan_speaker(
    net: Segments, name: str, router_id: bytes, prefixes: Sequence[IPNetwork], *, rxcost: int
) -> None:
    """A speaker on the LAN; ``rxcost`` is the cost it claims for hearing G."""
    core = net.add(name, BabelCore(router_id))
    core.add_interface(
        "eth1", kind="wired", hello_interval=HELLO, link_local=LAN[name], rxcost=rxcost
    )
    for prefix in prefixes:
        core.originate(prefix)
    net.attach(name, "eth1", "lan", LAN[name])


def build(rules: Sequence[str]) -> tuple[Segments, BabelService]:
    net = Segments()
    service, g = gateway(rules)
    net.add("g", g)
    net.attach("g", "wg0", "mesh", MESH_LL[G_KEY])
    net.attach("g", "eth1", "lan", LAN["g"])
    for key, name in ((M_KEY, "m"), (N_KEY, "n")):
        net.add(name, mesh_member(key))
        net.attach(name, "wg0", "mesh", MESH_LL[key])
    lan_speaker(net, "site", bytes.fromhex("5151515151515151"), [SITE, OFF_GRANT], rxcost=96)
    return net, service


def attack(net: Segments) -> None:
    """Members' router-ids, as G announces them on the LAN, a newer seqno, a cost of 1."""
    lan_speaker(net, "as-m", router_id_of(M_KEY), [M_PREFIX], rxcost=1)
    lan_speaker(net, "as-n", router_id_of(N_KEY), [N_HOST], rxcost=1)
    lan_speaker(net, "as-48", bytes.fromhex("6666666666666666"), [OVERLAY], rxcost=1)
    for name in ("as-m", "as-n"):
        net.cores[name].seqno = ATTACK_SEQNO


def run(net: Segments, service: BabelService, seconds: int) -> None:
    for _ in range(seconds):
        net.run(1.0)
        reoriginate(service, net.cores["g"], net.now)
        # M and N have no direct path: each asks G for the other's overlay /128, as the
        # daemon does (meshd.daemon.babel_wants); G announces members' /128s on demand.
        for name, other in (("m", N_KEY), ("n", M_KEY)):
            host = IPv6Network((OVERLAY_OF[other], 128))
            net.cores[name].request_routes("wg0", MESH_LL[G_KEY], [(host, None)], net.now)


def assert_mesh_intact(net: Segments) -> None:
    g, m, n = net.cores["g"], net.cores["m"], net.cores["n"]
    # G itself: every protected prefix through the mesh, never through the LAN.
    for prefix in (M_PREFIX, N_HOST):
        view = g.route(prefix)
        assert view is not None
        assert view.neighbour is not None
        assert view.neighbour.interface == "wg0", f"G routes {prefix} into the LAN"
    assert g.route(OVERLAY) is None, "G routes the overlay /48 into the LAN"
    for view in g.routes():
        if view.prefix in PROTECTED:
            assert view.neighbour is None or view.neighbour.interface == "wg0", view
    # The other members see the members' own announcements, not the attackers'.
    for core, prefix, owner in ((n, M_PREFIX, m), (m, N_HOST, n)):
        view = core.route(prefix)
        assert view is not None
        assert view.router_id == owner.router_id
        assert view.seqno == owner.seqno != ATTACK_SEQNO
    for core in (m, n):
        assert core.route(OVERLAY) is None
        assert all(v.seqno != ATTACK_SEQNO for v in core.routes() if v.neighbour is not None)
    # The kernel only ever hears of G's selected routes: none pointed a protected prefix
    # at the LAN, so none had to be undone (the /48's route to WireGuard stays as it is).
    for event in net.events["g"]:
        if isinstance(event, RouteInstalled | RouteChanged) and event.prefix in PROTECTED:
            assert event.neighbour.interface == "wg0", event


def test_lan_speakers_cannot_take_members_prefixes_even_with_a_filter() -> None:
    net, service = build(RULES)
    run(net, service, 10)
    attack(net)
    run(net, service, 20)
    assert_mesh_intact(net)
    g = net.cores["g"]
    assert g.counters()["refused_routes"] > 0
    # The granted site route crosses, under G's router-id; the other one does not.
    n = net.cores["n"]
    site = n.route(SITE)
    assert site is not None
    assert site.router_id == g.router_id
    assert n.route(OFF_GRANT) is None
    # The attackers stop: nothing stays broken.
    for name in ("as-m", "as-n", "as-48"):
        net.remove(name)
    run(net, service, 15)
    assert_mesh_intact(net)
    assert n.route(SITE) is not None


def test_without_rules_nothing_learnt_on_the_lan_reaches_the_mesh() -> None:
    net, service = build(())
    run(net, service, 10)
    attack(net)
    run(net, service, 20)
    assert_mesh_intact(net)
    g, n, m = net.cores["g"], net.cores["n"], net.cores["m"]
    site = g.route(SITE)
    assert site is not None
    assert site.neighbour is not None
    assert site.neighbour.interface == "eth1"  # G uses it itself
    for core in (n, m):
        learnt = {v.prefix for v in core.routes() if v.neighbour is not None}
        assert learnt <= {M_PREFIX, *GRANTS[M_KEY], *GRANTS[N_KEY], *GRANTS[G_KEY][:1]}
        assert SITE not in learnt


def test_site_origins_follow_the_membership() -> None:
    """A member admitted later with a grant: a LAN route inside it is dropped at once."""
    granted = ip_network("10.88.0.0/24")
    service, core = gateway(RULES)
    assert core.config.accept_site(bytes(8), granted, None)
    late = member(bytes([7]) * 32, "late", IPv6Address("fd5a:0:1::d"))
    GRANTS[late.node_key] = [granted]
    MEMBERS.append(late)
    try:
        service._sync_members()
        assert not core.config.accept_site(bytes(8), granted, None)
        assert not core.config.accept_site(bytes(8), ip_network("10.88.0.128/25"), None)
        assert not core.config.accept_site(
            router_id_of(late.node_key), ip_network("10.99.0.0/24"), None
        )
        assert core.config.accept_site(bytes(8), ip_network("10.0.0.0/8"), None)  # covers only
        assert core.config.accept_site(bytes(8), ip_network("::/0"), None)
    finally:
        MEMBERS.pop()
        del GRANTS[late.node_key]


def test_a_gateway_without_a_mesh_takes_the_lan_as_it_comes() -> None:
    """No WireGuard (``--wg-backend none``): no mesh to protect, no gateway rule."""
    service = BabelService(
        BabelConfig(interfaces=("eth1",)), node_key=G_KEY, overlay=OVERLAY_OF[G_KEY]
    )
    config = service.core_config()
    assert config.accept_on == frozenset()
    assert config.accept_site(router_id_of(M_KEY), OVERLAY, None)


def test_member_origins_take_router_ids_the_caller_holds_and_judge_the_same() -> None:
    held = {M_KEY: router_id_of(M_KEY)}  # N's is derived
    given, derived = MemberOrigins(GRANTS, held), MemberOrigins(GRANTS)
    for key in (G_KEY, M_KEY, N_KEY):
        for prefix in (*GRANTS[key], OVERLAY, GRANTS[N_KEY][0]):
            rid = router_id_of(key)
            assert given.accept(rid, prefix, None) == derived.accept(rid, prefix, None)
    assert held[M_KEY] in given.router_ids
    taken = MemberOrigins(GRANTS, {M_KEY: b"\x07" * 8})  # as given, not derived again
    assert taken.node_of(b"\x07" * 8) == M_KEY
    assert taken.node_of(router_id_of(M_KEY)) is None
    assert not given.accept(router_id_of(b"x" * 32), GRANTS[M_KEY][0], None)


def add_forger(net: Segments) -> None:
    """N on the mesh, speaking to G as M: M's prefixes under M's router-id, a seqno 30,000
    ahead and a claimed link cost of 1."""
    forger = BabelCore(router_id_of(M_KEY), CoreConfig())
    forger.add_interface(
        "wg0", kind="unicast-peers", hello_interval=HELLO, link_local=MESH_LL[N_KEY], rxcost=1
    )
    forger.add_neighbour("wg0", MESH_LL[G_KEY])
    for prefix in GRANTS[M_KEY]:
        forger.originate(prefix)
    forger.seqno = 30000
    net.add("n", forger)
    net.attach("n", "wg0", "mesh", MESH_LL[N_KEY])


def test_a_member_cannot_bring_another_members_routes_to_a_gateway() -> None:
    """A member that is neither a relay nor a gateway announced another member's prefixes
    under that member's router-id, with a seqno far ahead and a link cost of 1: the gateway
    took its route over the victim's own direct one, and the victim's traffic went to the
    attacker (its address moved to the attacker's WireGuard peer). On the mesh a member
    brings its own routes alone; only the mesh's relays and gateways carry others'."""
    net = Segments()
    _service, g = gateway(())
    net.add("g", g)
    net.attach("g", "wg0", "mesh", MESH_LL[G_KEY])
    net.attach("g", "eth1", "lan", LAN["g"])
    net.add("m", mesh_member(M_KEY))
    net.attach("m", "wg0", "mesh", MESH_LL[M_KEY])
    add_forger(net)
    run_plain(net, 20)
    for prefix in GRANTS[M_KEY]:
        view = g.route(prefix)
        assert view is not None
        assert view.neighbour is not None
        assert view.neighbour.address == MESH_LL[M_KEY], (prefix, view)
        assert view.seqno < 30000
    assert g.counters()["refused_routes"] > 0


@pytest.mark.parametrize("forger_first", [False, True], ids=["together", "forger-first"])
def test_a_carrier_cannot_take_a_members_routes_from_its_own_direct_route(
    forger_first: bool,
) -> None:
    """A member that is one of the carriers (here a gateway: its certificate grants it a
    site prefix) announced another member's prefixes under that member's router-id, with a
    seqno far ahead and a link cost of 1: G took its route over the victim's own direct one
    (a newer seqno is feasible, a lower metric wins). A route heard from its originator
    itself is chosen while its link is up, whatever a carrier claims; and where the forged
    one came first (the victim not up yet), the victim's own takes over when it comes, and
    what G announces of it is the victim's real seqno again."""
    grants = {**GRANTS, N_KEY: [*GRANTS[N_KEY], ip_network("10.88.0.0/24")]}
    net = Segments()
    _service, g = gateway((), grants)
    net.add("g", g)
    net.attach("g", "wg0", "mesh", MESH_LL[G_KEY])
    net.attach("g", "eth1", "lan", LAN["g"])
    add_forger(net)
    # A site router on G's LAN hears what G announces of M's prefix (G learns M's routes on
    # the mesh; the gateway re-originates only its site routes, so this is Babel's own view).
    lan_speaker(net, "site", bytes.fromhex("5151515151515151"), [], rxcost=96)
    if forger_first:
        run_plain(net, 10)
        assert g.route(M_PREFIX) is not None  # the carrier's route: M is not up yet
    net.add("m", mesh_member(M_KEY))
    net.attach("m", "wg0", "mesh", MESH_LL[M_KEY])
    run_plain(net, 20)
    m = net.cores["m"]
    for prefix in GRANTS[M_KEY]:
        view = g.route(prefix)
        assert view is not None
        assert view.neighbour is not None
        assert view.neighbour.address == MESH_LL[M_KEY], (prefix, view)
        assert view.seqno == m.seqno < 30000
        # What bounds G's choice when M's link fails is M's real seqno again, not the
        # forged one: a seqno M raises on request makes an honest relay's route feasible.
        distance = g._sources.distance((prefix, None), router_id_of(M_KEY))
        assert distance is not None
        assert distance.seqno == m.seqno
    # And once M goes away, the carrier's route is taken again: it still carries.
    net.remove("m")
    run_plain(net, 30)
    view = g.route(M_PREFIX)
    assert view is not None
    assert view.neighbour is not None
    assert view.neighbour.address == MESH_LL[N_KEY]


def run_plain(net: Segments, seconds: int) -> None:
    for _ in range(seconds):
        net.run(1.0)
