"""The Babel shell over real UDP on loopback: packets, timers, MACs, bad packets, routes."""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_network

import pytest
import trio
import trio.testing

from meshd.babel.auth import LinkAuth
from meshd.babel.core import BabelCore, CoreConfig
from meshd.babel.kernel_routes import KERNEL_METRIC, KernelRoute, _route_spec
from meshd.babel.mac import Endpoints, MacAlgorithm, MacKey
from meshd.babel.packet import Packet
from meshd.babel.ports import Datagram
from meshd.babel.prefix import IPAddress
from meshd.babel.shell import KERNEL_CHECK, READ_GAP, SETTLE, BabelShell
from meshd.babel.sources import RouteKey

LOOPBACK = IPv6Address("::1")
HELLO = 0.05
PREFIX = IPv6Network("fd00:1::/64")


class LoopbackPort:
    """A port whose every destination is one other socket on ::1 (the link's far end)."""

    def __init__(self, name: str, sock: trio.socket.SocketType, port: int) -> None:
        self.name = name
        self.port = port
        self.peer_port = 0
        self._sock = sock

    @classmethod
    async def open(cls, name: str) -> LoopbackPort:
        sock = trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        await sock.bind(("::1", 0))
        return cls(name, sock, sock.getsockname()[1])

    def endpoints_to(self, destination: IPAddress) -> Endpoints:
        return Endpoints(LOOPBACK, self.port, LOOPBACK, self.peer_port)

    async def send(self, payload: bytes, destination: IPAddress) -> None:
        await self._sock.sendto(payload, ("::1", self.peer_port))

    async def receive(self) -> Datagram:
        data, address = await self._sock.recvfrom(0xFFFF)
        return Datagram(self.name, data, Endpoints(LOOPBACK, address[1], LOOPBACK, self.port))

    def close(self) -> None:
        self._sock.close()


class RecordedRoutes:
    """A route sink that keeps what it was told."""

    def __init__(self) -> None:
        self.table: dict[RouteKey, KernelRoute] = {}
        self.calls = 0
        self.changed: Callable[[], None] = lambda: None

    async def install(self, route: KernelRoute) -> None:
        self.calls += 1
        self.table[(route.prefix, route.source)] = route

    async def remove(self, route: KernelRoute) -> None:
        self.calls += 1
        self.table.pop((route.prefix, route.source), None)

    async def held(self) -> set[RouteKey]:
        return set(self.table)

    async def watch(self, changed: Callable[[], None]) -> None:
        self.changed = changed
        await trio.sleep_forever()

    def lose_all(self) -> None:
        """What the kernel does when an interface goes down: every route through it gone,
        and a notification."""
        self.table.clear()
        self.changed()


def make_core(n: int) -> BabelCore:
    core = BabelCore(bytes([0, 0, 0, 0, 0, 0, 0, n]), CoreConfig())
    core.add_interface("lo-test", kind="wired", hello_interval=HELLO)
    return core


@asynccontextmanager
async def link(
    *,
    keys: tuple[Sequence[MacKey], Sequence[MacKey]] = ((), ()),
) -> AsyncIterator[tuple[BabelShell, BabelShell, RecordedRoutes, RecordedRoutes]]:
    """Two shells joined by a loopback link, running until the block ends."""
    port_a, port_b = await LoopbackPort.open("lo-test"), await LoopbackPort.open("lo-test")
    port_a.peer_port, port_b.peer_port = port_b.port, port_a.port
    routes_a, routes_b = RecordedRoutes(), RecordedRoutes()
    shells = []
    for n, port, routes, key_set in (
        (1, port_a, routes_a, keys[0]),
        (2, port_b, routes_b, keys[1]),
    ):
        auth = {"lo-test": LinkAuth(key_set)} if key_set else {}
        shells.append(BabelShell(make_core(n), [port], routes=routes, auth=auth))
    async with trio.open_nursery() as nursery:
        for shell in shells:
            await nursery.start(shell.run)
        yield shells[0], shells[1], routes_a, routes_b
        nursery.cancel_scope.cancel()


async def wait_for(condition: Callable[[], bool], limit: float = 3.0) -> bool:
    with trio.move_on_after(limit):
        while not condition():  # noqa: ASYNC110 (polling the shells' state is the point)
            await trio.sleep(0.01)
        return True
    return False


def test_routes_flow_over_the_link_and_are_installed_then_removed() -> None:
    trio.run(_test_routes_flow_over_the_link_and_are_installed_then_removed)


async def _test_routes_flow_over_the_link_and_are_installed_then_removed() -> None:
    async with link() as (a, b, _, routes_b):
        a.submit(lambda core, now: core.originate(PREFIX))
        assert await wait_for(lambda: (PREFIX, None) in routes_b.table)
        route = routes_b.table[(PREFIX, None)]
        assert route.next_hop == LOOPBACK
        assert route.interface == "lo-test"
        assert b.installed(PREFIX, None)
        a.submit(lambda core, now: core.withdraw(PREFIX))
        assert await wait_for(lambda: (PREFIX, None) not in routes_b.table)


def test_routes_are_removed_from_the_kernel_when_the_shell_stops() -> None:
    trio.run(_test_routes_are_removed_from_the_kernel_when_the_shell_stops)


async def _test_routes_are_removed_from_the_kernel_when_the_shell_stops() -> None:
    async with link() as (a, _, _, routes_b):
        a.submit(lambda core, now: core.originate(PREFIX))
        assert await wait_for(lambda: bool(routes_b.table))
    assert routes_b.table == {}


def test_a_shell_that_stops_says_goodbye_and_its_routes_leave_the_neighbour() -> None:
    trio.run(_test_a_shell_that_stops_says_goodbye_and_its_routes_leave_the_neighbour)


async def _test_a_shell_that_stops_says_goodbye_and_its_routes_leave_the_neighbour() -> None:
    """Hello 1 s (update 4 s: the neighbour would hold the route 14 s): once a stops, b
    drops its route within half a second, MAC-sealed like every other datagram."""
    key = (MacKey("k1", MacAlgorithm.HMAC_SHA256, b"\x42" * 32),)
    port_a, port_b = await LoopbackPort.open("lo-test"), await LoopbackPort.open("lo-test")
    port_a.peer_port, port_b.peer_port = port_b.port, port_a.port
    routes_b = RecordedRoutes()
    shells = []
    for n, port, routes in ((1, port_a, RecordedRoutes()), (2, port_b, routes_b)):
        core = BabelCore(bytes([0, 0, 0, 0, 0, 0, 0, n]), CoreConfig())
        core.add_interface("lo-test", kind="wired", hello_interval=1.0)
        shells.append(BabelShell(core, [port], routes=routes, auth={"lo-test": LinkAuth(key)}))
    a, b = shells
    async with trio.open_nursery() as nursery:
        await nursery.start(b.run)
        async with trio.open_nursery() as only_a:
            await only_a.start(a.run)
            a.submit(lambda core, now: core.originate(PREFIX))
            assert await wait_for(lambda: (PREFIX, None) in routes_b.table, 10.0)
            only_a.cancel_scope.cancel()
        # a's task has ended: its farewell went as it did
        assert await wait_for(lambda: (PREFIX, None) not in routes_b.table, 0.5)
        assert b.counters.bad_mac == 0
        nursery.cancel_scope.cancel()


def test_routes_the_kernel_dropped_are_installed_again() -> None:
    trio.run(_test_routes_the_kernel_dropped_are_installed_again)


async def _test_routes_the_kernel_dropped_are_installed_again() -> None:
    """An interface down for a moment: the kernel drops every route through it and says
    so. The shell reads what it still holds and installs the rest again (before, it took
    them for installed until the route next changed)."""
    async with link() as (a, _, _, routes_b):
        a.submit(lambda core, now: core.originate(PREFIX))
        assert await wait_for(lambda: (PREFIX, None) in routes_b.table)
        routes_b.lose_all()
        assert await wait_for(lambda: (PREFIX, None) in routes_b.table, 1.0)


class CountedReads(RecordedRoutes):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[float] = []

    async def held(self) -> set[RouteKey]:
        self.reads.append(trio.current_time())
        return await super().held()


def test_what_the_kernel_holds_is_read_soon_after_it_speaks_and_not_more_often() -> None:
    """A notification: the kernel's routes are read SETTLE s later. A flood of them (our
    own removals at a busy time, say): at most one read every READ_GAP s. None: one every
    KERNEL_CHECK s."""
    sink = CountedReads()

    async def main() -> None:
        shell = BabelShell(make_core(1), [], routes=sink)
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.run)
            await trio.sleep(1.0)
            sink.changed()
            await trio.sleep(1.0)
            assert sink.reads == [1.0 + SETTLE]
            for _ in range(200):  # 20 s of notifications, every 0.1 s
                sink.changed()
                await trio.sleep(0.1)
            reads = [t for t in sink.reads if t > 2.0]
            assert len(reads) <= 20 / READ_GAP + 1
            assert all(b - a >= READ_GAP - 1e-9 for a, b in itertools.pairwise(sink.reads))
            before = len(sink.reads)
            await trio.sleep(KERNEL_CHECK + 1)  # nothing said: the periodic read
            assert len(sink.reads) == before + 1
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_malformed_datagrams_are_counted_and_survived() -> None:
    trio.run(_test_malformed_datagrams_are_counted_and_survived)


async def _test_malformed_datagrams_are_counted_and_survived() -> None:
    async with link() as (a, b, _, routes_b):
        port_b = next(iter(b.ports.values()))
        assert isinstance(port_b, LoopbackPort)
        with trio.socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as junk:
            for payload in (b"", b"\x2a", b"\x2a\x02\xff\xff", b"\x00" * 40):
                await junk.sendto(payload, ("::1", port_b.port))
        a.submit(lambda core, now: core.originate(PREFIX))
        assert await wait_for(lambda: (PREFIX, None) in routes_b.table)
        assert b.counters.decode_errors == 4


KEY = MacKey("k1", MacAlgorithm.HMAC_SHA256, bytes(range(32)))
OTHER = MacKey("k2", MacAlgorithm.BLAKE2S_128, b"another secret")


def test_with_the_same_key_routes_flow() -> None:
    trio.run(_test_with_the_same_key_routes_flow)


async def _test_with_the_same_key_routes_flow() -> None:
    async with link(keys=([KEY], [KEY])) as link_:
        a, b, _, routes_b = link_
        a.submit(lambda core, now: core.originate(PREFIX))
        assert await wait_for(lambda: (PREFIX, None) in routes_b.table)
        assert b.counters.bad_mac == 0


def test_with_mismatched_keys_nothing_is_accepted() -> None:
    trio.run(_test_with_mismatched_keys_nothing_is_accepted)


async def _test_with_mismatched_keys_nothing_is_accepted() -> None:
    async with link(keys=([KEY], [OTHER])) as link_:
        a, b, routes_a, routes_b = link_
        a.submit(lambda core, now: core.originate(PREFIX))
        b.submit(lambda core, now: core.originate(IPv6Network("fd00:2::/64")))
        await trio.sleep(10 * HELLO)
        assert routes_a.table == {}
        assert routes_b.table == {}
        assert a.counters.bad_mac > 0
        assert b.counters.bad_mac > 0
        assert b.core.neighbours() == []


def test_unauthenticated_packets_are_refused_on_a_keyed_link() -> None:
    trio.run(_test_unauthenticated_packets_are_refused_on_a_keyed_link)


async def _test_unauthenticated_packets_are_refused_on_a_keyed_link() -> None:
    async with link(keys=((), [KEY])) as link_:
        a, b, _, routes_b = link_
        a.submit(lambda core, now: core.originate(PREFIX))
        await trio.sleep(10 * HELLO)
        assert routes_b.table == {}
        assert b.counters.bad_mac > 0


# --- RFC 8967 counters and challenges, without sockets -------------------------------------

ENDS = Endpoints(IPv6Address("fe80::1"), 6696, IPv6Address("ff02::1:6"), 6696)
BACK = Endpoints(IPv6Address("fe80::2"), 6696, IPv6Address("fe80::1"), 6696)


def nonces() -> Callable[[], bytes]:
    counter = iter(range(1, 1000))
    return lambda: next(counter).to_bytes(16, "big")


def test_an_unknown_index_is_challenged_and_the_reply_admits_it() -> None:
    sender = LinkAuth([KEY], nonce=nonces(), index=b"AAAA")
    receiver = LinkAuth([KEY], nonce=nonces(), index=b"BBBB")
    first = receiver.open_untrusted(sender.seal(b"\x2a\x02\x00\x00", ENDS), ENDS, 0.0)
    assert first.packet is None
    assert first.dropped == "unknown-index"
    (challenge,) = first.reply
    # The sender answers with a reply, in a packet with its counter.
    answer = sender.open_untrusted(receiver.seal(Packet(first.reply), BACK), BACK, 0.1)
    assert answer.packet is None  # the receiver's index is unknown to the sender, too
    reply = sender.seal(Packet(answer.reply[:1]), ENDS)
    accepted = receiver.open_untrusted(reply, ENDS, 0.2)
    assert accepted.packet is not None
    assert challenge is not None
    later = receiver.open_untrusted(sender.seal(b"\x2a\x02\x00\x00", ENDS), ENDS, 0.3)
    assert later.packet is not None


def test_a_replayed_packet_is_dropped() -> None:
    sender = LinkAuth([KEY], nonce=nonces(), index=b"AAAA")
    receiver = LinkAuth([KEY], nonce=nonces(), index=b"BBBB")
    challenge = receiver.open_untrusted(sender.seal(b"\x2a\x02\x00\x00", ENDS), ENDS, 0.0)
    request = sender.open_untrusted(receiver.seal(Packet(challenge.reply), BACK), BACK, 0.0)
    good = sender.seal(Packet(request.reply[:1]), ENDS)
    assert receiver.open_untrusted(good, ENDS, 0.1).packet is not None
    again = receiver.open_untrusted(good, ENDS, 0.2)
    assert again.packet is None
    assert again.dropped == "replay"


# --- kernel route specifications ------------------------------------------------------------


def test_route_specs_for_the_kernel() -> None:
    v6 = KernelRoute(
        ip_network("fd00:99::/64"), ip_network("fd00:aa::/48"), "e0", IPv6Address("fe80::2")
    )
    spec = _route_spec(v6, oif=None)  # a removal: no next hop nor interface
    assert (spec.dst, spec.dst_len) == (IPv6Address("fd00:99::"), 64)
    assert (spec.src, spec.src_len) == (IPv6Address("fd00:aa::"), 48)
    assert (spec.family, spec.protocol, spec.priority) == (socket.AF_INET6, 42, KERNEL_METRIC)
    assert (spec.oif, spec.gateway, spec.via) == (None, None, None)
    assert KERNEL_METRIC > 1024  # the default priority of other IPv6 routes wins over ours
    hop = _route_spec(v6, oif=3)
    assert (hop.oif, hop.gateway, hop.via) == (3, IPv6Address("fe80::2"), None)
    via_v6 = KernelRoute(ip_network("10.0.0.0/24"), None, "e0", IPv6Address("fe80::2"))
    hop = _route_spec(via_v6, oif=3)
    assert (hop.family, hop.gateway, hop.via) == (socket.AF_INET, None, IPv6Address("fe80::2"))
    v4 = KernelRoute(ip_network("10.0.0.0/24"), None, "e0", IPv4Address("10.1.0.2"))
    assert _route_spec(v4, oif=3).gateway == IPv4Address("10.1.0.2")
    device = KernelRoute(ip_network("fd00::/64"), None, "wg0", None)
    hop = _route_spec(device, oif=4)
    assert (hop.oif, hop.gateway, hop.via) == (4, None, None)


@pytest.mark.parametrize("text", ["k:hmac-sha256:00ff", "k:blake2s128:" + "11" * 32])
def test_keys_parse(text: str) -> None:
    from meshd.babel.options import parse_key

    assert parse_key(text).key_id == "k"


def test_a_key_rollover_on_both_ends_loses_nothing() -> None:
    """RFC 8967 key rollover on a running link (a SIGHUP's new ``babel_key``,
    :meth:`BabelShell.set_keys`): both ends add the new key, then drop the old one, one
    end after the other; the neighbour and its route stay throughout, no datagram is
    refused, and neither end is challenged again (its counter and index are kept)."""
    trio.run(_test_a_key_rollover_on_both_ends_loses_nothing)


async def _test_a_key_rollover_on_both_ends_loses_nothing() -> None:
    async with link(keys=([KEY], [KEY])) as link_:
        a, b, _, routes_b = link_
        a.submit(lambda core, now: core.originate(PREFIX))
        assert await wait_for(lambda: (PREFIX, None) in routes_b.table)
        index = a.auth["lo-test"].index
        for shell, keys in ((a, [KEY, OTHER]), (b, [KEY, OTHER]), (a, [OTHER]), (b, [OTHER])):
            shell.set_keys("lo-test", keys)
            for _ in range(4):
                await trio.sleep(HELLO)
                assert (PREFIX, None) in routes_b.table
                assert len(b.core.neighbours()) == 1
        assert a.counters.bad_mac == b.counters.bad_mac == 0
        assert a.auth["lo-test"].index == index
        assert a.auth["lo-test"].keys == b.auth["lo-test"].keys == (OTHER,)
        # And a key the other end does not have: nothing of its is taken any more.
        b.set_keys("lo-test", [KEY])
        await trio.sleep(4 * HELLO)
        assert b.counters.bad_mac > 0


def test_keys_given_to_an_open_link_authenticate_it_and_none_open_it_again() -> None:
    trio.run(_test_keys_given_to_an_open_link_authenticate_it_and_none_open_it_again)


async def _test_keys_given_to_an_open_link_authenticate_it_and_none_open_it_again() -> None:
    async with link() as link_:
        a, b, _, routes_b = link_
        a.submit(lambda core, now: core.originate(PREFIX))
        assert await wait_for(lambda: (PREFIX, None) in routes_b.table)
        b.set_keys("lo-test", [KEY])  # only b: a's datagrams carry no MAC, refused
        await trio.sleep(4 * HELLO)
        refused = b.counters.bad_mac
        assert refused > 0
        a.set_keys("lo-test", [KEY])  # both: taken again
        await trio.sleep(2 * HELLO)
        settled = b.counters.bad_mac
        await trio.sleep(4 * HELLO)
        assert b.counters.bad_mac == settled
        assert (PREFIX, None) in routes_b.table
        a.set_keys("lo-test", [])
        b.set_keys("lo-test", [])
        assert a.auth == b.auth == {}
        await trio.sleep(4 * HELLO)
        assert b.counters.bad_mac == settled
        assert (PREFIX, None) in routes_b.table
