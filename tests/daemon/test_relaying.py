"""``--relay``: who relays, and IP forwarding turned on only there, said once, put back."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import pytest
import trio

from meshd.daemon.relaying import BEHIND_NAT, OWN_ADDRESS, Forwarding, relay_decision

PRIVATE = [ipaddress.ip_address("192.168.1.10"), ipaddress.ip_address("fd00::10")]
GLOBAL = [*PRIVATE, ipaddress.ip_address("2001:4860::10")]


def test_auto_relays_with_a_public_endpoint_only() -> None:
    assert relay_decision("on", (), PRIVATE, BEHIND_NAT)[0] is True  # the operator's word
    assert relay_decision("off", ("203.0.113.5:51820",), GLOBAL, OWN_ADDRESS)[0] is False
    on, why = relay_decision("auto", ("203.0.113.5:51820",), PRIVATE, BEHIND_NAT)
    assert on  # a configured endpoint: a port forward, say
    assert "203.0.113.5:51820" in why
    on, why = relay_decision("auto", (), GLOBAL, None)
    assert on
    assert "2001:4860::10" in why
    assert relay_decision("auto", (), GLOBAL, BEHIND_NAT) == (
        False,
        "--relay auto: members see this node behind a NAT",
    )
    assert relay_decision("auto", (), PRIVATE, None)[0] is False  # no public endpoint
    on, why = relay_decision("auto", (), PRIVATE, OWN_ADDRESS)  # members reach us as we are
    assert on
    assert "own address" in why
    assert relay_decision("auto", ("not an endpoint",), PRIVATE, None)[0] is False


def sysctls(tmp_path: Path, *values: str) -> list[tuple[str, str]]:
    out = []
    for i, value in enumerate(values):
        path = tmp_path / f"f{i}"
        path.write_text(value + "\n")
        out.append((f"net.f{i}.forwarding", str(path)))
    return out


def test_forwarding_is_turned_on_said_once_at_warning_and_put_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = sysctls(tmp_path, "0", "1")
    forwarding = Forwarding(files)
    with caplog.at_level(logging.INFO, logger="meshd.daemon.relaying"):
        forwarding.want(True, "--relay on")
        forwarding.want(True, "--relay on")  # no change, nothing said
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "net.f0.forwarding 0 -> 1" in warnings[0].getMessage()
    assert "net.f1" not in warnings[0].getMessage()  # it was on already: not ours to change
    assert [Path(p).read_text() for _, p in files] == ["1\n", "1\n"]
    forwarding.want(False, "")
    assert [Path(p).read_text() for _, p in files] == ["0\n", "1\n"]  # only ours put back
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="meshd.daemon.relaying"):
        forwarding.want(True, "--relay auto")
        forwarding.release()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # once per run
    assert Path(files[0][1]).read_text() == "0\n"


def test_a_member_that_does_not_relay_leaves_forwarding_alone(tmp_path: Path) -> None:
    files = sysctls(tmp_path, "0")
    forwarding = Forwarding(files)
    forwarding.want(False, "--relay off")
    forwarding.release()
    assert Path(files[0][1]).read_text() == "0\n"
    unwritable = Forwarding([("net.x.forwarding", str(tmp_path / "missing" / "f"))])
    unwritable.want(True, "--relay on")  # warned, not raised: the daemon runs on
    assert unwritable.saved == {}


def test_a_member_that_does_not_relay_announces_only_its_own_routes_on_the_mesh() -> None:
    from tests.babel.test_site_rules import FakeMesh
    from tests.daemon.babel_support import mesh_babel
    from tests.mesh.support import member, relay

    me = member("me")
    members = [me]
    own = ipaddress.IPv6Network((me.overlay, 128))
    other = ipaddress.IPv6Network("fd00:1::2/128")
    service = mesh_babel(me, lambda: members, FakeMesh())
    service._own = {(own, None)}
    service._sync_members()
    assert service.relaying  # until meshd.daemon.relaying decides
    # Not one of the mesh's relays by its own announcement: nobody's next hop.
    assert not service._redistribute("wg0", other, None)
    members = [relay(me)]
    service._sync_members()
    assert service._redistribute("wg0", other, None)  # a relay carries other members' routes
    service.set_relaying(False)
    assert not service._redistribute("wg0", other, None)  # never a next hop for others
    assert service._redistribute("wg0", own, None)  # its own overlay /128 still goes out
    assert service._redistribute("eth1", other, None)  # not the mesh: not this rule's business


class FakeBabel:
    def __init__(self) -> None:
        self.told: list[bool] = []

    def set_relaying(self, on: bool) -> None:
        self.told.append(on)


def test_the_service_decides_tells_babel_and_says_so_in_status(tmp_path: Path) -> None:
    from meshd.daemon.config import DaemonConfig
    from meshd.daemon.relaying import Relaying

    babel = FakeBabel()
    files = sysctls(tmp_path, "0")
    config = DaemonConfig(state_dir=tmp_path, relay="on")
    service = Relaying(config, babel, lambda: None, forwarding=Forwarding(files))
    assert service.view() == "undecided"
    trio.run(service.decide)
    assert service.view() == "yes (--relay on)"
    assert babel.told == [True]
    assert Path(files[0][1]).read_text() == "1\n"
    service.forwarding.release()
    assert Path(files[0][1]).read_text() == "0\n"
    off = Relaying(
        DaemonConfig(state_dir=tmp_path, relay="off"),
        babel,
        lambda: None,
        forwarding=Forwarding(files),
    )
    trio.run(off.decide)
    assert off.view() == "no (--relay off)"
    assert babel.told == [True, False]
    assert Path(files[0][1]).read_text() == "0\n"


def test_status_says_the_latest_reason_even_when_the_decision_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NATed member first decides with no observation (no public address: no), then
    members see it behind a NAT (still no): status gives the second reason, not the first,
    and Babel is told once."""
    from meshd.daemon import relaying
    from meshd.daemon.config import DaemonConfig
    from meshd.daemon.relaying import Relaying

    async def no_addresses() -> list[object]:
        return []

    monkeypatch.setattr(relaying, "local_addresses", no_addresses)
    babel = FakeBabel()
    seen: list[str | None] = [None]
    service = Relaying(
        DaemonConfig(state_dir=tmp_path, relay="auto"),
        babel,
        lambda: seen[0],
        forwarding=Forwarding(sysctls(tmp_path, "0")),
    )
    trio.run(service.decide)
    assert (
        service.view() == "no (--relay auto: no public endpoint (no --endpoint, no global address))"
    )
    seen[0] = BEHIND_NAT
    trio.run(service.decide)
    assert service.view() == "no (--relay auto: members see this node behind a NAT)"
    assert babel.told == [False]


def test_documentation_addresses_count_as_public_for_auto() -> None:
    """The lab's public hosts sit in documentation ranges: auto relays there from the start,
    and not at the lab's private addresses."""
    doc = ipaddress.ip_address("203.0.113.6")
    assert relay_decision("auto", (), [doc], None) == (
        True,
        "--relay auto: a global address (203.0.113.6)",
    )
    assert relay_decision("auto", (), [ipaddress.ip_address("2001:db8:77:1::2")], None)[0]
    assert relay_decision("auto", (), [ipaddress.ip_address("10.77.1.2")], None)[0] is False
    assert relay_decision("auto", (), [doc], BEHIND_NAT)[0] is False  # members' word first


def test_a_relay_forwards_from_its_start_and_the_service_takes_it_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A public member (``--relay auto``, a global address) turns forwarding on as soon as
    WireGuard is open, before the gossip side has loaded: a relay that restarts forwards
    again as soon as the sessions are back. The service then takes the same Forwarding
    over: when members see the node behind a NAT it turns it off, and what was changed is
    put back once, at exit. A member that will not relay, or runs no relaying service, does
    not touch it."""
    from meshd.daemon import relaying
    from meshd.daemon.config import DaemonConfig
    from meshd.daemon.relaying import Relaying, early_forwarding
    from meshd.mesh.underlay import LocalAddress

    addresses: list[object] = list(GLOBAL)

    async def local() -> list[LocalAddress]:
        return [LocalAddress("eth0", ipaddress.ip_interface(str(a))) for a in addresses]

    monkeypatch.setattr(relaying, "local_addresses", local)
    files = sysctls(tmp_path, "0")
    config = DaemonConfig(state_dir=tmp_path, relay="auto")
    seen: list[str | None] = [None]

    def value() -> str:
        with open(files[0][1]) as f:
            return f.read().strip()

    async def main() -> None:
        async with early_forwarding(config, True, files) as forwarding:
            assert value() == "1"  # before any service runs
            service = Relaying(config, FakeBabel(), lambda: seen[0], forwarding=forwarding)
            await service.decide()
            assert value() == "1"
            seen[0] = BEHIND_NAT
            await service.decide()
            assert value() == "0"
            seen[0] = OWN_ADDRESS
            await service.decide()
            assert value() == "1"
        assert value() == "0"
        async with early_forwarding(config, False, files):
            assert value() == "0"
        addresses[:] = PRIVATE
        async with early_forwarding(config, True, files):
            assert value() == "0"

    trio.run(main)


def test_a_running_service_decides_again_at_once_when_reconfigured(tmp_path: Path) -> None:
    """A SIGHUP's ``--relay`` (meshd.daemon.live_config): ``on`` to ``off`` and back on a
    running service, each decided at once (under ``on`` or ``off`` it never looks again by
    itself), forwarding following."""
    import dataclasses

    from trio.testing import MockClock

    from meshd.daemon.config import DaemonConfig
    from meshd.daemon.relaying import Relaying

    babel = FakeBabel()
    files = sysctls(tmp_path, "0")
    config = DaemonConfig(state_dir=tmp_path, relay="on")
    service = Relaying(config, babel, lambda: None, forwarding=Forwarding(files))

    def forwarding() -> str:
        return Path(files[0][1]).read_text().strip()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            assert (babel.told, forwarding()) == ([True], "1")
            await trio.sleep(3600)
            assert babel.told == [True]  # nothing to look at again under `on`
            service.reconfigure(dataclasses.replace(config, relay="off"))
            await trio.sleep(0.01)
            assert (babel.told, forwarding()) == ([True, False], "0")
            assert service.view() == "no (--relay off)"
            service.reconfigure(dataclasses.replace(config, relay="on"))
            await trio.sleep(0.01)
            assert (babel.told, forwarding()) == ([True, False, True], "1")
            nursery.cancel_scope.cancel()
        assert forwarding() == "0"  # put back at exit

    trio.run(main, clock=MockClock(autojump_threshold=0))
