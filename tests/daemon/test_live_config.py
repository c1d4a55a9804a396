"""What a SIGHUP gives the running services besides the log (meshd.daemon.live_config):
Babel's originated prefixes and filter, the announced endpoints, ``--relay``, and the
addresses invites carry; every other option waits for a restart."""

from __future__ import annotations

import dataclasses
import ipaddress
import signal
import socket
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from meshd.babel.options import babel_config
from meshd.daemon.bootstrap import peer_id_text, peer_key
from meshd.daemon.config import DaemonConfig
from meshd.daemon.live_config import LIVE, take, taken
from meshd.daemon.reload import Reloaded
from meshd.daemon.service import Daemon
from meshd.errors import AddressUnavailable, UsageError
from tests.daemon.support import free_port, meshd, up_with_config, wait_for
from tests.daemon.test_reload import BASE, _reloader

STATE = Path("/nonexistent/meshd")
KEY = "k1:hmac-sha256:" + "00" * 32


def test_taken_changes_only_the_options_named() -> None:
    old = DaemonConfig(STATE, endpoints=("192.0.2.1:51820",), relay="auto", listen_port=51820)
    new = DaemonConfig(
        STATE,
        endpoints=("192.0.2.7:51820",),
        relay="off",
        listen_port=51999,
        public_addrs=("198.51.100.1:7100",),
        babel=babel_config(
            originate=["10.9.0.0/24"],
            redistribute=["10.0.0.0/8 allow"],
            keys=[KEY],
            interfaces=["eth9"],
            hello_interval=1.5,
        ),
    )
    got = taken(old, new, ["endpoint", "babel_redistribute"])
    assert (got.babel.interfaces, got.babel.hello_interval) == ((), 4.0)
    assert taken(old, new, ["listen_port"]).listen_port == 51999
    assert got.endpoints == ("192.0.2.7:51820",)
    assert got.babel.redistribute == new.babel.redistribute
    assert (got.relay, got.listen_port, got.public_addrs) == ("auto", 51820, ())
    assert got.babel.originate == ()
    assert got.babel.keys == ()
    everything = taken(old, new, LIVE)
    assert everything.state_dir == old.state_dir  # never a live option
    lifecycle = DaemonConfig(
        STATE,
        announce_interval=60.0,
        announce_ttl=9000,
        auto_renew=True,
        renew_window=86400,
        renew_for=7 * 86400,
    )
    got = taken(old, lifecycle, ["announce_ttl", "renew_for"])
    assert (got.announce_ttl, got.renew_for) == (9000, 7 * 86400)
    assert (got.announce_interval, got.auto_renew) == (old.announce_interval, False)
    every = taken(old, lifecycle, LIVE)
    assert (every.announce_interval, every.auto_renew, every.renew_window) == (60.0, True, 86400)
    assert (everything.relay, everything.public_addrs) == ("off", ("198.51.100.1:7100",))
    assert everything.babel.originate == new.babel.originate
    assert everything.babel.keys == new.babel.keys
    assert (everything.babel.interfaces, everything.babel.hello_interval) == (("eth9",), 1.5)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append((name, args))


class Renewal(Recorder):
    """An AutoRenewSlot that may refuse (no key that may renew here)."""

    def __init__(self, refuse: bool = False) -> None:
        super().__init__()
        self.refuse = refuse

    def check(self, config: DaemonConfig) -> None:
        if self.refuse and config.auto_renew:
            raise UsageError("auto-renew needs a key: this node holds neither the root key")


def fake_daemon(*, babel: bool, refused: tuple[str, ...] = (), no_key: bool = False) -> Any:
    meta: dict[str, bytes] = {}
    store = SimpleNamespace(set_meta=meta.__setitem__)
    daemon = SimpleNamespace(
        mesh=SimpleNamespace(kind="userspace", ifname="wgtest", mtu=1420, listen_port=51820),
        renewal=Renewal(no_key),
        metrics=None,
        connections=SimpleNamespace(policy=SimpleNamespace(degree=6)),
        config=DaemonConfig(STATE),
        announcer=Recorder(),
        endpoints=Recorder(),
        relaying=Recorder(),
        babel=Recorder() if babel else None,
        state=SimpleNamespace(node=SimpleNamespace(store=store), membership=Recorder(), tick=None),
        meta=meta,
    )
    if babel:
        refused_nets = [ipaddress.ip_network(p) for p in refused]
        daemon.babel.ungranted = lambda config: [
            p for p, _ in config.originate if p in refused_nets
        ]
    return daemon


NEW = DaemonConfig(
    STATE,
    endpoints=("192.0.2.7:51820",),
    relay="off",
    public_addrs=("198.51.100.1:7100",),
    babel=babel_config(originate=["10.9.0.0/24"], redistribute=["10.0.0.0/8 allow"], keys=[KEY]),
    degree=9,
)


def test_take_gives_each_service_its_options() -> None:
    daemon = fake_daemon(babel=True)
    wanted = ["relay", "endpoint", "babel_originate", "public_addr", "metrics", "degree"]
    assert trio.run(take, daemon, NEW, wanted) == (  # metrics: none running here
        "babel_originate",
        "degree",
        "endpoint",
        "public_addr",
        "relay",
    )
    assert daemon.config.endpoints == NEW.endpoints
    assert daemon.config.babel.originate == NEW.babel.originate
    assert daemon.config.babel.redistribute == ()  # not named: as it was
    assert daemon.endpoints.calls == [("set_configured", (NEW.endpoints,))]
    assert daemon.connections.policy.degree == daemon.config.degree == 9
    assert daemon.relaying.calls == [("reconfigure", (daemon.config,))]
    assert daemon.babel.calls == [("reconfigure", (daemon.config.babel,))]
    assert daemon.announcer.calls == [("reconfigure", (daemon.config,))]
    assert daemon.meta == {"public_addrs": b"198.51.100.1:7100"}


def test_the_lifecycle_options_go_to_the_membership_and_the_renewal() -> None:
    daemon = fake_daemon(babel=False)
    ticks: list[bool] = []
    daemon.state.tick = lambda: ticks.append(True)
    new = DaemonConfig(STATE, announce_interval=60.0, announce_ttl=600, auto_renew=True)
    wanted = ["announce_ttl", "auto_renew", "announce_interval"]
    assert trio.run(take, daemon, new, wanted) == (
        "announce_interval",
        "announce_ttl",
        "auto_renew",
    )
    assert daemon.state.membership.calls == [("set_announce_ttl", (600,))]
    assert ticks == [True]  # every member judged again now
    assert daemon.renewal.calls == [("reconfigure", (daemon.config,))]
    assert daemon.config.auto_renew is True
    assert daemon.announcer.calls == [("reconfigure", (daemon.config,))]  # its interval


def test_the_mtu_is_set_on_the_running_interface_and_babel_follows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``mtu``: set on the interface at once (derived again when the option is gone), Babel's
    datagrams on the mesh follow; a metrics address refused after it puts it back."""
    from meshd.daemon import wireguard_open

    set_on: list[tuple[str, int | None]] = []

    async def set_link_mtu(ifname: str, mtu: int | None) -> int:
        set_on.append((ifname, mtu))
        return mtu if mtu is not None else 1412  # derived: behind PPPoE

    monkeypatch.setattr(wireguard_open, "set_link_mtu", set_link_mtu)
    daemon = fake_daemon(babel=True)
    assert trio.run(take, daemon, DaemonConfig(STATE, mtu=1300), ["mtu"]) == ("mtu",)
    assert (set_on, daemon.mesh.mtu, daemon.config.mtu) == ([("wgtest", 1300)], 1300, 1300)
    assert daemon.babel.calls == [("set_mesh_mtu", (1300,))]
    assert trio.run(take, daemon, DaemonConfig(STATE), ["mtu"]) == ("mtu",)
    assert (set_on[-1], daemon.mesh.mtu, daemon.config.mtu) == (("wgtest", None), 1412, None)
    # Without WireGuard there is no interface: it waits for a start.
    none = fake_daemon(babel=False)
    none.mesh.kind = "none"
    assert trio.run(take, none, DaemonConfig(STATE, mtu=1300), ["mtu"]) == ()
    # A metrics address refused after the MTU was set: the MTU as it was, nothing taken.
    refusing = fake_daemon(babel=True)
    refusing.metrics = FakeSlot(refuse=True)
    set_on.clear()
    with pytest.raises(AddressUnavailable):
        trio.run(take, refusing, DaemonConfig(STATE, mtu=1300, metrics="127.0.0.1:1"),
                 ["mtu", "metrics"])  # fmt: skip
    assert set_on == [("wgtest", 1300), ("wgtest", 1420)]
    assert (refusing.mesh.mtu, refusing.config.mtu) == (1420, None)
    assert refusing.babel.calls == []


class FakeMesh:
    """A WireGuard device that records the ports it is moved to."""

    def __init__(self) -> None:
        self.kind, self.ifname, self.mtu, self.listen_port = "userspace", "wgtest", 1420, 51820
        self.moved: list[int] = []

    async def set_listen_port(self, port: int) -> None:
        self.moved.append(port)
        self.listen_port = port


def test_the_listen_port_moves_the_device_and_what_is_announced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``listen_port``: the device moved (after the port was found free), our candidates
    and observations given the new port, the announcer told; a metrics address refused
    after it moves the device back; a port in use refuses before anything moves."""
    from meshd.daemon import startup

    checked: list[int] = []
    monkeypatch.setattr(startup, "check_udp_port", checked.append)
    daemon = fake_daemon(babel=False)
    daemon.mesh = FakeMesh()
    new = DaemonConfig(STATE, listen_port=51999)
    assert trio.run(take, daemon, new, ["listen_port"]) == ("listen_port",)
    assert (checked, daemon.mesh.moved, daemon.config.listen_port) == ([51999], [51999], 51999)
    assert daemon.endpoints.calls == [("set_listen_port", (51999,))]
    assert daemon.announcer.calls == [("reconfigure", (daemon.config,))]
    refusing = fake_daemon(babel=False)
    refusing.mesh, refusing.metrics = FakeMesh(), FakeSlot(refuse=True)
    with pytest.raises(AddressUnavailable):
        trio.run(take, refusing, DaemonConfig(STATE, listen_port=51999, metrics="127.0.0.1:1"),
                 ["listen_port", "metrics"])  # fmt: skip
    assert (refusing.mesh.moved, refusing.mesh.listen_port) == ([51999, 51820], 51820)
    assert refusing.config.listen_port == 51820
    assert refusing.endpoints.calls == refusing.announcer.calls == []

    def in_use(port: int) -> None:
        raise AddressUnavailable(f"WireGuard's UDP port {port} is already in use")

    monkeypatch.setattr(startup, "check_udp_port", in_use)
    held = fake_daemon(babel=False)
    held.mesh = FakeMesh()
    with pytest.raises(AddressUnavailable, match="52001 is already in use"):
        trio.run(take, held, DaemonConfig(STATE, listen_port=52001), ["listen_port", "relay"])
    assert held.mesh.moved == []
    assert held.relaying.calls == []


def test_auto_renew_without_a_key_refuses_the_reload_and_changes_nothing() -> None:
    daemon = fake_daemon(babel=True, no_key=True)
    before = daemon.config
    new = dataclasses.replace(NEW, auto_renew=True)
    with pytest.raises(UsageError, match="auto-renew needs a key"):
        trio.run(take, daemon, new, ["auto_renew", "endpoint", "babel_originate"])
    assert daemon.config is before
    assert daemon.endpoints.calls == daemon.babel.calls == daemon.renewal.calls == []


def test_babel_options_wait_for_a_start_where_babel_does_not_run() -> None:
    daemon = fake_daemon(babel=False)
    wanted = ["babel_key", "babel_originate", "babel_redistribute", "relay"]
    assert trio.run(take, daemon, NEW, wanted) == ("relay",)
    assert daemon.config.babel == DaemonConfig(STATE).babel


def test_new_babel_links_and_hellos_go_to_babel_and_the_punching_service() -> None:
    """``babel_interface`` and ``babel_hello_interval``: Babel is given its new options (it
    starts again with them) and the punching service the new Hello interval (its silence
    limits follow it); a link this host does not have refuses the whole SIGHUP, nothing
    changed."""
    daemon = fake_daemon(babel=True)
    daemon.punching = Recorder()
    new = dataclasses.replace(NEW, babel=babel_config(interfaces=["lo"], hello_interval=1.0))
    wanted = ["babel_interface", "babel_hello_interval"]
    assert trio.run(take, daemon, new, wanted) == tuple(wanted[::-1])
    assert daemon.config.babel.interfaces == ("lo",)
    assert daemon.config.babel.hello_interval == 1.0
    assert daemon.babel.calls == [("reconfigure", (daemon.config.babel,))]
    assert daemon.punching.calls == [("set_hello_interval", (1.0,))]
    before, gone = daemon.config, babel_config(interfaces=["lo", "nosuchlink9"])
    with pytest.raises(UsageError, match="babel_interface nosuchlink9: no such network"):
        trio.run(take, daemon, dataclasses.replace(NEW, babel=gone), ["babel_interface", "relay"])
    assert daemon.config is before
    assert len(daemon.babel.calls) == 1
    assert daemon.relaying.calls == []
    only_hellos = dataclasses.replace(NEW, babel=babel_config(hello_interval=2.0))
    assert trio.run(take, daemon, only_hellos, ["babel_hello_interval"]) == (
        "babel_hello_interval",
    )
    assert daemon.config.babel.interfaces == ("lo",)  # not named: as it was
    assert daemon.punching.calls[-1] == ("set_hello_interval", (2.0,))


def test_a_prefix_not_ours_refuses_the_reload_and_changes_nothing() -> None:
    daemon = fake_daemon(babel=True, refused=("10.9.0.0/24",))
    before = daemon.config
    with pytest.raises(UsageError, match=r"--babel-originate 10.9.0.0/24: this member's"):
        trio.run(take, daemon, NEW, ["babel_originate", "endpoint"])
    assert daemon.config is before
    assert daemon.endpoints.calls == daemon.babel.calls == daemon.announcer.calls == []


def test_the_reloader_hands_the_live_options_over_and_names_the_rest(tmp_path: Path) -> None:
    reloader, path = _reloader(tmp_path, BASE + 'endpoint = ["192.0.2.1:51820"]\n')
    handed: list[tuple[DaemonConfig, tuple[str, ...]]] = []

    def apply_live(config: DaemonConfig, keys: tuple[str, ...]) -> tuple[str, ...]:
        handed.append((config, keys))
        return tuple(k for k in keys if k != "babel_originate")  # as without Babel

    reloader.apply_live = apply_live
    path.write_text(
        BASE + 'endpoint = ["192.0.2.7:51820"]\nrelay = "off"\ninterface = "mx9"\n'
        'babel_originate = ["10.9.0.0/24"]\n'
    )
    assert reloader.reload() == Reloaded(("endpoint", "relay"), ("babel_originate", "interface"))
    ((config, keys),) = handed
    assert keys == ("babel_originate", "endpoint", "relay")
    assert (config.endpoints, config.relay) == (("192.0.2.7:51820",), "off")
    # Taken once: a SIGHUP with nothing new hands nothing over again.
    assert reloader.reload() == Reloaded((), ("babel_originate", "interface"))
    assert len(handed) == 2
    assert handed[1][1] == ("babel_originate",)


def test_a_refusal_by_the_services_is_the_reload_error(tmp_path: Path) -> None:
    reloader, path = _reloader(tmp_path, BASE + 'log_level = "info"\n')

    def apply_live(config: DaemonConfig, keys: tuple[str, ...]) -> tuple[str, ...]:
        raise UsageError("--babel-originate 10.9.0.0/24: this member's certificate does not")

    reloader.apply_live = apply_live
    path.write_text(BASE + 'log_level = "debug"\nbabel_originate = ["10.9.0.0/24"]\n')
    outcome = reloader.reload()
    assert outcome.error.startswith("--babel-originate 10.9.0.0/24")
    assert (outcome.applied, outcome.waiting) == ((), ())
    assert reloader.current is not None
    assert reloader.current["log_level"] == "info"  # nothing of that SIGHUP applied


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def scraped(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return b"meshd_config_reloads_total" in answer.read()
    except OSError:
        return False


def test_a_running_daemon_announces_its_new_endpoint_at_a_sighup(tmp_path: Path) -> None:
    """A real ``meshd up`` (no WireGuard, so no Babel): a new ``endpoint`` in the file is
    announced at the SIGHUP; ``babel_originate``, which needs Babel, waits for a restart;
    ``metrics`` turns the endpoint on, and off again; the announcements' terms and
    ``auto_renew`` are taken."""
    from meshd.control.client import request

    state_dir = tmp_path / "n0"
    done = meshd("init", "--network", "livenet", "--name", "n0", "--state-dir", str(state_dir))
    assert done.returncode == 0, done.stderr
    config = tmp_path / "meshd.toml"
    config.write_text(BASE + 'endpoint = ["192.0.2.1:51820"]\n')
    log_path = tmp_path / "n0.log"
    process = up_with_config(state_dir, config, log_path)
    sock = state_dir / "meshd.sock"

    def status() -> dict[str, Any]:
        assert process.poll() is None, log_path.read_text()[-2000:]
        return request(sock, "status", {}, timeout=5.0)  # type: ignore[no-any-return]

    try:
        wait_for(lambda: sock.exists() and status()["endpoints"] == ["192.0.2.1:51820"], 60)
        announced = log_path.read_text().count("announcing (")
        config.write_text(
            BASE + 'endpoint = ["192.0.2.7:51820"]\nbabel_originate = ["10.9.0.0/24"]\n'
        )
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: status()["endpoints"] == ["192.0.2.7:51820"], 10, "the new endpoint")
        wait_for(lambda: log_path.read_text().count("announcing (") > announced, 10)
        # The reload's report is logged once the running daemon took the options, which the
        # announcement may precede.
        wait_for(lambda: _reported(log_path.read_text()), 10, "the reload's report")
        seen = status()["config"]
        assert (seen["reloads"], seen["failed"], seen["waiting"]) == (1, 0, ["babel_originate"])
        # The metrics endpoint turned on, then off, without a restart.
        port = free_port()
        config.write_text(BASE + f'endpoint = ["192.0.2.7:51820"]\nmetrics = "127.0.0.1:{port}"\n')
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: scraped(port), 10, "the metrics endpoint")
        config.write_text(BASE + 'endpoint = ["192.0.2.7:51820"]\n')
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: not listening(port), 10, "the metrics endpoint to close")
        # The endpoint closes while the SIGHUP is applied, before the reload is counted.
        wait_for(lambda: status()["config"]["reloads"] == 3, 10, "the third reload counted")
        seen = status()["config"]
        assert (seen["reloads"], seen["failed"], seen["waiting"]) == (3, 0, [])
        # The announcements' terms and renewal (this founder holds the root key).
        lifecycle = 'announce_interval = "2m"\nannounce_ttl = "20m"\nauto_renew = true\n'
        config.write_text(BASE.replace('announce_interval = "60s"\nannounce_ttl = "10m"\n', "")
                          + lifecycle + 'endpoint = ["192.0.2.7:51820"]\n')  # fmt: skip
        process.send_signal(signal.SIGHUP)
        took = "SIGHUP: the running daemon took announce_interval, announce_ttl, auto_renew"
        wait_for(lambda: took in log_path.read_text(), 10, "the lifecycle options taken")
        seen = status()["config"]
        assert (seen["reloads"], seen["failed"], seen["waiting"]) == (4, 0, [])
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


class FakeSlot:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.moved: list[str | None] = []

    async def move(self, address: str | None) -> None:
        if self.refuse:
            raise AddressUnavailable(f"--metrics {address}: cannot listen: in use")
        self.moved.append(address)


def test_the_metrics_endpoint_moves_and_a_refusal_changes_nothing() -> None:
    daemon = fake_daemon(babel=True)
    daemon.metrics = FakeSlot()
    new = dataclasses.replace(NEW, metrics="127.0.0.1:9101")
    assert trio.run(take, daemon, new, ["metrics", "relay"]) == ("metrics", "relay")
    assert daemon.metrics.moved == ["127.0.0.1:9101"]
    assert daemon.config.metrics == "127.0.0.1:9101"
    refusing = fake_daemon(babel=True)
    refusing.metrics = FakeSlot(refuse=True)
    before = refusing.config
    with pytest.raises(AddressUnavailable):
        trio.run(take, refusing, new, ["metrics", "relay"])
    assert refusing.config is before
    assert refusing.relaying.calls == refusing.announcer.calls == []


def test_a_new_bootstrap_option_is_what_an_isolated_node_dials_next() -> None:
    peer = peer_id_text(bytes(32))
    kept = f"/ip4/192.0.2.1/tcp/7100/p2p/{peer}".encode()
    daemon = fake_daemon(babel=False)
    daemon.state.node.store.get_meta = {"bootstrap": kept}.get
    daemon.state.peer_key = peer_key
    daemon.connections.policy.rejoin = SimpleNamespace(bootstrap={})
    daemon.bootstrap_targets = lambda config: Daemon.bootstrap_targets(daemon, config)
    named = f"/dns/mesh.example.org/tcp/7100/p2p/{peer}"
    new = DaemonConfig(STATE, bootstrap=(named,))
    assert taken(DaemonConfig(STATE), new, ["bootstrap"]).bootstrap == (named,)
    assert trio.run(take, daemon, new, ["bootstrap"]) == ("bootstrap",)
    # The option's first, then what join kept.
    assert daemon.connections.policy.rejoin.bootstrap == {bytes(32): (named, kept.decode())}
    assert daemon.config.bootstrap == (named,)


def _reported(text: str) -> bool:
    return (
        "SIGHUP: the running daemon took endpoint" in text
        and "SIGHUP: babel_originate changed; it takes effect when meshd starts again" in text
    )
