"""The first round's peers and operations are made once, not checked again (PeerConfig.derived,
UpdatePeer.derived), and are the values the checking constructors make: the same peers, the
same allowed-ips in the same order, the same operations, for members of every kind. What
comes from outside (a person, the store's endpoints, a device) is still checked and refused.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping

import pytest

from meshd.daemon.wireguard_sets import Keepalives, keepalives_later, set_chunks
from meshd.membership import Member, MemberState
from meshd.mesh.desired import DesiredMesh, Underlay, choose_endpoint, desired_peers
from meshd.mesh.paths import Path, with_paths
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg import model
from meshd.wg.errors import UapiError
from meshd.wg.model import (
    DeviceState,
    IPNetwork,
    PeerConfig,
    PeerStatus,
    RemovePeer,
    UpdatePeer,
    key_to_hex,
)
from meshd.wg.reconcile import plan
from meshd.wg.uapi_reply import parse_get_reply_untrusted
from tests.mesh.support import key, member

ME = NodeKey(key("me"))
MY_WG = WgKey(key("me", "wg"))
LAN = Underlay(networks=(ipaddress.ip_network("198.51.100.0/24"),))


def every_kind() -> tuple[list[Member], dict[WgKey, tuple[IPNetwork, ...]]]:
    """Members of every kind, and Babel's extra prefixes (a relay carrying two members)."""
    members = [member(i, endpoints=(f"192.0.2.{i}:51820",)) for i in range(1, 30)]
    members += [
        member("v6", endpoints=("[2001:DB8:0:0::7]:51820",)),  # not canonical as announced
        member("two", endpoints=("[2001:db8::8]:51820", "198.51.100.8:51820", "bad", "x:1")),
        member("lo", endpoints=("127.0.0.1:51820", "0.0.0.0:1")),
        member("silent", endpoints=None),
        member("none-usable", endpoints=("[fe80::1]:51820", "224.0.0.1:5")),
        member("revoked", state=MemberState.REVOKED),
        member("expired", state=MemberState.EXPIRED),
        member("first", wg="shared", admitted_at=100),
        member("second", wg="shared", admitted_at=200),  # shadowed
        member("thief", wg="me"),  # holds our own key: never programmed
        member("me"),
    ]
    relay, relayed, other = members[0], members[1], members[2]
    extra: dict[WgKey, tuple[IPNetwork, ...]] = {
        relay.wg_key: (
            ipaddress.IPv6Network(f"{relayed.overlay}/128"),
            ipaddress.IPv6Network("fd00:1:2:ff::/64"),
            ipaddress.IPv6Network(f"{other.overlay}/128"),
        )
    }
    return members, extra


def round_peers(
    members: list[Member],
    extra: dict[WgKey, tuple[IPNetwork, ...]],
    held: set[WgKey],
    previous: Mapping[WgKey, PeerConfig] | None = None,
) -> DesiredMesh:
    """The desired peers of one round on the LAN, as meshd.daemon.wireguard asks for them."""
    return desired_peers(
        members,
        own_node_key=ME,
        own_wg_key=MY_WG,
        underlay=LAN,
        extra_prefixes=extra,
        held=held,
        previous=previous,
    )


def start_round(
    members: list[Member], extra: dict[WgKey, tuple[IPNetwork, ...]], held: set[WgKey]
) -> DesiredMesh:
    desired = round_peers(members, extra, held)
    kept: dict[bytes, Path] = {
        members[3].wg_key: ("203.0.113.9:4500", 25, None)
    }  # an endpoint kept from before
    return with_paths(desired, kept, DeviceState(), 0.0)


def checked(peer: PeerConfig) -> PeerConfig:
    """``peer`` made again by the checking constructor (as the base commit made every peer)."""
    return PeerConfig(peer.public_key, peer.endpoint, peer.allowed_ips, peer.persistent_keepalive)


def same_fields(left: object, right: object) -> bool:
    """Equal field by field, including the order of allowed-ips and the types."""
    assert dataclasses.is_dataclass(left)
    assert dataclasses.is_dataclass(right)
    return type(left) is type(right) and all(
        getattr(left, f.name) == getattr(right, f.name)
        and type(getattr(left, f.name)) is type(getattr(right, f.name))
        for f in dataclasses.fields(left)
    )


@pytest.mark.parametrize("held", [False, True])
def test_desired_peers_are_what_the_checking_constructor_makes(held: bool) -> None:
    members, extra = every_kind()
    holds = {members[1].wg_key} if held else set()
    desired = start_round(members, extra, holds)
    names = {m.node_key: m.name for m in members}
    programmed = {names[node] for node in desired.members.values()}
    assert programmed >= {"1", "v6", "two", "lo", "silent", "first"}
    assert not programmed & {"revoked", "expired", "second", "thief", "me"}
    assert desired.members.keys() == desired.peers.keys()
    for key_, peer in desired.peers.items():
        assert key_ == peer.public_key
        assert same_fields(peer, checked(peer)), peer
    relay = desired.peers[members[0].wg_key]
    assert len(relay.allowed_ips) == (4 if held else 5)  # its own two, the /64, the relayed
    assert desired.peers[members[3].wg_key].endpoint == "203.0.113.9:4500"
    v6 = next(m for m in members if m.name == "v6")
    assert desired.peers[v6.wg_key].endpoint == "[2001:db8::7]:51820"


def test_the_first_rounds_operations_are_what_the_checking_constructors_make() -> None:
    members, extra = every_kind()
    desired = start_round(members, extra, set())
    gone = WgKey(key("gone", "wg"))
    device = DeviceState(
        peers=(
            PeerStatus(PeerConfig(gone)),
            # a peer the device has already, with another endpoint and no allowed-ips
            PeerStatus(PeerConfig(members[5].wg_key, "192.0.2.200:1")),
        )
    )
    ops = plan(desired.peers, device)
    assert isinstance(ops[0], RemovePeer)
    for op in ops:
        if isinstance(op, UpdatePeer):
            again = UpdatePeer(
                op.public_key,
                update_only=op.update_only,
                endpoint=op.endpoint,
                persistent_keepalive=op.persistent_keepalive,
                replace_allowed_ips=op.replace_allowed_ips,
                allowed_ips=op.allowed_ips,
            )
            assert same_fields(op, again), op
    noted = Keepalives()
    given = list(ops)
    later = keepalives_later(given, device, noted)
    assert later is given  # in place: each copy where the operation it replaces was
    left: list[tuple[bytes, int]] = []
    for before, after in zip(ops, later, strict=True):
        # Every peer's keepalive waits for the end of the round: those the round creates,
        # and one the device holds without a keepalive (as a start's kept peers are).
        if isinstance(before, UpdatePeer):
            expected = dataclasses.replace(before, persistent_keepalive=None)
            assert same_fields(after, expected)
            assert before.persistent_keepalive
            left.append((before.public_key, before.persistent_keepalive))
        else:
            assert after is before
    assert list(zip(noted.keys, noted.seconds, strict=True)) == left
    assert sum(map(len, set_chunks(later))) == len(ops)


def test_the_desired_peers_are_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each announced endpoint is parsed once, by choose_endpoint; the checking
    # constructors' own parse (37 us a peer with the allowed-ips' sort) is not run again.
    parsed: list[str] = []
    parse = model.parse_endpoint

    def counting(text: str) -> tuple[model.IPAddress, int]:
        parsed.append(text)
        return parse(text)

    monkeypatch.setattr(model, "parse_endpoint", counting)
    members, extra = every_kind()
    desired = desired_peers(members, own_node_key=ME, own_wg_key=MY_WG, extra_prefixes=extra)
    ops = keepalives_later(plan(desired.peers, DeviceState()), DeviceState(), Keepalives())
    assert len(ops) == len(desired.peers) > 30
    assert parsed == []


def test_values_from_outside_are_still_checked() -> None:
    with pytest.raises(ValueError, match="octets"):
        PeerConfig(MY_WG, "example.org:51820")
    with pytest.raises(ValueError, match="port"):
        UpdatePeer(MY_WG, endpoint="192.0.2.1:0")
    with pytest.raises(ValueError, match="not an ipaddress network"):
        PeerConfig(MY_WG, allowed_ips=("10.0.0.0/8",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        UpdatePeer(b"short")
    with pytest.raises(ValueError, match="keepalive"):
        PeerConfig(MY_WG, persistent_keepalive=70000)
    # The store's announced endpoints: what does not parse, or names no host, is skipped.
    assert choose_endpoint(["host:1", "[::1", "1.2.3.4:99999", "0.0.0.0:5"], Underlay()) is None
    # A device's reply: refused as a UapiError, never taken as a derived value.
    reply = f"public_key={key_to_hex(MY_WG)}\nendpoint=not-an-endpoint\nerrno=0\n\n"
    with pytest.raises(UapiError):
        parse_get_reply_untrusted(reply.encode())


def test_a_member_without_a_wireguard_key_is_refused_as_before() -> None:
    keyless = dataclasses.replace(member("keyless"), wg_key=WgKey(b""))
    with pytest.raises(ValueError, match="32 bytes"):
        desired_peers([keyless], own_node_key=ME, own_wg_key=MY_WG)


def test_a_wrong_keepalive_is_refused_as_before() -> None:
    with pytest.raises(ValueError, match="keepalive"):
        desired_peers([member("a")], own_node_key=ME, own_wg_key=MY_WG, keepalive=0)


def test_a_peer_its_path_leaves_as_it_is_is_not_made_again() -> None:
    members, extra = every_kind()
    desired = desired_peers(
        members, own_node_key=ME, own_wg_key=MY_WG, underlay=LAN, extra_prefixes=extra
    )
    same, moved = members[1].wg_key, members[2].wg_key
    paths: dict[bytes, Path] = {
        same: (desired.peers[same].endpoint, desired.peers[same].persistent_keepalive, None),
        moved: ("203.0.113.9:4500", 25, None),
    }
    after = with_paths(desired, paths, DeviceState(), 0.0)
    assert after.peers[same] is desired.peers[same]
    assert after.peers[moved].endpoint == "203.0.113.9:4500"
    assert after.peers[moved].persistent_keepalive == 25


def test_a_peer_its_path_moved_is_the_last_rounds_object_while_nothing_changes() -> None:
    members, extra = every_kind()
    moved = members[2].wg_key
    paths: dict[bytes, Path] = {moved: ("203.0.113.9:4500", 25, None)}
    previous: Mapping[WgKey, PeerConfig] | None = None

    def next_round() -> PeerConfig:
        """A reconcile round's peers (as meshd.daemon.wireguard makes them); the moved one."""
        nonlocal previous
        desired = round_peers(members, extra, set(), previous)
        previous = with_paths(desired, paths, DeviceState(), 0.0, previous).peers
        return previous[moved]

    rounds = [next_round() for _ in range(3)]
    assert rounds[0].endpoint == "203.0.113.9:4500"
    assert rounds[1] is rounds[0]
    assert rounds[2] is rounds[0]
    # The path moves on: a new peer, with the same allowed-ips.
    paths[moved] = ("203.0.113.9:4501", 25, None)
    again = next_round()
    assert again.endpoint == "203.0.113.9:4501"
    assert again is not rounds[0]
    assert again.allowed_ips == rounds[0].allowed_ips
