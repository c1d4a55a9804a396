"""No candidate that can answer: the relay at once, the direct path still tried.

A member with no public address cannot reach a peer that offers nothing public, nothing on
its LAN and no reflexive mapping (or, behind a symmetric NAT of its own: members see one
address with different ports, only reflexive mappings): the peer's NAT lets in only what
comes from where it sent to. Its path says the relay may carry traffic from the first moment
(``Action.relay``), while candidates and punch rounds are still tried; the hold-down then
holds nobody.
"""

from __future__ import annotations

import ipaddress

from meshd.mesh import punch
from meshd.mesh.candidates import Candidate, is_public
from meshd.mesh.holddown import DIRECT_ATTEMPT, HoldDown, hold_down_period, routed_directly
from meshd.mesh.punch import DirectPath, direct_hopeless
from tests.mesh.test_holddown import PEERS, VIA_RELAY, holder, new

OVERLAY = ipaddress.IPv6Network("fd6d:6573:6864::/48")
ELSEWHERE = Candidate("local", ipaddress.ip_address("192.168.2.2"), 51820)
ON_OUR_LAN = Candidate("local", ipaddress.ip_address("192.168.1.9"), 51820)
REFLEXIVE = Candidate("reflexive", ipaddress.ip_address("93.184.216.99"), 40000, 2)
PUBLIC = Candidate("local", ipaddress.ip_address("93.184.216.34"), 51820)
DOC_PUBLIC = Candidate("local", ipaddress.ip_address("203.0.113.6"), 51820)
CONFIGURED = Candidate("configured", ipaddress.ip_address("192.168.2.2"), 51820)
OUR_LAN = (ipaddress.IPv4Network("192.168.1.0/24"),)


def hopeless(*candidates: Candidate, symmetric: bool = True, public: bool = False) -> bool:
    return direct_hopeless(candidates, symmetric=symmetric, public=public, networks=OUR_LAN)


def test_a_peer_offering_only_private_addresses_elsewhere_is_hopeless() -> None:
    assert hopeless(ELSEWHERE)
    assert hopeless(ELSEWHERE, symmetric=False)  # its addresses cannot answer, whatever ours
    assert hopeless()  # nothing announced at all
    # Behind a symmetric NAT, a cone peer's mapping does not help either: it lets in only
    # what comes from where it sent to, and it cannot know the port our NAT picks for it.
    assert hopeless(REFLEXIVE, ELSEWHERE)


def test_anything_public_on_either_side_or_a_shared_lan_leaves_hope() -> None:
    assert not hopeless(REFLEXIVE, ELSEWHERE, symmetric=False)  # cone or unknown: punch
    assert not hopeless(ELSEWHERE, public=True)  # we are reachable as we are
    assert not hopeless(PUBLIC)
    assert not hopeless(DOC_PUBLIC)  # documentation ranges stand for public addresses
    assert not hopeless(CONFIGURED)  # the operator says where the peer is reached
    assert not hopeless(ELSEWHERE, ON_OUR_LAN)  # same LAN: no NAT in the way


def test_documentation_ranges_count_as_public_and_private_ones_do_not() -> None:
    for text in ("203.0.113.6", "198.51.100.2", "192.0.2.1", "2001:db8:77:1::2", "1.1.1.1"):
        assert is_public(ipaddress.ip_address(text)), text
    for text in ("10.77.1.2", "192.168.1.2", "100.64.0.1", "fd6c:6162:0:1::2", "127.0.0.1"):
        assert not is_public(ipaddress.ip_address(text)), text


def path(*candidates: Candidate, symmetric: bool) -> DirectPath:
    p = DirectPath(candidates, 0.0, families=frozenset({4}), networks=OUR_LAN, overlay=OVERLAY)
    p.symmetric = symmetric
    return p


def test_a_hopeless_path_opens_the_relay_at_once_and_keeps_trying() -> None:
    p = path(ELSEWHERE, symmetric=True)
    a = p.update(0.0, None, None)
    assert (a.path, a.endpoint, a.kick, a.relay) == ("trying", "192.168.2.2:51820", True, True)
    # A peer with a reflexive candidate, from a member whose NAT is not known to be
    # symmetric: the first candidate is given its chance before the relay carries traffic.
    q = path(REFLEXIVE, ELSEWHERE, symmetric=False)
    assert q.update(0.0, None, None).relay is False
    assert q.update(punch.ATTEMPT, None, None).relay is True
    # Punching goes on: a handshake (a NAT that filters less than expected) settles direct,
    # and the relay is no longer wanted.
    a = p.update(3.0, 2.9, "198.51.100.6:3456")
    assert (a.path, a.relay) == ("direct", False)
    # Our side turns out not to be symmetric after all: the reflexive one has a chance.
    r = path(REFLEXIVE, symmetric=True)
    assert r.update(0.0, None, None).relay is True
    r.symmetric = False
    assert r.update(0.1, None, None).relay is False


def test_the_hold_down_holds_no_hopeless_peer() -> None:
    period = hold_down_period(4.0)
    hold = HoldDown(period)
    # Without the word from the path, a new peer is held for the direct attempt...
    held = hold.update(0.0, PEERS.keys(), routed_directly(PEERS, VIA_RELAY), answered=())
    assert holder(VIA_RELAY, held) == "new"
    # ...with it, the relay Babel chose carries the peer's traffic at once.
    fresh = HoldDown(period)
    held = fresh.update(
        0.0, PEERS.keys(), routed_directly(PEERS, VIA_RELAY), answered=(), released=[new.wg_key]
    )
    assert holder(VIA_RELAY, held) == "relay"
    assert fresh.deadline() is None
    # A peer that shook hands is held as before, released or not (the path would say
    # direct, not relay, in the daemon): nothing direct is dropped.
    other = HoldDown(period)
    held = other.update(
        0.0,
        PEERS.keys(),
        routed_directly(PEERS, VIA_RELAY),
        answered=[new.wg_key],
        released=[new.wg_key],
    )
    assert holder(VIA_RELAY, held) == "new"
    assert DIRECT_ATTEMPT > 0
