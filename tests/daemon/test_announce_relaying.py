"""Our announcement says whether we relay (``Announcement.relays``), so that every member
learns it from a signed record: the first announcement carries the first decision (the
relaying service starts before the announcer), a changed decision goes out at once, in the
same step, not at the announcer's next look; a decision that stays sends nothing; with no
relaying service (no Babel on the mesh) we announce that we do not relay.

On trio's MockClock, moved by hand; the host's addresses and IP forwarding are fakes."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from meshd.daemon import announcer as announcer_module
from meshd.daemon import relaying as relaying_module
from meshd.daemon import wireguard_open
from meshd.daemon.announce_policy import ADDRESS_CHECK, AnnouncePolicy
from meshd.daemon.config import DaemonConfig
from meshd.daemon.relaying import BEHIND_NAT, OWN_ADDRESS, RECHECK, Forwarding, Relaying
from meshd.mesh.underlay import LocalAddress
from meshd.node.statedir import NodeDir, now
from meshd.records import Announcement, decode_untrusted
from tests.daemon.fake_transport import FakeTransport
from tests.daemon.fakes import TTL, announcer_of, run_on_fake_clock, running


class FakeBabel:
    def __init__(self) -> None:
        self.told: list[bool] = []

    def set_relaying(self, on: bool) -> None:
        self.told.append(on)


async def public_host() -> list[LocalAddress]:
    """A host with a global address: ``--relay auto`` relays until members say otherwise."""
    return [LocalAddress("eth0", ipaddress.ip_interface("2001:4860::10/64"))]


def sent(transport: FakeTransport) -> list[Announcement]:
    return [decode_untrusted(raw, Announcement) for raw in transport.published]


def test_the_policy_announces_a_change_of_relays_at_once() -> None:
    policy = AnnouncePolicy(interval=30.0, check=5.0)
    here = (("192.0.2.1:51820",), ("/ip4/192.0.2.1/tcp/7100",))
    assert policy.due(0.0, here, True)
    policy.announced(0.0, here, True)
    assert not policy.due(1.0, here, True)
    assert policy.due(1.0, here, False)  # no longer relaying: at once
    assert not policy.changed(here)  # the addresses kept for `meshd invite` are the same
    policy.announced(1.0, here, False)
    assert not policy.due(2.0, here, False)
    assert not policy.due(2.0, here)  # without a relaying service: not relaying
    assert policy.due(31.0, here, False)  # the refresh


def test_a_changed_relay_decision_is_announced_at_once(
    node: NodeDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relaying_module, "local_addresses", public_host)
    monkeypatch.setattr(announcer_module, "local_addresses", public_host)
    base = now()
    config = DaemonConfig(
        state_dir=node.paths.root,
        wg_backend="none",
        announce_interval=60.0,
        announce_ttl=TTL,
        relay="auto",
    )
    sysctl = tmp_path / "forwarding"
    sysctl.write_text("0\n")
    seen: list[str | None] = [None]
    babel = FakeBabel()
    clock = trio.testing.MockClock()
    assert RECHECK < ADDRESS_CHECK  # a change could wait for the announcer's next look

    async def main() -> None:
        state, transport, announcer = announcer_of(node, base, config)
        relaying = Relaying(
            config, babel, lambda: seen[0], forwarding=Forwarding([("net.f", str(sysctl))])
        )
        announcer.follow_relaying(relaying)

        def relays_in_state() -> bool:
            member = state.member(node.node_key.public)
            assert member is not None
            assert member.announcement is not None
            return member.announcement.relays

        async with trio.open_nursery() as nursery:
            await nursery.start(state.feed.run)
            await nursery.start(relaying.run)  # as Daemon.run: before the announcer
            await nursery.start(announcer.run)
            await trio.testing.wait_all_tasks_blocked()
            assert [a.relays for a in sent(transport)] == [True]  # the first decision
            assert relays_in_state()

            seen[0] = BEHIND_NAT  # members see us behind a NAT: auto stops relaying
            clock.jump(RECHECK)
            await trio.testing.wait_all_tasks_blocked()
            assert trio.current_time() == RECHECK  # the same step as the decision
            assert [a.relays for a in sent(transport)] == [True, False]
            assert not relays_in_state()

            seen[0] = OWN_ADDRESS
            clock.jump(RECHECK)
            await trio.testing.wait_all_tasks_blocked()
            assert [a.relays for a in sent(transport)] == [True, False, True]
            assert relays_in_state()

            for _ in range(4):  # the decision stays (and the addresses): nothing new
                clock.jump(RECHECK)
                await trio.testing.wait_all_tasks_blocked()
            assert len(transport.published) == 3
            assert babel.told == [True, False, True]
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock)


def test_without_a_relaying_service_we_announce_that_we_do_not_relay(
    node: NodeDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake daemon's WireGuard is ``none``: no Babel on the mesh, no relaying service.
    Reading the host's addresses takes real time here, as netlink does on a loaded machine:
    the fake clock does not wait for it, the test does."""
    base = now()
    read = wireguard_open.local_addresses

    async def slow_local_addresses() -> list[LocalAddress]:
        await trio.to_thread.run_sync(time.sleep, 0.05)
        return await read()

    monkeypatch.setattr(announcer_module, "local_addresses", slow_local_addresses)

    async def main() -> None:
        async with running(node, base) as (daemon, transport, _):
            assert daemon.relaying is None
            await transport.first_published()
            ours = sent(transport)
            assert ours
            assert all(a.relays is False for a in ours)

    run_on_fake_clock(main)


class FakeBabelService(FakeBabel):
    """Babel on the mesh, as far as the daemon's start needs it."""

    mesh = object()

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def follow(self, members: object) -> None:
        await trio.sleep_forever()

    def hellos(self, wg_key: object) -> bool:
        return True

    def paths_changed(self) -> None:
        pass

    def member_back(self, wg_key: object) -> None:
        pass


def test_the_daemon_decides_before_its_first_announcement(
    node: NodeDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Daemon.run starts the relaying service before the announcer: a public member's very
    first announcement already says that it relays."""
    from meshd.daemon import service

    monkeypatch.setattr(relaying_module, "local_addresses", public_host)
    monkeypatch.setattr(announcer_module, "local_addresses", public_host)
    monkeypatch.setattr(relaying_module.Forwarding, "want", lambda *_: None)  # not this host's
    monkeypatch.setattr(service, "_babel_service", lambda *_: FakeBabelService())
    base = now()

    async def main() -> None:
        async with running(node, base) as (daemon, transport, _):
            assert daemon.relaying is not None
            assert daemon.relaying.relays()
            ours = sent(transport)
            assert ours
            assert ours[0].relays is True

    run_on_fake_clock(main)


def test_a_failed_announcement_waits_doubling_pauses_before_it_is_tried_again() -> None:
    policy = AnnouncePolicy(interval=30.0, check=5.0)
    here = (("192.0.2.1:51820",), ("/ip4/192.0.2.1/tcp/7100",))
    assert policy.wait(0.0) == 0.0  # the first look: at once
    waits = []
    for at in (0.0, 1.0, 3.0, 7.0):
        policy.failed(at)
        waits.append(policy.wait(at))
    assert waits == [1.0, 2.0, 4.0, 8.0]
    for _ in range(10):
        policy.failed(100.0)
    assert policy.wait(100.0) == 60.0  # at most RETRY_MOST
    for _ in range(2000):  # a disk full for days: still a minute, never an overflow
        policy.failed(100.0)
    assert policy.wait(100.0) == 60.0
    policy.announced(200.0, here)
    assert policy.wait(200.0) == 5.0  # back to the looks
    policy.failed(201.0)
    assert policy.wait(201.0) == 1.0  # a new run of failures starts again from 1 s


def test_an_announcement_the_store_refuses_is_tried_again_later_not_in_a_loop(
    node: NodeDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A due announcement that failed (here the store's write) stayed due, and the announcer
    looked again at once: a loop with no pause, a warning a turn."""
    from meshd.errors import StoreError

    monkeypatch.setattr(announcer_module, "local_addresses", public_host)
    base = now()
    config = DaemonConfig(
        state_dir=node.paths.root, wg_backend="none", announce_interval=60.0, announce_ttl=TTL
    )
    tries: list[float] = []

    async def main() -> None:
        state, _transport, announcer = announcer_of(node, base, config)
        async with trio.open_nursery() as nursery:

            def refused(record: Any) -> Any:
                tries.append(trio.current_time())
                if len(tries) >= 50:  # the loop: stop it here
                    nursery.cancel_scope.cancel()
                raise StoreError("cannot write the store: No space left on device")

            state.add_local = refused  # type: ignore[method-assign]
            await nursery.start(announcer.run)
            await trio.sleep(100.0)
            nursery.cancel_scope.cancel()

    run_on_fake_clock(main)
    assert [round(t) for t in tries] == [0, 1, 3, 7, 15, 31, 63]


def test_every_look_is_told_with_the_underlay_already_set(
    node: NodeDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``on_look`` (the daemon follows the MTU from it): called at every look, the first
    included, whether our addresses changed or not (the default route may move to another
    uplink, or an uplink's MTU change, with no address of ours changing), once the mesh has
    the underlay as the look saw it; told whether our addresses changed since the last."""
    here = [LocalAddress("eth0", ipaddress.ip_interface("192.0.2.10/24"))]

    async def addresses() -> list[LocalAddress]:
        return list(here)

    monkeypatch.setattr(announcer_module, "local_addresses", addresses)
    config = DaemonConfig(
        state_dir=node.paths.root, wg_backend="none", announce_interval=60.0, announce_ttl=TTL
    )
    told: list[tuple[bool, object]] = []

    async def main() -> None:
        _, _, announcer = announcer_of(node, now(), config)

        async def looked(changed: bool) -> None:
            told.append((changed, announcer.mesh.underlay.networks))

        announcer.on_look = looked
        await announcer.refresh_underlay()
        await announcer.refresh_underlay()
        here[0] = LocalAddress("wwan0", ipaddress.ip_interface("100.64.7.2/10"))
        await announcer.refresh_underlay()
        await announcer.refresh_underlay()
        assert [changed for changed, _ in told] == [False, False, True, False]
        assert told[0][1] == told[1][1] != told[2][1] == told[3][1]

    run_on_fake_clock(main)
