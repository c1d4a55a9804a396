"""A start without kept peers sets the admitted members' keys from a worker thread while the
first round is planned (meshd.daemon.early_keys); that round makes each peer it wants whole,
removes the keys it does not want, and sends nothing before the keys' set has ended."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from meshd.daemon.early_keys import EarlyKeys
from meshd.mesh.handshake import FirstHandshakes
from meshd.trust.keys import WgKey
from meshd.wg.backend_none import NullBackend
from meshd.wg.model import Operation, RemovePeer, UpdatePeer
from tests.daemon.test_kept_peers import Buggy, Refusing, Threaded, counted_reads, joined
from tests.factory import T0, Net
from tests.mesh.shell_support import make_mesh, run
from tests.mesh.support import member

NOW = T0 + 100


def judged(*keys: bytes) -> Any:
    """A membership whose recorded judgements admit the members of ``keys``."""
    return SimpleNamespace(admitted_wg_keys=lambda now: list(keys))


class Held(Threaded):
    """A device whose keys' request waits until the test lets it go, noting the order in
    which requests are made ("made": the round's) and reach it ("keys", "round")."""

    keys_made = False

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.release = trio.Event()
        self.order: list[str] = []
        self.token = trio.lowlevel.current_trio_token()

    def prepared_set(self, operations: Sequence[Operation]) -> Callable[[], None]:
        send = super().prepared_set(operations)
        if self.keys_made:  # one of the round's
            self.order.append("made")

            def sent() -> None:
                self.order.append("round")
                send()

            return sent
        self.keys_made = True

        def held() -> None:
            trio.from_thread.run(self.release.wait, trio_token=self.token)
            self.order.append("keys")
            send()

        return held

    async def set(self, operations: Sequence[Operation]) -> None:
        self.order.append("round")
        await super().set(operations)


def test_the_first_round_makes_the_early_keys_whole_and_removes_the_unwanted() -> None:
    async def main() -> None:
        # m1 and m2 are members the round wants; m3 was judged admitted when the keys were
        # taken and is not wanted by the round's own view (revoked since, say).
        members = [member("m1"), member("m2", endpoints=("198.51.100.2:51820",))]
        mesh, backend = make_mesh(Threaded, members, "ek0", shared=True, keepalive=25)
        m3 = member("m3").wg_key
        early = EarlyKeys.start(mesh, judged(members[0].wg_key, members[1].wg_key, m3), NOW)
        assert early is not None
        reads = counted_reads(backend)
        assert await mesh.reconcile()
        assert not reads  # planned as for the empty device it opened
        on_device = {p.public_key: p.config for p in backend.state.peers}
        assert set(on_device) == {members[0].wg_key, members[1].wg_key}  # m3 removed
        assert on_device[members[0].wg_key].endpoint == "192.0.2.1:51820"
        assert on_device[members[1].wg_key].endpoint == "198.51.100.2:51820"
        assert all(config.allowed_ips for config in on_device.values())
        keys, first = backend.sets  # the keys' request, then the round's one set
        set_keys = {op.public_key for op in keys if isinstance(op, UpdatePeer)}
        assert set_keys == {members[0].wg_key, members[1].wg_key, m3}
        assert len(keys) == 3
        assert RemovePeer(m3) in first
        # Each wanted peer made whole once, as a creation: never removed and made again
        # (the first-handshake rule for a peer given an endpoint it never answered from).
        assert not any(isinstance(op, RemovePeer) and op.public_key != m3 for op in first), first
        assert not any(isinstance(op, UpdatePeer) and op.persistent_keepalive for op in first)
        assert await mesh._set_keepalives()
        assert all(p.config.persistent_keepalive == 25 for p in backend.state.peers)

    run(main)


def test_the_first_round_checks_back_on_early_peers_as_on_its_own_creations() -> None:
    async def main() -> None:
        members = [member(f"m{i}") for i in range(6)]
        mesh, _ = make_mesh(Threaded, members, "ek1", shared=True, keepalive=25)
        EarlyKeys.start(mesh, judged(*(m.wg_key for m in members)), NOW)
        assert await mesh.reconcile()
        # The higher key checks back on each peer it created with an endpoint, a second on.
        own = FirstHandshakes(mesh.own_wg_key)
        higher = {WgKey(m.wg_key) for m in members if not own.goes_first(WgKey(m.wg_key))}
        assert higher  # the seeds give both kinds
        assert mesh._first.waiting() == higher

    run(main)


def test_the_first_round_makes_its_request_while_the_keys_go_in_and_sends_it_after() -> None:
    async def main() -> None:
        members = [member("m1"), member("m2")]
        mesh, backend = make_mesh(Held, members, "ek2", shared=True, keepalive=None)
        EarlyKeys.start(mesh, judged(*(m.wg_key for m in members)), NOW)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(mesh.reconcile)
            await trio.sleep(5)  # the round is planned, its request made: it waits for the keys
            assert backend.order == ["made"]
            backend.release.set()
        assert backend.order == ["made", "keys", "round"]
        assert {p.public_key for p in backend.state.peers} == {m.wg_key for m in members}
        assert all(p.config.allowed_ips for p in backend.state.peers)

    trio.run(main)


@pytest.mark.parametrize(("device", "said"), [(Refusing, "errno 22"), (Buggy, "a bug")])
def test_a_device_that_refuses_the_early_keys_is_programmed_by_the_first_round(
    device: type[Refusing], said: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        members = [member("m1"), member("m2")]
        mesh, backend = make_mesh(device, members, "ek3", shared=True, keepalive=None)
        assert EarlyKeys.start(mesh, judged(*(m.wg_key for m in members)), NOW) is not None
        assert await mesh.reconcile()
        assert mesh.errors == 1
        assert said in mesh.last_error.lower()
        assert {p.public_key for p in backend.state.peers} == {m.wg_key for m in members}
        assert all(p.config.allowed_ips for p in backend.state.peers)

    run(main)
    level = "ERROR" if device is Buggy else "WARNING"
    assert any(r.levelname == level and "first round" in r.message for r in caplog.records)


def test_nothing_is_set_early_without_admitted_members_or_judgements_that_hold() -> None:
    mesh, backend = make_mesh(NullBackend, [member("m1")], "ek4")
    stale: Any = SimpleNamespace(admitted_wg_keys=lambda now: None)  # judgements past
    assert EarlyKeys.start(mesh, stale, NOW) is None
    assert EarlyKeys.start(mesh, judged(), NOW) is None
    assert EarlyKeys.start(mesh, judged(mesh.own_wg_key), NOW) is None  # ourselves alone
    assert not backend.state.peers


def test_our_own_key_is_never_set_as_a_peer() -> None:
    async def main() -> None:
        members = [member("m1")]
        mesh, backend = make_mesh(Threaded, members, "ek5", shared=True, keepalive=None)
        EarlyKeys.start(mesh, judged(members[0].wg_key, mesh.own_wg_key), NOW)
        assert await mesh.reconcile()
        assert {p.public_key for p in backend.state.peers} == {members[0].wg_key}

    run(main)


def test_a_membership_gives_the_keys_of_the_members_it_judged_admitted() -> None:
    net = Net()
    state = net.state(announce_ttl=60)
    founder, *nodes = joined(net, state, 4)
    later = NOW + 100
    for announcing in (founder, nodes[0], nodes[1]):
        state.ingest(announcing.announce(net, later), later)
    state.ingest(net.revoke(nodes[1].key.public, at=later), later)
    now = later + 30
    state.tick(now)
    # m0 admitted; m1 revoked; m2 and m3 silent past the limit (their credentials stand).
    keys = state.admitted_wg_keys(now)
    assert keys is not None
    assert sorted(keys) == sorted([founder.wg.public, nodes[0].wg.public])
    views = state.members(now)
    assert sorted(keys) == sorted(m.wg_key for m in views if m.state.name == "ADMITTED")
    assert {m.name: m.state.name for m in views if m.name in ("m2", "m3")} == {
        "m2": "EXPIRED",
        "m3": "EXPIRED",
    }
    # Judgements that no longer hold give none: a clock set back, or past the window.
    _, until = state.judged_window()
    assert state.admitted_wg_keys(now - 1) is None
    assert state.admitted_wg_keys(until) is None


def test_a_bug_in_taking_the_keys_leaves_the_start_to_the_first_round(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        members = [member("m1")]
        mesh, backend = make_mesh(Threaded, members, "ek6", shared=True, keepalive=None)

        def broken(now: int) -> list[bytes]:
            raise RuntimeError("a bug")

        buggy: Any = SimpleNamespace(admitted_wg_keys=broken)
        assert EarlyKeys.start(mesh, buggy, NOW) is None
        reads = counted_reads(backend)
        assert await mesh.reconcile()
        assert reads  # nothing assumed: the device was read
        assert {p.public_key for p in backend.state.peers} == {members[0].wg_key}

    run(main)
    assert any(r.levelname == "ERROR" and "a bug in meshd" in r.message for r in caplog.records)
