"""The WireGuard interface's MTU (``--mtu``, config key ``mtu``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from meshd.daemon.underlay_mtu import GAP
from tests.daemon.support import ROOT, meshd


@pytest.mark.parametrize(("mtu", "ok"), [(1279, False), (1280, True), (1420, True), (65536, False)])
def test_the_wireguard_mtu_is_an_ipv6_links(tmp_path: Path, mtu: int, ok: bool) -> None:
    """The overlay is IPv6: an MTU under 1280 is refused in one line, with what to use."""
    from meshd.daemon.config import DaemonConfig
    from meshd.errors import CommandLineError

    if ok:
        assert DaemonConfig(state_dir=tmp_path, mtu=mtu).mtu == mtu
        return
    with pytest.raises(CommandLineError) as refused:
        DaemonConfig(state_dir=tmp_path, mtu=mtu)
    assert refused.value.one_line().startswith(f"--mtu {mtu} is out of range (1280-65535)")


@pytest.mark.root
def test_without_mtu_it_is_derived_from_the_namespaces_default_routes() -> None:
    """In a namespace: a default route through a 1492-byte link (PPPoE's) gives 1412; an
    IPv6 default through a 1400-byte one besides gives the smaller, 1320; with no default
    route the interfaces holding a global address say; ours is never among them."""
    import os
    import subprocess
    from functools import partial

    import trio

    from meshd.daemon.wireguard_open import derived_mtu

    ns = f"mtu{os.getpid() % 100000}"
    run = partial(subprocess.run, check=True, capture_output=True)
    try:
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "add", "up0", "type", "veth", "peer", "name", "up1"])
        # wgx stands for ours (a veth: this kernel may have no dummy links)
        run(["ip", "-n", ns, "link", "add", "wgx", "type", "veth", "peer", "name", "wgy"])
        for name, mtu in (("up0", "1492"), ("up1", "1400"), ("wgx", "1280"), ("wgy", "1500")):
            run(["ip", "-n", ns, "link", "set", name, "mtu", mtu, "up"])
        run(["ip", "-n", ns, "addr", "add", "192.0.2.1/24", "dev", "up0"])
        run(["ip", "-n", ns, "addr", "add", "198.51.100.1/24", "dev", "wgx"])
        assert trio.run(derived_mtu, "wgx", ns) == 1412  # no default route: up0's address
        run(["ip", "-n", ns, "route", "add", "default", "dev", "up0"])
        assert trio.run(derived_mtu, "wgx", ns) == 1412
        # Among 5,000 other routes (a dump of many datagrams, only its defaults decoded).
        batch = "".join(f"route add 10.{i >> 8}.{i & 255}.0/24 dev up1\n" for i in range(5000))
        run(["ip", "-n", ns, "-batch", "-"], input=batch.encode())
        assert trio.run(derived_mtu, "wgx", ns) == 1412
        run(["ip", "-n", ns, "-6", "route", "add", "default", "dev", "up1"])
        assert trio.run(derived_mtu, "wgx", ns) == 1320
        run(["ip", "-n", ns, "-6", "route", "del", "default", "dev", "up1"])
        run(["ip", "-n", ns, "route", "del", "default", "dev", "up0"])
        run(["ip", "-n", ns, "route", "add", "default", "dev", "wgx"])  # ours: not counted
        assert trio.run(derived_mtu, "wgx", ns) == 1412
        # The default routes' links are asked for one by one, by index.
        from meshd.wg.rtnl_socket import RtnlSocket

        with RtnlSocket(ns) as rtnl:
            up0 = rtnl.link("up0")
            assert up0 is not None
            found = rtnl.link_at(up0.index)
            assert found is not None
            assert (found.name, found.mtu) == ("up0", 1492)
            assert rtnl.link_at(2**31 - 1) is None
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


class BehindPppoe:
    """A real ``meshd up`` with wireguard-go, in a namespace of its own whose default route
    leaves by a 1492-byte link (PPPoE's), its options in a config file."""

    def __init__(self, tmp_path: Path, config_text: str) -> None:
        pid = os.getpid() % 100000
        self.ns, self.ifname = f"mtue{pid}", f"mtw{pid}"
        self.state_dir, self.log_path = tmp_path / "n0", tmp_path / "n0.log"
        self.config = tmp_path / "meshd.toml"
        self.config.write_text(config_text)
        self.process: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for name in ("MESHD_LOG", "MESHD_LOG_LEVEL", "MESHD_CONFIG", "MESHD_STATE_DIR"):
            self.env.pop(name, None)

    def __enter__(self) -> BehindPppoe:
        run = partial(subprocess.run, check=True, capture_output=True)
        ns = self.ns
        try:
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "-n", ns, "link", "add", "up0", "type", "veth", "peer", "name", "up1"])
            run(["ip", "-n", ns, "link", "set", "up0", "mtu", "1492", "up"])
            run(["ip", "-n", ns, "link", "set", "up1", "up"])
            run(["ip", "-n", ns, "addr", "add", "192.0.2.1/24", "dev", "up0"])
            run(["ip", "-n", ns, "route", "add", "default", "dev", "up0"])
            done = meshd("init", "--network", "mtunet", "--name", "n0",
                         "--state-dir", str(self.state_dir))  # fmt: skip
            assert done.returncode == 0, done.stderr
            argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "meshd", "up",
                    "--state-dir", str(self.state_dir), "--wg-backend", "userspace",
                    "--interface", self.ifname, "--listen", "/ip4/127.0.0.1/tcp/7100",
                    "--config", str(self.config)]  # fmt: skip
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, env=self.env
                )
            deadline = time.monotonic() + 60
            while self.status() is None:
                assert time.monotonic() < deadline, self.log_path.read_text()[-2000:]
                time.sleep(0.2)
        except BaseException:
            self.__exit__()
            raise
        return self

    def status(self) -> dict[str, Any] | None:
        """What ``meshd status --json`` says of WireGuard, None before it answers."""
        assert self.process is not None
        assert self.process.poll() is None, self.log()
        ask = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "meshd", "status",
               "--state-dir", str(self.state_dir), "--json"]  # fmt: skip
        asked = subprocess.run(ask, capture_output=True, text=True, env=self.env, check=False)
        if asked.returncode != 0:
            return None
        wireguard: dict[str, Any] = json.loads(asked.stdout)["wireguard"]
        return wireguard

    def link_mtu(self) -> int:
        shown = subprocess.run(
            ["ip", "-n", self.ns, "-o", "link", "show", self.ifname],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return int(shown.split(" mtu ")[1].split()[0])

    def log(self) -> str:
        return self.log_path.read_text()[-2000:]

    def wait_link_mtu(self, mtu: int, seconds: float = 20) -> None:
        """Until the interface has ``mtu`` (the log's tail if it does not within ``seconds``)."""
        deadline = time.monotonic() + seconds
        while self.link_mtu() != mtu:
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.2)

    def wait_logged(self, text: str, seconds: float = 5) -> None:
        """Until the log holds ``text``: the daemon sets the MTU, then says so (a moment
        later, after the kernel's answer), so a look at once could miss it."""
        deadline = time.monotonic() + seconds
        while text not in self.log_path.read_text():
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        subprocess.run(["ip", "netns", "del", self.ns], check=False, capture_output=True)


@pytest.mark.root
def test_a_real_meshd_up_behind_pppoe_sets_1412(tmp_path: Path) -> None:
    """No ``--mtu``: the interface comes up at 1412, as ``meshd status`` and ``ip link``
    show, and the log says where it came from."""
    with BehindPppoe(tmp_path, "") as node:
        status = node.status()
        assert status is not None
        assert status["mtu"] == 1412, node.log()
        assert node.link_mtu() == 1412
        text = node.log_path.read_text()
        assert "MTU 1412 derived from the underlay: up0's 1492 (default route) less 80" in text


@pytest.mark.root
def test_a_sighup_sets_the_mtu_on_the_running_interface_and_derives_it_again(
    tmp_path: Path,
) -> None:
    """``mtu = 1300`` in the file and a SIGHUP: the running interface takes 1300 (no restart:
    the same process); the key gone and a SIGHUP: derived again, 1412."""
    with BehindPppoe(tmp_path, "mtu = 1380\n") as node:
        assert node.link_mtu() == 1380
        assert node.process is not None
        node.config.write_text("mtu = 1300\n")
        node.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while node.link_mtu() != 1300:
            assert time.monotonic() < deadline, node.log()
            time.sleep(0.1)
        status = node.status()
        assert status is not None
        assert status["mtu"] == 1300
        node.config.write_text("")
        node.process.send_signal(signal.SIGHUP)
        while node.link_mtu() != 1412:
            assert time.monotonic() < deadline + 10, node.log()
            time.sleep(0.1)
        # Said once the SIGHUP is done (the interface has the MTU a moment before).
        while node.log_path.read_text().count("SIGHUP: the running daemon took mtu") != 2:
            assert time.monotonic() < deadline + 20, node.log()
            time.sleep(0.1)
        assert node.process.poll() is None


@pytest.mark.root
def test_without_mtu_it_follows_the_underlay_to_a_smaller_uplink(tmp_path: Path) -> None:
    """The uplink's MTU lowered, no address of ours changing (a PPPoE session renegotiated,
    an operator's ``ip link set``): at its next look the daemon derives the MTU again, 1380,
    and sets it on the running interface. Then the default route moves to a new uplink of
    1400 bytes (a laptop on a phone's hotspot, say), with no address of ours changing as it
    moves: 1320 within seconds, told by the kernel. The same process throughout."""
    config = 'announce_interval = "2s"\nannounce_ttl = "10s"\n'  # a look every 2 s
    with BehindPppoe(tmp_path, config) as node:
        assert node.link_mtu() == 1412
        run = partial(subprocess.run, check=True, capture_output=True)
        ns = node.ns
        run(["ip", "-n", ns, "link", "set", "up0", "mtu", "1460"])
        node.wait_link_mtu(1380)
        node.wait_logged("the underlay changed: MTU 1380, was 1412")
        run(["ip", "-n", ns, "link", "add", "up2", "type", "veth", "peer", "name", "up3"])
        run(["ip", "-n", ns, "link", "set", "up2", "mtu", "1400", "up"])
        run(["ip", "-n", ns, "link", "set", "up3", "up"])
        run(["ip", "-n", ns, "addr", "add", "198.51.100.1/24", "dev", "up2"])
        # The new address seen (and the routes read with it) before the route moves: the
        # move alone, no address changing, is heard of from the kernel, not a minute later.
        deadline = time.monotonic() + 20
        while "198.51.100.1:" not in node.log_path.read_text():
            assert time.monotonic() < deadline, node.log()
            time.sleep(0.1)
        time.sleep(0.5)
        run(["ip", "-n", ns, "route", "del", "default", "dev", "up0"])
        run(["ip", "-n", ns, "route", "add", "default", "dev", "up2"])
        node.wait_link_mtu(1320, seconds=GAP + 3)
        node.wait_logged("the underlay changed: MTU 1320, was 1380")
        assert node.process is not None
        assert node.process.poll() is None


def test_a_failure_to_follow_the_mtu_is_said_once_until_it_changes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon looks every 10 s: a netlink that keeps failing the same way is one
    WARNING, not one a look; another failure is said again, and so is the first once it
    worked in between. Babel's datagrams follow a new MTU."""
    import logging
    from types import SimpleNamespace

    import trio

    from meshd.daemon.service import Daemon

    outcomes: list[object] = [
        OSError("netlink: busy"), OSError("netlink: busy"), OSError("netlink: gone"),
        1380, None, OSError("netlink: gone"),
    ]  # fmt: skip
    mtus: list[int] = []

    async def look(now: float, addresses_changed: bool) -> int | None:
        outcome = outcomes.pop(0)
        if isinstance(outcome, OSError):
            raise outcome
        assert outcome is None or isinstance(outcome, int)
        return outcome

    daemon = SimpleNamespace(
        config=SimpleNamespace(mtu=None),
        mesh=SimpleNamespace(kind="userspace", mtu=1412),
        babel=SimpleNamespace(set_mesh_mtu=mtus.append),
        _mtu=SimpleNamespace(look=look),
        _mtu_trouble=None,
    )
    with caplog.at_level(logging.WARNING, logger="meshd.daemon.service"):
        for _ in range(6):
            trio.run(Daemon._underlay_looked, daemon, False)
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "the underlay's MTU could not be followed; it stays 1412: netlink: busy",
        "the underlay's MTU could not be followed; it stays 1412: netlink: gone",
        "the underlay's MTU could not be followed; it stays 1412: netlink: gone",
    ]
    assert mtus == [1380]
    assert outcomes == []


def test_a_given_mtu_is_not_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--mtu`` (or ``mtu`` in the file) given: the looks leave it alone."""
    from types import SimpleNamespace

    import trio

    from meshd.daemon.service import Daemon

    async def look(now: float, addresses_changed: bool) -> int | None:
        raise AssertionError("followed a given MTU")

    daemon = SimpleNamespace(
        config=SimpleNamespace(mtu=1300),
        mesh=SimpleNamespace(kind="userspace", mtu=1300),
        _mtu=SimpleNamespace(look=look),
    )
    trio.run(Daemon._underlay_looked, daemon, True)


def test_the_follower_reads_routes_at_a_change_of_addresses_or_once_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between two reads of the routes the links last found are asked again (an uplink's MTU
    changed is seen at the next look); the routes are read at the first look, when our
    addresses changed, once ``ROUTES_EVERY`` has passed, after a failure, and after the
    kernel told of a default route changing. A new MTU is
    set on the interface and kept on the mesh; one that stays is not set again."""
    from types import SimpleNamespace

    import trio

    from meshd.daemon import underlay_mtu
    from meshd.mesh.mtu import derive_mtu

    uplink = {"up0": 1492}
    asked: list[object] = []
    set_to: list[int] = []
    broken: list[OSError] = []

    async def read_derived(
        ifname: str, netns: str | None, oifs: object = None
    ) -> tuple[object, tuple[int, ...]]:
        asked.append("routes" if oifs is None else oifs)
        if broken:
            raise broken.pop()
        return derive_mtu(uplink, set(uplink), ()), (7,)

    class FakeNetlink:
        async def set_mtu(self, ifname: str, mtu: int) -> None:
            set_to.append(mtu)

    monkeypatch.setattr(underlay_mtu, "read_derived", read_derived)
    monkeypatch.setattr(underlay_mtu, "Netlink", FakeNetlink)
    mesh = SimpleNamespace(ifname="meshd0", mtu=1412)
    follower = underlay_mtu.UnderlayMtu(mesh)  # type: ignore[arg-type]
    look = partial(trio.run, follower.look)

    assert look(0.0, False) is None  # first: the routes
    assert look(10.0, False) is None  # the link found, asked again
    uplink["up0"] = 1460
    assert look(20.0, False) == 1380
    assert mesh.mtu == 1380
    assert look(30.0, True) is None  # our addresses changed: the routes
    assert look(70.0, False) is None
    assert look(90.0, False) is None  # a minute since the routes were read
    broken.append(OSError("netlink: busy"))
    with pytest.raises(OSError, match="busy"):
        look(100.0, False)
    assert look(110.0, False) is None  # after a failure: the routes
    follower.routes_changed()  # the kernel told of a default route changing
    assert look(120.0, False) is None  # the routes
    assert look(130.0, False) is None
    assert asked == [
        "routes", (7,), (7,), "routes", (7,), "routes", (7,), "routes", "routes", (7,),
    ]  # fmt: skip
    assert set_to == [1380]


@pytest.mark.root
def test_the_kernel_tells_of_a_default_route_changing_and_of_no_other_route() -> None:
    """In a namespace: 50 routes of other prefixes added tell nothing; a default route
    added, replaced, then deleted is told each time (``changed(True)``) within a second."""

    from meshd.daemon.underlay_mtu import watch_default_routes

    ns = f"dr{os.getpid() % 100000}"
    run = partial(subprocess.run, check=True, capture_output=True)
    told: list[tuple[bool, float]] = []
    heard = [trio.Event()]

    def changed(now: bool) -> None:
        told.append((now, time.monotonic()))
        heard[0].set()

    try:
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "add", "dr0", "type", "veth", "peer", "name", "dr1"])
        for name in ("dr0", "dr1"):
            run(["ip", "-n", ns, "link", "set", name, "up"])
        run(["ip", "-n", ns, "addr", "add", "192.0.2.1/24", "dev", "dr0"])

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_default_routes, changed, ns)
                await trio.sleep(0.3)

                def ip(*args: str) -> None:
                    run(["ip", "-n", ns, *args])

                batch = "".join(f"route add 10.{n}.0.0/16 dev dr0\n" for n in range(50))
                await trio.to_thread.run_sync(
                    partial(run, ["ip", "-n", ns, "-batch", "-"], input=batch.encode())
                )
                await trio.sleep(1.0)
                assert told == []
                for change in (
                    ("route", "add", "default", "via", "192.0.2.2"),
                    ("route", "replace", "default", "via", "192.0.2.3"),
                    ("route", "del", "default"),
                ):
                    at = time.monotonic()
                    count = len(told)
                    heard[0] = trio.Event()
                    await trio.to_thread.run_sync(partial(ip, *change))
                    with trio.move_on_after(GAP + 3):
                        await heard[0].wait()
                    assert len(told) == count + 1, change
                    now, when = told[-1]
                    assert now
                    # Heard at once; the next is heard once GAP has passed.
                    assert when - at < 1.0 + (GAP if count else 0), change
                nursery.cancel_scope.cancel()

        trio.run(main)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
