"""A restart sets the peers its last stop kept while the store loads (meshd.daemon.kept_peers);
the first round, from the judged store, corrects whatever they got wrong."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from meshd.daemon.kept_peers import KeptWrite, along, keep
from meshd.mesh.desired import Underlay
from meshd.mesh.kept_peers import KeptPeer, decode_kept_peers_untrusted
from meshd.trust.keys import NodeKey, WgKey
from meshd.wg.backend_none import NullBackend
from meshd.wg.errors import UapiErrnoError
from meshd.wg.model import Operation, PeerConfig, RemovePeer, UpdatePeer
from tests.factory import DAY, T0, Net
from tests.mesh.shell_support import make_mesh, run
from tests.mesh.support import member

NOW = T0 + 100


def kept_config(seed: str, endpoint: str | None) -> PeerConfig:
    m = member(seed)
    return KeptPeer(m.wg_key, 2 * 10**9, int(m.overlay), endpoint).config()


class Recording(NullBackend):
    """An in-memory device that notes every set the rounds make."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.sets: list[list[Operation]] = []

    async def set(self, operations: Sequence[Operation]) -> None:
        self.sets.append(list(operations))
        await super().set(operations)


class Threaded(Recording):
    """An in-memory device that notes every set, those made to be sent from a thread too."""

    def prepared_set(self, operations: Sequence[Operation]) -> Callable[[], None]:
        apply = super().prepared_set(operations)
        ops = list(operations)

        def sent() -> None:
            self.sets.append(ops)
            apply()

        return sent


class Refusing(Threaded):
    """A device that refuses the first set made to be sent from a thread (the kept peers, or
    the admitted members' keys); the first round's own go in."""

    error: Exception = UapiErrnoError(22, "set")
    refused = False

    def prepared_set(self, operations: Sequence[Operation]) -> Callable[[], None]:
        if self.refused:
            return super().prepared_set(operations)
        self.refused = True

        def refuse() -> None:
            raise self.error

        return refuse


class Buggy(Refusing):
    """A set from a thread that raises what no device says: a bug of ours."""

    error = RuntimeError("a bug")


def counted_reads(backend: NullBackend) -> list[int]:
    """The device's reads from now on, one entry each."""
    reads: list[int] = []
    real_get = backend.get

    async def get() -> Any:
        reads.append(1)
        return await real_get()

    backend.get = get  # type: ignore[method-assign]
    return reads


def test_kept_peers_are_set_and_the_first_round_corrects_them_without_reading_back() -> None:
    async def main() -> None:
        # m3 was revoked since; m2's announcement moved its endpoint.
        members = [member("m1"), member("m2", endpoints=("198.51.100.2:51820",))]
        mesh, backend = make_mesh(Recording, members, "kp0", shared=True, keepalive=25)
        kept = [
            kept_config("m1", "192.0.2.1:51820"),
            kept_config("m2", "192.0.2.1:51820"),
            kept_config("m3", "192.0.2.1:51820"),
        ]
        writing = KeptWrite.start(mesh, kept)
        assert writing is not None
        assert await writing.finish()
        assert {p.public_key for p in backend.state.peers} == {p.public_key for p in kept}
        reads = counted_reads(backend)
        assert await mesh.reconcile()
        assert not reads  # the first round planned from the peers it set
        on_device = {p.public_key: p.config for p in backend.state.peers}
        assert set(on_device) == {members[0].wg_key, members[1].wg_key}  # m3 gone at once
        # Nothing was set again for m1, and the keepalives come after the round, not in it.
        (first,) = backend.sets
        assert all(
            isinstance(op, UpdatePeer | RemovePeer) and op.public_key != members[0].wg_key
            for op in first
        )
        assert not any(isinstance(op, UpdatePeer) and op.persistent_keepalive for op in first)
        assert await mesh._set_keepalives()
        assert all(p.config.persistent_keepalive == 25 for p in backend.state.peers)
        # m2's new endpoint, on a peer that never answered: at once, or a second later if
        # our key is the higher one (first handshakes must not cross), as for any such peer.
        await trio.sleep(1.1)
        assert await mesh.reconcile()
        on_device = {p.public_key: p.config for p in backend.state.peers}
        assert on_device[members[1].wg_key].endpoint == "198.51.100.2:51820"
        assert on_device[members[0].wg_key].endpoint == "192.0.2.1:51820"

    run(main)


@pytest.mark.parametrize(("device", "said"), [(Refusing, "errno 22"), (Buggy, "a bug")])
def test_a_device_that_refuses_the_kept_peers_is_programmed_by_the_first_round(
    device: type[Refusing], said: str
) -> None:
    async def main() -> None:
        members = [member("m1"), member("m2")]
        mesh, backend = make_mesh(device, members, "kp1", shared=True, keepalive=None)
        writing = KeptWrite.start(mesh, [kept_config("m1", None)])
        assert writing is not None
        assert not await writing.finish()
        assert mesh.errors == 1
        assert said in mesh.last_error.lower()
        assert await mesh.reconcile()  # reads the device, as without a list
        assert {p.public_key for p in backend.state.peers} == {m.wg_key for m in members}

    run(main)


def test_nothing_is_set_from_a_thread_without_peers() -> None:
    mesh, _ = make_mesh(NullBackend, [member("m1")], "kp2")
    assert KeptWrite.start(mesh, []) is None


def _node(net: Net, store: dict[str, bytes]) -> Any:
    def keep_peers(data: bytes) -> bool:
        store["kept"] = data
        return True

    return SimpleNamespace(
        anchor=SimpleNamespace(overlay=net.anchor.overlay),
        store=SimpleNamespace(keep_peers=keep_peers),
    )


def joined(net: Net, state: Any, count: int) -> list[Any]:
    """A founder's membership ``state`` with ``count`` members joined under invites of
    their own (at ``NOW``): the founder first, then each member."""
    founder = net.founder()
    state.ingest(founder.credential, NOW)
    nodes = [founder]
    for i in range(count):
        node = net.join(state, founder, net.invite(), f"m{i}", at=T0 + 10 + i)
        state.ingest(node.credential, NOW)
        nodes.append(node)
    return nodes


def _network() -> tuple[Net, Any, list[Any]]:
    net = Net()
    state = net.state()
    nodes = joined(net, state, 3)
    for i, node in enumerate(nodes[1:]):
        state.ingest(node.announce(net, NOW, endpoints=(f"192.0.2.{i + 1}:51820",)), NOW)
    state.tick(NOW)
    return net, state, nodes


def _keep(net: Net, stored: dict[str, bytes], state: Any, node: Any, now: int) -> int | None:
    """:func:`keep` at ``now`` for ``node`` (a stopping member), into ``stored``."""
    return keep(
        _node(net, stored),
        state,
        own_node_key=NodeKey(node.key.public),
        own_wg_key=WgKey(node.wg.public),
        underlay=Underlay(),
        now=now,
    )


def test_a_stop_keeps_the_peers_the_membership_gives_until_it_could_judge_otherwise() -> None:
    net, state, (founder, *nodes) = _network()
    stored: dict[str, bytes] = {}
    count = _keep(net, stored, state, founder, NOW)
    assert count == 3
    listed = decode_kept_peers_untrusted(stored["kept"])
    assert {p.wg_key for p in listed.peers} == {n.wg.public for n in nodes}
    assert {p.endpoint for p in listed.peers} == {f"192.0.2.{i + 1}:51820" for i in range(3)}
    since, until = state.judged_window()
    assert listed.written_at == NOW
    assert NOW < listed.valid_until <= until
    overlay = net.anchor.overlay
    assert isinstance(overlay, ipaddress.IPv6Network)
    assert listed.usable(NOW + 1, overlay)
    assert not listed.usable(until, overlay)
    assert since <= NOW


def test_nothing_is_kept_for_a_node_not_admitted_or_with_judgements_out_of_date() -> None:
    net, state, (founder, *_) = _network()
    stored: dict[str, bytes] = {}
    stranger = SimpleNamespace(
        key=SimpleNamespace(public=bytes(32)), wg=SimpleNamespace(public=bytes(32))
    )
    assert _keep(net, stored, state, stranger, NOW) is None
    _, until = state.judged_window()
    for now in (NOW - 1, until, NOW + 400 * DAY):  # before the last tick; past the window
        assert _keep(net, stored, state, founder, now) is None
    assert not stored


def test_a_kept_peer_behind_a_nat_is_set_where_our_wireguard_last_saw_it() -> None:
    # wg-endpoints (meshd.daemon.last_endpoints): the first round gives the peer that
    # endpoint; set so from the start, the round leaves it (no endpoint moved a second later).
    one, two = kept_config("m1", "192.0.2.1:51820"), kept_config("m2", None)
    paths = {one.public_key: ("203.0.113.9:40001", 25, None)}
    moved, same = along([one, two], paths)
    assert moved.endpoint == "203.0.113.9:40001"
    assert moved.allowed_ips == one.allowed_ips
    assert moved.persistent_keepalive is None  # the keepalive comes after the first round
    assert same is two
