"""Dialling a multiaddr that names its host: looked up at each dial, then dialled (loopback)."""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio

from meshd.gossip.dial_order import ON_LINK_TIMEOUT
from meshd.gossip.dialling import MAX_LOOKUPS
from meshd.gossip.host import GossipHost, TransportError, UndialableAddress, peer_id_of
from tests.gossip.support import config, run_trio, running_hosts, wait_until


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_of(host: GossipHost) -> int:
    return int(host.listen_addrs()[0].split("/")[4])


@contextmanager
def silent_at(port: int) -> Iterator[socket.socket]:
    """A listener on 127.0.0.3 and ``port`` (a member's port on another address) that never
    accepts: the kernel completes the TCP handshake and nothing ever answers. Non-blocking,
    so that a test can ask whether anyone dialled it (``accept`` raises if nobody did)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.3", port))
        silent.listen(16)
        silent.setblocking(False)
        yield silent


class Resolver:
    """A resolver whose answers the test sets (name -> IPv4 addresses, or an exception), run
    in the worker threads of the host's lookups as the host's resolver is."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str] | BaseException] = {}
        self.asked: list[tuple[str, int]] = []

    def __call__(self, name: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.asked.append((name, kwargs["family"]))
        answer = self.answers.get(name, socket.gaierror(socket.EAI_NONAME, "Name unknown"))
        if isinstance(answer, BaseException):
            raise answer
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in answer]


def test_a_named_address_is_looked_up_by_the_hosts_resolver_and_dialled() -> None:
    async def body() -> None:
        async with running_hosts(config(), config()) as (ours, member):
            port = _port_of(member)
            # localhost: /etc/hosts; /dns also gives ::1, where nothing listens (tried too).
            for protocol in ("dns4", "dns"):
                addr = f"/{protocol}/localhost/tcp/{port}/p2p/{member.peer_id}"
                assert await ours.connect(addr) == member.peer_id
                await ours.disconnect(member.peer_id)
            results = await ours.connect_any([f"/dns4/localhost/tcp/{port}/p2p/{member.peer_id}"])
            assert [r.ok for r in results] == [True]

    run_trio(body)


def test_the_name_is_looked_up_at_each_dial_so_a_moved_member_is_found() -> None:
    # The name still points at the member's old address (nothing answers there) at the
    # first dial; once its record follows the member, the next dial finds it.
    async def body() -> None:
        async with running_hosts(config(), config()) as (ours, member):
            resolver = Resolver()
            ours.lookups.lookup = resolver
            addr = f"/dns4/mesh.example.org/tcp/{_port_of(member)}/p2p/{member.peer_id}"
            resolver.answers["mesh.example.org"] = ["127.0.0.2"]
            with pytest.raises(
                TransportError, match=re.escape("mesh.example.org resolved to 1 address")
            ):
                await ours.connect(addr)
            # Moved: one dead address and the live one, both dialled at once.
            resolver.answers["mesh.example.org"] = ["127.0.0.2", "127.0.0.1"]
            assert await ours.connect(addr) == member.peer_id
            assert resolver.asked == [("mesh.example.org", socket.AF_INET)] * 2

    run_trio(body)


def test_a_name_whose_first_address_never_answers_connects_at_the_next() -> None:
    # The name's first address takes the connection and never speaks (a firewall that lets
    # the handshake in and nothing after, a peer that hangs): once its dial times out, the
    # member at the second is connected. Dialled together, the second waited for the first
    # (py-libp2p dials one address of a peer at a time) and both timed out.
    async def body() -> None:
        async with running_hosts(config(dial_timeout=1.0), config()) as (ours, member):
            port = _port_of(member)
            resolver = Resolver()
            ours.lookups.lookup = resolver
            with silent_at(port):
                resolver.answers["h.example"] = ["127.0.0.3", "127.0.0.1"]
                started = time.monotonic()
                addr = f"/dns4/h.example/tcp/{port}/p2p/{member.peer_id}"
                assert await ours.connect(addr) == member.peer_id
                took = time.monotonic() - started
            print(f"connected at the second address in {took:.2f} s (dial timeout 1 s)")
            assert 1.0 <= took < 4.0

    run_trio(body)


def test_one_address_of_a_member_that_never_answers_does_not_fail_its_others() -> None:
    # A member's first address drops what it gets after the TCP handshake (or the public
    # address of an inviter behind a NAT that does not hairpin): its dial times out, and
    # the second is dialled then and connects. Dialled together, they usually both failed
    # (py-libp2p dials one address of a peer at a time, each dial within its own timeout).
    async def body() -> None:
        async with running_hosts(config(dial_timeout=1.0), config(), config()) as hosts:
            ours, member, other = hosts
            port = _port_of(member)
            with silent_at(port):
                addrs = [
                    f"/ip4/127.0.0.3/tcp/{port}/p2p/{member.peer_id}",
                    f"/ip4/127.0.0.1/tcp/{port}/p2p/{member.peer_id}",
                    f"/ip4/127.0.0.4/tcp/{port}/p2p/{member.peer_id}",  # not needed
                    other.listen_addrs()[0],  # another peer: at once, beside them
                ]
                started = time.monotonic()
                results = await ours.connect_any(addrs)
                took = time.monotonic() - started
            assert [r.ok for r in results] == [False, True, True, True]
            assert "took longer than 1.0 s" in str(results[0].error)
            assert [r.peer_id for r in results[1:]] == [member.peer_id] * 2 + [other.peer_id]
            assert member.peer_id in ours.connected_peers()
            assert 1.0 <= took < 4.0

    run_trio(body)


def test_a_name_that_cannot_be_looked_up_fails_the_dial_saying_so_within_its_time() -> None:
    async def body() -> None:
        async with running_hosts(config(dial_timeout=1.0)) as (ours,):
            resolver = Resolver()
            ours.lookups.lookup = resolver
            peer = peer_id_of(bytes(32))
            with pytest.raises(
                TransportError, match=re.escape("looking up gone.example failed: Name unknown")
            ):
                await ours.connect(f"/dns/gone.example/tcp/7100/p2p/{peer}")
            assert resolver.asked == [("gone.example", socket.AF_UNSPEC)]
            resolver.answers["v4.example"] = ["192.0.2.1"]
            with pytest.raises(TransportError, match=re.escape("v4.example has no IPv6 address")):
                await ours.connect(f"/dns6/v4.example/tcp/7100/p2p/{peer}")

            hung = threading.Event()

            def never(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
                hung.wait(10)
                return []

            ours.lookups.lookup = never
            started = time.monotonic()
            with pytest.raises(TransportError, match=re.escape("took longer than 1.0 s")):
                await ours.connect(f"/dns4/slow.example/tcp/7100/p2p/{peer}")
            assert time.monotonic() - started < 3.0
            hung.set()
            with pytest.raises(UndialableAddress, match="not a host name"):
                await ours.connect(f"/dns4/bad_name/tcp/7100/p2p/{peer}")

    run_trio(body)


def test_lookups_that_never_end_hold_a_few_threads_not_the_daemons_others() -> None:
    # A resolver that never answers keeps each lookup's thread until its own timeout, also
    # after the dial gave up; a node that dials 16 named bootstrap addresses every few
    # seconds held trio's default worker threads (40), which the store's fsync waits for.
    hung = threading.Event()
    entered: list[str] = []

    def never(name: str, port: int, **kwargs: Any) -> list[tuple[Any, ...]]:
        entered.append(name)
        hung.wait(20)
        return []

    async def body() -> None:
        async with running_hosts(config(dial_timeout=0.5)) as (ours,):
            ours.lookups.lookup = never
            named = [
                f"/dns4/h{i}.example/tcp/7100/p2p/{peer_id_of(bytes([i]) * 32)}"
                for i in range(3 * MAX_LOOKUPS)
            ]  # twelve members, dialled at once
            for _ in range(4):  # four rounds of redials, each given up
                results = await ours.connect_any(named)
                assert not any(r.ok for r in results)
                assert {"took longer" in str(r.error) for r in results} == {True}
            assert ours.lookups.under_way == MAX_LOOKUPS  # abandoned, still looking
            assert len(entered) == MAX_LOOKUPS
            # The daemon's own worker threads are there at once.
            with trio.fail_after(1.0):
                assert await trio.to_thread.run_sync(lambda: "fsynced") == "fsynced"
            hung.set()
            await wait_until(lambda: ours.lookups.under_way == 0)

    try:
        run_trio(body)
    finally:
        hung.set()


def test_a_members_address_on_our_own_network_is_dialled_before_its_others() -> None:
    # The inviter's public address first (here 127.0.0.3, which never answers: a NAT that
    # does not hairpin), its LAN address second (127.0.0.1, on a network of ours): the LAN
    # one is dialled first and the public one never, where before its whole timeout went.
    async def body() -> None:
        async with running_hosts(config(dial_timeout=3.0), config()) as (ours, member):
            port = _port_of(member)
            with silent_at(port) as silent:
                addrs = [
                    f"/ip4/127.0.0.3/tcp/{port}/p2p/{member.peer_id}",
                    f"/ip4/127.0.0.1/tcp/{port}/p2p/{member.peer_id}",
                ]
                started = time.monotonic()
                results = await ours.connect_any(addrs, [ipaddress.ip_network("127.0.0.1/32")])
                took = time.monotonic() - started
                with pytest.raises(BlockingIOError):
                    silent.accept()  # never dialled
            print(f"connected in {took:.2f} s (dial timeout 3 s)")
            assert [r.ok for r in results] == [True, True]
            assert member.peer_id in ours.connected_peers()

    run_trio(body)


def test_an_address_on_our_network_that_never_answers_holds_the_others_up_briefly() -> None:
    # The same private range at another site: the member's LAN address names nobody here.
    async def body() -> None:
        async with running_hosts(config(dial_timeout=4.0), config()) as (ours, member):
            port = _port_of(member)
            with silent_at(port):
                addrs = [
                    f"/ip4/127.0.0.1/tcp/{port}/p2p/{member.peer_id}",
                    f"/ip4/127.0.0.3/tcp/{port}/p2p/{member.peer_id}",
                ]
                started = time.monotonic()
                results = await ours.connect_any(addrs, [ipaddress.ip_network("127.0.0.3/32")])
                took = time.monotonic() - started
            print(f"connected in {took:.2f} s (on-link try {ON_LINK_TIMEOUT} s, dial timeout 4 s)")
            assert [r.ok for r in results] == [True, False]
            assert f"took longer than {ON_LINK_TIMEOUT} s" in str(results[1].error)
            assert ON_LINK_TIMEOUT <= took < 4.0

    run_trio(body)
