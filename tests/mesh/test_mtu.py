"""The WireGuard MTU derived from the underlay when ``--mtu`` is not given (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshd.mesh.mtu import CEILING, FLOOR, derive_mtu


def test_a_1500_byte_default_route_gives_the_kernels_1420() -> None:
    d = derive_mtu({"lo": 65536, "eth0": 1500}, {"eth0"}, {"eth0"}, exclude=("lo",))
    assert (d.mtu, d.too_small) == (1420, False)
    assert d.why == "eth0's 1500 (default route) less 80"


def test_behind_pppoe_the_tunnel_is_smaller() -> None:
    d = derive_mtu({"ppp0": 1492, "eth0": 1500}, {"ppp0"}, {"ppp0", "eth0"})
    assert d.mtu == 1412


def test_the_smallest_of_several_default_routes() -> None:
    """Members may be reached through either (an IPv6 default over a tunnel, say)."""
    d = derive_mtu({"eth0": 1500, "he-ipv6": 1480}, {"eth0", "he-ipv6"}, {"eth0"})
    assert (d.mtu, d.why) == (1400, "he-ipv6's 1480 (default route) less 80")


def test_without_a_default_route_the_interfaces_with_an_address_say() -> None:
    d = derive_mtu({"lo": 65536, "veth0": 1450, "meshd0": 1420}, (), {"veth0", "meshd0", "lo"},
                   exclude=("meshd0", "lo"))  # fmt: skip
    assert (d.mtu, d.why) == (1370, "veth0's 1450 (underlay) less 80")


def test_nothing_known_assumes_1500() -> None:
    d = derive_mtu({}, (), ())
    assert d.mtu == 1420
    assert "1500 assumed" in d.why
    # A route through an interface that is gone, our own interface: as if none.
    assert derive_mtu({"meshd0": 1280}, {"eth9", "meshd0"}, (), exclude=("meshd0",)).mtu == 1420


def test_jumbo_frames_stay_at_1420_and_a_tiny_underlay_at_ipv6s_minimum() -> None:
    jumbo = derive_mtu({"eth0": 9000}, {"eth0"}, ())
    assert (jumbo.mtu, jumbo.too_small) == (1420, False)
    assert jumbo.why.endswith("at most 1420")
    tiny = derive_mtu({"wwan0": 1300}, {"wwan0"}, ())
    assert (tiny.mtu, tiny.too_small) == (1280, True)


@given(
    st.dictionaries(st.sampled_from(["a", "b", "c", "lo"]), st.integers(0, 70000)),
    st.sets(st.sampled_from(["a", "b", "x"])),
    st.sets(st.sampled_from(["a", "c", "lo"])),
)
def test_always_an_mtu_ipv6_and_a_1500_byte_path_carry(
    links: dict[str, int], defaults: set[str], addressed: set[str]
) -> None:
    d = derive_mtu(links, defaults, addressed, exclude=("lo",))
    assert FLOOR <= d.mtu <= CEILING
    assert d.too_small == (d.mtu == FLOOR and "at least" in d.why)
