"""Which mesh neighbours Babel paces at rest (meshd.daemon.babel_pace), and how the service
wires the rule into the core and the punching service."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

from meshd.babel.core import BabelCore
from meshd.daemon.babel_pace import REST_PACE, at_rest, rest_pace
from meshd.daemon.babel_peers import mesh_members
from meshd.membership import Member
from meshd.wg.addresses import link_local_from_wg_key
from meshd.wg.model import IPNetwork
from tests.daemon.babel_support import mesh_babel
from tests.mesh.support import member, relay

SITE = ipaddress.IPv6Network("2001:db8:5::/64")


class _Mesh:
    ifname = "wg0"

    def set_extra_prefixes(self, extra: object) -> None:
        pass

    def follow_babel(self, hello_interval: float) -> None:
        pass


def _scene() -> tuple[list[Member], dict[str, Member]]:
    named = {
        "r1": relay(member("r1")),
        "r2": relay(member("r2")),
        "g": member("g"),
        "a": member("a"),
        "b": member("b"),
    }
    return list(named.values()), named


def _grants(gateway: Member) -> object:
    def grants(m: Member) -> list[IPNetwork]:
        own: list[IPNetwork] = [ipaddress.IPv6Network((m.overlay, 128))]
        return [*own, SITE] if m.node_key == gateway.node_key else own

    return grants


def test_the_rule() -> None:
    members, named = _scene()
    grants = _grants(named["g"])
    ll = {n: link_local_from_wg_key(m.wg_key) for n, m in named.items()}
    # A member towards the relays: at rest while it wants nothing through them.
    view = mesh_members(members, grants, named["a"].node_key)  # type: ignore[arg-type]
    assert at_rest(view, ll["r1"], wanting=False)
    assert not at_rest(view, ll["r1"], wanting=True)
    # ...never towards a gateway (its site routes fail over within a few Hellos).
    assert not at_rest(view, ll["g"], wanting=False)
    # A relay towards the members and the other relay: at rest (the core keeps a member
    # that asked for a route busy whatever the rule says).
    view = mesh_members(members, grants, named["r1"].node_key)  # type: ignore[arg-type]
    assert at_rest(view, ll["a"], wanting=False)
    assert at_rest(view, ll["r2"], wanting=False)
    # A gateway paces no one.
    view = mesh_members(members, grants, named["g"].node_key)  # type: ignore[arg-type]
    assert view.gateway
    assert not any(at_rest(view, ll[n], wanting=False) for n in ("r1", "a", "b"))


def test_the_pace_fits_the_wire() -> None:
    assert rest_pace(4.0) == REST_PACE == 8
    assert rest_pace(1.0) == REST_PACE
    assert rest_pace(60.0) == 2  # 2 x 240 s updates: within 655.35 s
    assert rest_pace(200.0) == 1
    core = BabelCore(b"\x01" * 8)
    for hello in (0.05, 1.0, 4.0, 20.0, 60.0, 150.0):
        # whatever the Hello interval, the mesh interface takes the pace
        core.add_interface(
            f"wg{hello}", kind="unicast-peers", hello_interval=hello, rest_pace=rest_pace(hello)
        )


def test_the_service_rests_the_relays_of_a_member_that_wants_nothing() -> None:
    members, named = _scene()
    me = named["a"]
    service = mesh_babel(me, lambda: members, _Mesh())
    service._sync_members()
    relay_ll = link_local_from_wg_key(named["r1"].wg_key)
    assert service.core_config().at_rest is not None
    assert service._at_rest("wg0", relay_ll)
    assert not service._at_rest("eth0", relay_ll)  # a site link never paces
    assert service._on_mesh is not None
    service._on_mesh.wants.active = True  # a direct path failed: a route is wanted
    assert not service._at_rest("wg0", relay_ll)


def test_a_relay_path_at_rest_is_judged_without_hellos() -> None:
    """The punching service's Hello rule (a direct path silent for 4 Hellos is lost) would
    lose a path whose Hellos come every 32 s: such a path is judged as one without Hellos."""
    members, named = _scene()
    service = mesh_babel(named["a"], lambda: members, _Mesh())
    service._sync_members()
    resting: set[object] = set()
    service._shell = SimpleNamespace(  # type: ignore[assignment]
        core=SimpleNamespace(resting=lambda interface, address: address in resting)
    )
    r1 = named["r1"]
    assert service.hellos(r1.wg_key)
    resting.add(link_local_from_wg_key(r1.wg_key))
    assert not service.hellos(r1.wg_key)
    assert not service.hellos(named["b"].wg_key)  # not a Babel neighbour at all


def test_the_core_says_which_neighbours_rest() -> None:
    core = BabelCore(b"\x01" * 8)
    core.add_interface("wg0", kind="unicast-peers", hello_interval=4.0, rest_pace=8)
    peer = ipaddress.IPv6Address("fe80::2")
    assert not core.resting("wg0", peer)  # unknown
    core.add_neighbour("wg0", peer)
    assert not core.resting("wg0", peer)
    iface = core._interfaces["wg0"]
    iface.neighbours[peer].pace = 8  # we pace it
    assert core.resting("wg0", peer)
    assert core.counters()["neighbours_at_rest"] == 1  # meshd routes shows it
    iface.neighbours[peer].pace = 1
    iface.neighbours[peer].unicast.interval = 32.0  # it paces us
    assert core.resting("wg0", peer)
