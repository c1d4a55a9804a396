"""Announcing anew after an outage: members that found no route to us meanwhile park their
requests to the relays (meshd.daemon.babel_wants) and ask again when they hear a new
announcement from us. Back after RENEW_AFTER seconds cut off from every member, or after
this host slept (the wall clock ran ahead of the monotonic one), we announce at once; a
short gap, or none, announces nothing."""

from __future__ import annotations

import ipaddress

import pytest
import trio
import trio.testing

from meshd.daemon import announcer as announcer_module
from meshd.daemon.announce_policy import RENEW_AFTER, SLEPT, AnnouncePolicy, next_seq
from meshd.daemon.config import DaemonConfig
from meshd.daemon.connect_policy import Peer, Standing
from meshd.mesh.underlay import LocalAddress
from meshd.node.statedir import NodeDir, now
from meshd.records import Announcement, decode_untrusted
from tests.daemon.fake_transport import FakeTransport
from tests.daemon.fakes import (
    TTL,
    announcer_of,
    certify,
    fake_now,
    run_on_fake_clock,
    running,
)

HERE = (("192.0.2.1:51820",), ("/ip4/192.0.2.1/tcp/7100",))


def test_a_renewal_is_due_at_the_next_look_and_only_once() -> None:
    policy = AnnouncePolicy(interval=7200.0, check=5.0)
    policy.announced(0.0, HERE)
    assert not policy.due(100.0, HERE)
    policy.renew()
    assert policy.due(100.0, HERE)
    policy.announced(100.0, HERE)
    assert not policy.due(101.0, HERE)


def test_a_host_that_slept_renews_and_one_that_ran_does_not() -> None:
    policy = AnnouncePolicy(interval=7200.0, check=5.0)
    policy.looked(10.0, 1_000_000.0)
    policy.announced(10.0, HERE)
    for step in range(1, 100):  # awake: both clocks move alike, NTP's small steps aside
        policy.looked(10.0 + 5 * step, 1_000_000.0 + 5 * step + (1.0 if step == 50 else 0.0))
        assert not policy.due(10.0 + 5 * step, HERE)
    # Asleep for an hour: the monotonic clock stood still, the wall clock did not.
    policy.looked(505.0, 1_000_000.0 + 500.0 + 3600.0)
    assert policy.due(505.0, HERE)
    policy.announced(505.0, HERE)
    policy.looked(510.0, 1_000_000.0 + 505.0 + 3600.0)
    assert not policy.due(510.0, HERE)
    # Just under the threshold: a clock step, not a sleep.
    policy.looked(515.0, 1_000_000.0 + 510.0 + 3600.0 + SLEPT - 1.0)
    assert not policy.due(515.0, HERE)


async def _host() -> list[LocalAddress]:
    return [LocalAddress("eth0", ipaddress.ip_interface("192.0.2.1/24"))]


def sent(transport: FakeTransport) -> list[Announcement]:
    return [decode_untrusted(raw, Announcement) for raw in transport.published]


def test_the_announcer_announces_anew_at_once_when_renewed(
    node: NodeDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(announcer_module, "local_addresses", _host)
    base = now()
    config = DaemonConfig(
        state_dir=node.paths.root, wg_backend="none", announce_interval=100.0, announce_ttl=TTL
    )
    clock = trio.testing.MockClock()

    async def main() -> None:
        state, transport, announcer = announcer_of(node, base, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(state.feed.run)
            await nursery.start(announcer.run)
            await transport.first_published()
            clock.jump(30.0)
            await trio.testing.wait_all_tasks_blocked()
            assert len(transport.published) == 1  # nothing changed: nothing new
            announcer.renew()
            await trio.testing.wait_all_tasks_blocked()
            first, again = sent(transport)
            assert trio.current_time() == 30.0  # at once, not at the next look
            assert again.seq > first.seq
            assert again.endpoints == first.endpoints
            clock.jump(30.0)
            await trio.testing.wait_all_tasks_blocked()
            assert len(transport.published) == 2  # once
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock)


def test_back_after_a_long_isolation_renews_and_after_a_short_one_does_not(
    node: NodeDir,
) -> None:
    base = now()

    async def main() -> None:
        async with running(node, base) as (daemon, transport, _backend):
            other = certify(node, fake_now(base), "other")
            assert transport.deliver(other.cert.raw, "author", "neighbour")
            await trio.testing.wait_all_tasks_blocked()
            connections = daemon.connections
            renewed: list[float] = []
            connections.on_back = lambda: renewed.append(trio.current_time())
            members = daemon.state.members()
            member = Peer("peer", Standing.MEMBER, other.key.public)

            connections._say_isolation(1000.0, [], members)  # alone: nobody connected
            connections._say_isolation(1000.0 + RENEW_AFTER - 1.0, [], members)
            connections._say_isolation(1000.0 + RENEW_AFTER - 0.5, [member], members)
            assert renewed == []  # back soon: nobody missed us for long

            connections._say_isolation(2000.0, [], members)
            connections._back(2000.0 + RENEW_AFTER)  # a member connects
            assert len(renewed) == 1
            connections._back(2000.0 + RENEW_AFTER + 5.0)  # already back: nothing more
            connections._say_isolation(2100.0, [member], members)
            assert len(renewed) == 1

    run_on_fake_clock(main)


def test_the_daemon_renews_through_its_announcer(node: NodeDir) -> None:
    base = now()

    async def main() -> None:
        async with running(node, base) as (daemon, _transport, _backend):
            assert daemon.connections.on_back == daemon.announcer.renew

    run_on_fake_clock(main)


def test_the_sequence_number_follows_the_clock_and_never_goes_back() -> None:
    assert next_seq(1_000, None) == 1_000
    assert next_seq(1_000, 999) == 1_000
    assert next_seq(1_000, 1_000) == 1_001  # the clock set back, or standing still
    assert next_seq(1_000, 5_000) == 5_001
    assert next_seq(1_000, 2**64 - 1) == 2**64 - 1  # at the field's end: held there


def test_after_the_clock_is_set_back_an_announcement_is_still_new_and_flooded(
    node: NodeDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The host's clock ran an hour ahead, then NTP set it right: our next announcement's
    # number came from the clock, lower than the one the members held, and they kept
    # theirs (and we ours) for an hour: what we announced meanwhile went unheard.
    base = now()
    config = DaemonConfig(
        state_dir=node.paths.root, wg_backend="none", announce_interval=100.0, announce_ttl=TTL
    )
    hour = 3600 * 10**9
    clock = trio.testing.MockClock()
    monkeypatch.setattr(announcer_module, "local_addresses", _host)

    async def main() -> None:
        state, transport, announcer = announcer_of(node, base, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(state.feed.run)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("meshd.daemon.announcer.time.time_ns", lambda: base * 10**9 + hour)
                await nursery.start(announcer.run)
                await transport.first_published()
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("meshd.daemon.announcer.time.time_ns", lambda: base * 10**9)
                announcer.renew()  # (back from an outage: any new announcement)
                await trio.testing.wait_all_tasks_blocked()
            first, again = sent(transport)
            assert again.seq == first.seq + 1
            own = state.member(state.key)
            assert own is not None
            assert own.announcement is not None
            assert own.announcement.seq == again.seq  # ours too
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock)
