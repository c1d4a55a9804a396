"""One Babel core fed hand-made packets: what it installs, reports and sends back."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from meshd.babel.codec import decode_packet_untrusted
from meshd.babel.core import MULTICAST_GROUP, BabelCore, CoreConfig
from meshd.babel.expand import (
    RequestSeqno,
    Route,
    build_updates,
    expand,
    ihu,
    route_request,
    seqno_request,
)
from meshd.babel.numbers import INFINITY
from meshd.babel.packet import Packet, Tlv
from meshd.babel.prefix import AE_IPV4, AE_IPV4_VIA_IPV6
from meshd.babel.routes import (
    Event,
    NeighbourDown,
    NeighbourId,
    NeighbourUp,
    RouteChanged,
    RouteInstalled,
    RouteRetracted,
)
from meshd.babel.tlv import Hello, NextHop, SeqnoRequest, Update

ME = IPv6Address("fe80::1")
PEER = IPv6Address("fe80::2")
OTHER = IPv6Address("fe80::3")
MY_ID = bytes.fromhex("0000000000000001")
FAR_ID = bytes.fromhex("00000000000000aa")
NET = IPv6Network("2001:db8:aa::/48")


class Peer:
    """A fake neighbour on ``eth0`` that speaks to the core under test."""

    def __init__(self, core: BabelCore, address: IPv6Address, interface: str = "eth0") -> None:
        self.core = core
        self.address = address
        self.interface = interface
        self.seqno = 0

    def send(self, now: float, *tlvs: Tlv, hello: bool = True, rxcost: int = 96) -> None:
        body: list[Tlv] = []
        if hello:
            self.seqno += 1
            body += [Hello(self.seqno, 100), ihu(rxcost, 300, ME)]
        body += tlvs
        self.core.receive(self.interface, self.address, Packet(tuple(body)), now)

    def announce(self, now: float, *routes: Route, hello: bool = True) -> None:
        self.send(now, *build_updates(routes), hello=hello)

    def up(self, now: float) -> float:
        """Two Hellos one second apart: the link is up (2-out-of-3)."""
        self.send(now)
        self.send(now + 1)
        return now + 1


def route(
    metric: int,
    seqno: int = 0,
    router_id: bytes = FAR_ID,
    prefix: IPv6Network | IPv4Network = NET,
    source: IPv6Network | IPv4Network | None = None,
    interval: int = 400,
) -> Route:
    return Route(prefix, seqno, metric, interval, router_id, None, source)


def make_core(**config: object) -> BabelCore:
    core = BabelCore(MY_ID, CoreConfig(**config))  # type: ignore[arg-type]
    core.add_interface("eth0", kind="wired", hello_interval=1.0, link_local=ME)
    core.add_interface("eth1", kind="wired", hello_interval=1.0, link_local=ME)
    core.handle_timer(0.0)
    core.datagrams_to_send(0.0)
    return core


def events(core: BabelCore) -> list[Event]:
    out = []
    while (event := core.next_event()) is not None:
        out.append(event)
    return out


def sent(
    core: BabelCore, now: float, interface: str | None = None
) -> list[tuple[IPv6Address | IPv4Address, list[object]]]:
    """What the core sends by ``now`` (on ``interface`` only, if given), expanded."""
    out: list[tuple[IPv6Address | IPv4Address, list[object]]] = []
    for name, destination, payload in core.datagrams_to_send(now):
        if interface is None or name == interface:
            out.append((destination, list(expand(decode_packet_untrusted(payload), ME))))
    return out


def sent_routes(core: BabelCore, now: float, interface: str | None = None) -> list[Route]:
    return [m for _, ms in sent(core, now, interface) for m in ms if isinstance(m, Route)]


# --- neighbours -----------------------------------------------------------------------------


def test_a_neighbour_comes_up_after_two_hellos_and_goes_down_after_two_misses() -> None:
    core = make_core()
    peer = Peer(core, PEER)
    peer.send(0.0)
    assert not [e for e in events(core) if isinstance(e, NeighbourUp)]
    peer.send(1.0)
    assert events(core) == [NeighbourUp(NeighbourId("eth0", PEER), 96)]
    # Next Hello due at 2.0: missed at 2.5 (1 of 3 missing), at 3.5 (2 of 3): down.
    core.handle_timer(2.6)
    assert events(core) == []
    core.handle_timer(3.6)
    assert events(core) == [NeighbourDown(NeighbourId("eth0", PEER))]


def test_k_out_of_j_is_configurable() -> None:
    core = BabelCore(MY_ID)
    core.add_interface("eth0", kind="wired", hello_interval=1.0, link_local=ME, k=1, j=1)
    peer = Peer(core, PEER)
    peer.send(0.0)
    assert [type(e) for e in events(core)] == [NeighbourUp]
    core.handle_timer(1.6)  # one Hello missed: 0 of the last 1
    assert [type(e) for e in events(core)] == [NeighbourDown]


def test_ihus_for_someone_else_do_not_count() -> None:
    core = make_core()
    peer = Peer(core, PEER)
    for now in (0.0, 1.0):
        peer.send(now, Hello(int(now) + 1, 100), ihu(96, 300, OTHER), hello=False)
    assert events(core) == []
    assert core.neighbours()[0].txcost == INFINITY


def test_the_core_sends_hellos_and_ihus_with_our_rxcost() -> None:
    core = make_core()
    peer = Peer(core, PEER)
    peer.up(0.0)
    core.handle_timer(1.0)
    messages = [
        m for destination, ms in sent(core, 1.0) for m in ms if destination == MULTICAST_GROUP
    ]
    hellos = [m for m in messages if isinstance(m, Hello)]
    assert hellos
    assert hellos[0].interval == 100
    ihus = [m for m in messages if not isinstance(m, Hello | Route)]
    assert any(getattr(m, "address", None) == PEER and getattr(m, "rxcost", 0) == 96 for m in ihus)


def test_unicast_peers_only_hear_configured_neighbours() -> None:
    core = BabelCore(MY_ID)
    core.add_interface("wg0", kind="unicast-peers", hello_interval=1.0, link_local=ME)
    core.add_neighbour("wg0", PEER)
    core.handle_timer(0.0)
    datagrams = core.datagrams_to_send(0.0)
    assert {destination for _, destination, _ in datagrams} == {PEER}
    hello = next(
        m
        for _, _, payload in datagrams
        for m in expand(decode_packet_untrusted(payload), ME)
        if isinstance(m, Hello)
    )
    assert hello.unicast
    assert hello.interval == 100
    Peer(core, OTHER, "wg0").send(0.5)
    assert core.dropped == 1
    assert [n.neighbour.address for n in core.neighbours()] == [PEER]


def test_malformed_bytes_are_counted_and_dropped() -> None:
    core = make_core()
    core.receive("eth0", PEER, b"\x2a\x02\x00\x10", 0.0)
    assert core.decode_errors == 1


# --- routes ---------------------------------------------------------------------------------


def test_an_update_installs_a_route_and_a_retraction_removes_it() -> None:
    core = make_core()
    peer = Peer(core, PEER)
    now = peer.up(0.0)
    events(core)
    peer.announce(now, route(100))
    nid = NeighbourId("eth0", PEER)
    assert events(core) == [RouteInstalled(NET, None, PEER, nid, 196, FAR_ID)]
    out: dict[str, list[tuple[object, int]]] = {"eth0": [], "eth1": []}
    for name, _, payload in core.datagrams_to_send(now + 1):
        for m in expand(decode_packet_untrusted(payload), ME):
            if isinstance(m, Route):
                out[name].append((m.prefix, m.metric))
    # Split horizon on wired links, poisoned: a retraction back where it came from.
    assert out == {"eth0": [(NET, INFINITY)], "eth1": [(NET, 196)]}
    peer.announce(now + 2, route(INFINITY))
    assert events(core) == [RouteRetracted(NET, None)]
    retractions = [r for r in sent_routes(core, now + 3, "eth1") if r.prefix == NET]
    assert retractions
    assert all(r.metric == INFINITY for r in retractions)


def test_route_origin_validation_rejects_and_revalidates() -> None:
    allowed = {FAR_ID}

    def accept(router_id: bytes, prefix: object, source: object) -> bool:
        return router_id in allowed

    core = make_core(accept=accept)
    peer = Peer(core, PEER)
    now = peer.up(0.0)
    events(core)
    peer.announce(now, route(100, router_id=bytes.fromhex("00000000000000bb")))
    assert events(core) == []
    assert core.route(NET) is None
    peer.announce(now, route(100))
    assert [type(e) for e in events(core)] == [RouteInstalled]
    allowed.clear()  # the member was revoked
    core.revalidate(now + 0.5)
    assert events(core) == [RouteRetracted(NET, None)]
    assert core.route(NET) is None


def test_a_route_expires_without_updates() -> None:
    core = make_core()
    peer = Peer(core, PEER)
    now = peer.up(0.0)
    peer.announce(now, route(100, interval=100))  # promises an update every second
    events(core)
    for t in (2.0, 3.0, 4.0):  # Hellos keep the link up, no more updates
        peer.send(t)
    core.handle_timer(4.4)
    assert events(core) == []
    core.handle_timer(4.6)  # 3.5 intervals after the update at 1.0
    assert events(core) == [RouteRetracted(NET, None)]


def test_hysteresis_keeps_the_route_unless_much_better() -> None:
    core = make_core(hysteresis=48)
    a, b = Peer(core, PEER), Peer(core, OTHER)
    a.up(0.0)
    now = b.up(0.0)
    a.announce(now, route(200))
    events(core)
    b.announce(now, route(170))  # 30 better: not worth a switch
    assert events(core) == []
    assert core.route(NET).neighbour == NeighbourId("eth0", PEER)  # type: ignore[union-attr]
    b.announce(now, route(100))  # 100 better
    (change,) = events(core)
    assert isinstance(change, RouteChanged)
    assert change.neighbour == NeighbourId("eth0", OTHER)
    assert change.metric == 196


def test_an_unfeasible_update_of_the_selected_route_is_ignored_and_a_seqno_requested() -> None:
    core = make_core()
    peer = Peer(core, PEER)
    now = peer.up(0.0)
    peer.announce(now, route(100, seqno=7))
    sent(core, now + 1)  # we announce 196: our feasibility distance is (7, 196)
    events(core)
    peer.announce(now + 1, route(300, seqno=7))  # same seqno, worse than 196: unfeasible
    assert events(core) == []
    assert core.route(NET).metric == 196  # type: ignore[union-attr]
    requests = [m for _, ms in sent(core, now + 2) for m in ms if isinstance(m, RequestSeqno)]
    assert requests == [RequestSeqno(NET, 8, 64, FAR_ID)]
    peer.announce(now + 2, route(300, seqno=8))  # the newer seqno makes it feasible
    (change,) = events(core)
    assert isinstance(change, RouteChanged)
    assert change.metric == 396


def test_a_starving_node_asks_the_neighbours_with_unfeasible_routes() -> None:
    core = make_core()
    a, b = Peer(core, PEER), Peer(core, OTHER)
    a.up(0.0)
    now = b.up(0.0)
    a.announce(now, route(0, seqno=3))
    sent(core, now + 1)  # distance (3, 96)
    b.announce(now + 1, route(200, seqno=3))  # unfeasible, kept in the table
    a.announce(now + 1, route(INFINITY, seqno=3))  # the feasible route goes
    requests = [
        (destination, m)
        for destination, ms in sent(core, now + 2)
        for m in ms
        if isinstance(m, RequestSeqno)
    ]
    assert (OTHER, RequestSeqno(NET, 4, 64, FAR_ID)) in requests
    b.announce(now + 2, route(200, seqno=4))
    assert core.route(NET).metric == 296  # type: ignore[union-attr]


def test_our_seqno_goes_up_by_one_on_request() -> None:
    core = make_core()
    own = IPv6Network("2001:db8:1::/48")
    core.originate(own)
    peer = Peer(core, PEER)
    now = peer.up(0.0)
    sent(core, now)
    peer.send(now, seqno_request(own, 5, 10, MY_ID))
    assert core.seqno == 1  # by one, whatever was asked
    updates = [r for r in sent_routes(core, now + 1) if r.prefix == own]
    assert updates
    assert all(r.seqno == 1 and r.router_id == MY_ID for r in updates)
    peer.send(now + 1, seqno_request(own, 1, 10, MY_ID))  # satisfied already
    assert core.seqno == 1


def test_a_seqno_request_is_forwarded_towards_the_originator() -> None:
    core = make_core()
    a, b = Peer(core, PEER), Peer(core, OTHER)
    a.up(0.0)
    now = b.up(0.0)
    a.announce(now, route(100, seqno=5))
    sent(core, now)
    b.send(now, seqno_request(NET, 6, 10, FAR_ID))
    out = core.datagrams_to_send(now + 1)
    forwarded = [
        (destination, tlv)
        for _, destination, payload in out
        for tlv in decode_packet_untrusted(payload).tlvs
        if isinstance(tlv, SeqnoRequest)
    ]
    assert len(forwarded) == 1
    destination, tlv = forwarded[0]
    assert destination == PEER
    assert tlv.hop_count == 9
    assert tlv.seqno == 6
    b.send(now + 1, seqno_request(NET, 6, 10, FAR_ID))  # a duplicate is not forwarded again
    assert not [
        tlv
        for _, _, payload in core.datagrams_to_send(now + 2)
        for tlv in decode_packet_untrusted(payload).tlvs
        if isinstance(tlv, SeqnoRequest)
    ]


def test_a_wildcard_route_request_gets_a_full_dump_and_start_sends_one() -> None:
    core = BabelCore(MY_ID)
    core.add_interface("eth0", kind="wired", hello_interval=1.0, link_local=ME)
    core.originate(IPv6Network("2001:db8:1::/48"))
    core.originate(IPv6Network("2001:db8:2::/48"))
    core.handle_timer(0.0)
    first = [m for _, ms in sent(core, 0.0) for m in ms]
    assert any(type(m).__name__ == "RequestAllRoutes" for m in first)
    peer = Peer(core, PEER)
    peer.send(0.5, route_request(None), hello=False)
    dump = [(d, m) for d, ms in sent(core, 0.6) for m in ms if isinstance(m, Route)]
    assert {m.prefix for d, m in dump if d == PEER} == {
        IPv6Network("2001:db8:1::/48"),
        IPv6Network("2001:db8:2::/48"),
    }


def test_ipv4_routes_go_via_ipv6_without_an_ipv4_address() -> None:
    v4 = IPv4Network("10.1.0.0/24")
    for ipv4, ae in ((None, AE_IPV4_VIA_IPV6), (IPv4Address("192.0.2.1"), AE_IPV4)):
        core = BabelCore(MY_ID)
        core.add_interface("eth0", kind="wired", hello_interval=1.0, link_local=ME, ipv4=ipv4)
        core.originate(v4)
        core.handle_timer(0.0)
        tlvs = [
            tlv
            for _, _, payload in core.datagrams_to_send(0.0)
            for tlv in decode_packet_untrusted(payload).tlvs
        ]
        updates = [t for t in tlvs if isinstance(t, Update) and t.ae != 0]
        assert updates
        assert {u.ae for u in updates} == {ae}
        next_hops = [t.address for t in tlvs if isinstance(t, NextHop)]
        assert next_hops == ([] if ipv4 is None else [ipv4])


def test_ipv4_via_ipv6_routes_are_installed_with_the_ipv6_next_hop() -> None:
    core = make_core()
    peer = Peer(core, PEER)
    now = peer.up(0.0)
    events(core)
    v4 = IPv4Network("10.9.0.0/16")
    peer.announce(now, Route(v4, 1, 0, 400, FAR_ID, None))  # no IPv4 next hop: AE 4
    (installed,) = events(core)
    assert isinstance(installed, RouteInstalled)
    assert installed.prefix == v4
    assert installed.next_hop == PEER


def test_source_specific_routes_are_keyed_by_prefix_and_source() -> None:
    core = make_core()
    peer = Peer(core, PEER)
    now = peer.up(0.0)
    events(core)
    default = IPv6Network("::/0")
    src_a, src_b = IPv6Network("2001:db8:a::/48"), IPv6Network("2001:db8:b::/48")
    peer.announce(
        now, route(10, prefix=default, source=src_a), route(20, prefix=default, source=src_b)
    )
    installed = events(core)
    assert {(e.prefix, e.source, e.metric) for e in installed} == {  # type: ignore[union-attr]
        (default, src_a, 106),
        (default, src_b, 116),
    }
    assert core.route(default) is None
    assert core.route(default, src_a).metric == 106  # type: ignore[union-attr]
    own = IPv6Network("2001:db8:1::/48")
    core.originate(IPv6Network("::/0"), own)
    announced = [r for r in sent_routes(core, now + 1) if r.router_id == MY_ID]
    assert {(r.prefix, r.source) for r in announced} == {(default, own)}


def test_withdraw_sends_a_retraction() -> None:
    core = make_core()
    own = IPv6Network("2001:db8:1::/48")
    core.originate(own)
    sent(core, 0.0)
    core.withdraw(own)
    retractions = [r for r in sent_routes(core, 0.1) if r.prefix == own]
    assert retractions
    assert all(r.metric == INFINITY for r in retractions)


def test_redistribute_filter_keeps_routes_off_an_interface() -> None:
    def only_mesh(interface: str, prefix: object, source: object) -> bool:
        return interface == "wg0"

    core = BabelCore(MY_ID, CoreConfig(redistribute=only_mesh))
    core.add_interface("eth0", kind="wired", hello_interval=1.0, link_local=ME)
    core.add_interface("wg0", kind="unicast-peers", hello_interval=1.0, link_local=ME)
    core.add_neighbour("wg0", PEER)
    core.originate(IPv6Network("2001:db8:1::/48"))
    core.handle_timer(0.0)
    by_interface: dict[str, int] = {}
    for interface, _, payload in core.datagrams_to_send(0.0):
        finite = [
            m
            for m in expand(decode_packet_untrusted(payload), ME)
            if isinstance(m, Route) and m.metric < INFINITY
        ]
        by_interface[interface] = by_interface.get(interface, 0) + len(finite)
    assert by_interface["eth0"] == 0
    assert by_interface["wg0"] > 0


def test_timer_and_snapshots() -> None:
    core = make_core()
    peer = Peer(core, PEER)
    now = peer.up(0.0)
    peer.announce(now, route(100))
    deadline = core.timer()
    assert deadline is not None
    assert deadline > now - 1
    views = {(v.prefix, v.selected, v.feasible) for v in core.routes()}
    assert (NET, True, True) in views
    (neighbour,) = core.neighbours()
    assert (neighbour.reach, neighbour.rxcost, neighbour.txcost, neighbour.cost) == (
        0b111,
        96,
        96,
        96,
    )


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="router-id"):
        BabelCore(bytes(8))
    core = make_core()
    with pytest.raises(ValueError, match="already"):
        core.add_interface("eth0", kind="wired")
    with pytest.raises(ValueError, match="unicast-peers"):
        core.add_neighbour("eth1", PEER)
    with pytest.raises(ValueError, match="unknown interface"):
        core.receive("nope", PEER, b"", 0.0)
    with pytest.raises(ValueError, match="families"):
        core.originate(IPv6Network("::/0"), IPv4Network("10.0.0.0/8"))
    with pytest.raises(ValueError, match="finite cost"):
        NeighbourUp(NeighbourId("eth0", PEER), INFINITY)


def test_a_links_new_mtu_sizes_the_datagrams_from_then_on() -> None:
    """``set_mtu`` (the mesh interface's MTU changed at a SIGHUP): a full update of 200
    routes went in datagrams of up to 1,400 bytes; after, none is over the new 600."""
    core = BabelCore(MY_ID)
    core.add_interface("eth0", kind="wired", hello_interval=1.0, link_local=ME, mtu=1400)
    for i in range(200):
        core.originate(IPv6Network(f"2001:db8:{i:x}::/48"))
    core.handle_timer(0.0)
    before = [len(p) for _, _, p in core.datagrams_to_send(0.0)]
    assert max(before) > 600
    core.set_mtu("eth0", 600)
    core.set_mtu("gone0", 600)  # an interface not added: nothing
    peer = Peer(core, PEER)
    peer.send(0.5, route_request(None), hello=False)
    after = [p for _, _, p in core.datagrams_to_send(0.6)]
    assert after
    assert max(len(p) for p in after) <= 600
    prefixes = {
        m.prefix
        for p in after
        for m in expand(decode_packet_untrusted(p), ME)
        if isinstance(m, Route)
    }
    assert len(prefixes) == 200  # all of them, in more datagrams
    with pytest.raises(ValueError, match="too small"):
        core.set_mtu("eth0", 500)
