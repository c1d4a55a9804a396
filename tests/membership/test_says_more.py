"""Whether a newer announcement says more than the member's current one (tables.says_more):
its bytes after the date compared first, the same answer as its fields compared."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from meshd.membership.tables import says_more
from meshd.records import Announcement, make_announcement
from meshd.records.body import said_of
from meshd.trust.keys import SigningKey

KEY = SigningKey(bytes(range(32)))
NETWORK = bytes(16)

ENDPOINTS = st.lists(
    st.sampled_from(["192.0.2.1:51820", "198.51.100.7:1", "[2001:db8::1]:51820"]),
    max_size=2,
    unique=True,
)
ADDRS = st.lists(
    st.sampled_from(["/ip4/192.0.2.1/tcp/7100", "/ip6/2001:db8::1/tcp/7100"]),
    max_size=2,
    unique=True,
)
PREFIXES = st.lists(
    st.sampled_from([ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("2001:db8:5::/48")]),
    max_size=2,
    unique=True,
)
SAID = st.tuples(ENDPOINTS, ADDRS, PREFIXES, st.booleans())
DATES = st.sampled_from([0, 1, 127, 128, 255, 65_535, 65_536, 2**32 - 1, 2**32, 2**63])


Said = tuple[list[str], list[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network], bool]


def announcement(seq: int, at: int, said: Said) -> Announcement:
    endpoints, addrs, prefixes, relays = said
    return make_announcement(
        KEY,
        network_id=NETWORK,
        seq=seq,
        issued_at=at,
        endpoints=endpoints,
        addrs=addrs,
        prefixes=prefixes,
        relays=relays,
    )


def fields_differ(current: Announcement, newer: Announcement) -> bool:
    return (
        newer.endpoints != current.endpoints
        or newer.addrs != current.addrs
        or newer.prefixes != current.prefixes
        or newer.relays != current.relays
    )


@settings(max_examples=300, deadline=None)
@given(DATES, DATES, DATES, DATES, SAID, SAID)
def test_says_more_is_the_fields_compared(
    seq1: int,
    at1: int,
    seq2: int,
    at2: int,
    said1: Said,
    said2: Said,
) -> None:
    current = announcement(seq1, at1, said1)
    newer = announcement(seq2, at2, said2)
    assert says_more(current, newer) is fields_differ(current, newer)
    # Equal bytes after the date exactly when they say the same (the encoding is canonical).
    assert (said_of(current.raw) == said_of(newer.raw)) is (said1 == said2)


def test_an_announcement_without_bytes_is_compared_by_its_fields() -> None:
    made = announcement(1, 1, (["192.0.2.1:51820"], [], [], False))
    bare = Announcement(NETWORK, made.node_key, 2, 2, ("192.0.2.1:51820",), (), (), b"")
    assert not says_more(made, bare)
    other = Announcement(NETWORK, made.node_key, 2, 2, ("192.0.2.9:51820",), (), (), b"")
    assert says_more(made, other)
