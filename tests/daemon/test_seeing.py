"""``meshd peers`` paths and ``meshd netcheck`` from the daemon's control handlers, on the fake
transport and the in-memory WireGuard device (tests/daemon/fakes.py).

The device is what decides: a member whose overlay address sits on its own peer with a fresh
handshake is direct at the endpoint WireGuard shows; one whose overlay address sits on another
member's peer (where Babel puts a relayed member) is relayed via that member; a member with
no handshake is none. netcheck lists the members that reach this node directly.
"""

from __future__ import annotations

import dataclasses
import math
import time
from ipaddress import ip_interface

import trio
import trio.testing

from meshd.control.commands import NetcheckAnswer, PeersAnswer
from meshd.control.typed_json import decode_answer
from meshd.mesh.underlay import LocalAddress
from meshd.node.statedir import NodeDir, now
from meshd.wg.model import PeerStatus
from tests.daemon.fakes import certify, fake_now, run_on_fake_clock, running


def test_peers_show_direct_relay_and_none_and_netcheck_who_reaches_us(node: NodeDir) -> None:
    base = now()

    async def main() -> None:
        async with running(node, base) as (daemon, transport, backend):
            keys, node_keys = {}, {}
            for name in ("near", "far", "lost"):
                member = certify(node, fake_now(base), name)
                node_keys[name], keys[name] = member.key.public, member.wg
                assert transport.deliver(member.cert.raw, "author", "neighbour")
            await trio.testing.wait_all_tasks_blocked()
            peers = backend.state.peers_by_key()
            assert set(keys.values()) <= set(peers)

            # near: a fresh handshake from 198.51.100.7:40000. far: its overlay /128 moved to
            # near's peer (relayed through near). lost: programmed, never answered.
            near, far = peers[keys["near"]], peers[keys["far"]]
            moved = tuple(n for n in far.config.allowed_ips if n.prefixlen == 128)
            near = PeerStatus(
                dataclasses.replace(
                    near.config,
                    endpoint="198.51.100.7:40000",
                    allowed_ips=near.config.allowed_ips + moved,
                ),
                last_handshake=time.time() - 3,
            )
            far = PeerStatus(
                dataclasses.replace(far.config, allowed_ips=far.config.allowed_ips[:0]),
                last_handshake=time.time() - 600,
            )
            others = tuple(
                p
                for p in backend.state.peers
                if p.public_key not in (near.public_key, far.public_key)
            )
            backend.state = dataclasses.replace(backend.state, peers=(near, far, *others))

            rows = decode_answer(PeersAnswer, await daemon.control.dispatch("peers", {})).rows
            paths = {r.name: (r.path, r.path_endpoint, r.path_via) for r in rows}
            states = {r.name: r.path_state for r in rows}
            assert states.pop("founder") is None
            # (The punching service tries nothing on the in-memory device: no state.)
            assert set(states.values()) <= {"trying", "direct", "relay", "none", None}
            assert paths == {
                "founder": (None, None, None),
                "near": ("direct", "198.51.100.7:40000", None),
                "far": ("relay", None, "near"),
                "lost": ("none", None, None),
            }

            answer = decode_answer(NetcheckAnswer, await daemon.control.dispatch("netcheck", {}))
            assert answer.members == 3
            assert [(r.name, r.endpoint) for r in answer.reachable_from] == [
                ("near", "198.51.100.7:40000")
            ]
            assert answer.listen_port == 51820
            assert (answer.nat, answer.behind_nat, answer.observing) == ("unknown", None, True)
            assert answer.seen == answer.reflexive == ()

            # Two members report the same mapping of our WireGuard port: a cone NAT, and a
            # reflexive endpoint; a third sees another port of that address: symmetric.
            # The clock stands still from here: a dispatch that waits for a thread leaves
            # every task blocked, and the autojumping clock would jump to the daemon's next
            # timer, past the reports' lifetime (1 run in 6 before).
            clock = trio.lowlevel.current_clock()
            assert isinstance(clock, trio.testing.MockClock)
            clock.autojump_threshold = math.inf
            daemon.endpoints.set_local([LocalAddress("eth0", ip_interface("192.0.2.10/24"))], [])
            at = trio.current_time()
            for name in ("near", "far"):
                assert daemon.endpoints.report(node_keys[name], "203.0.113.5:51820", "", at)
            answer = decode_answer(NetcheckAnswer, await daemon.control.dispatch("netcheck", {}))
            assert (answer.nat, answer.behind_nat) == ("cone", True)
            assert [(s.endpoint, s.observers, s.own) for s in answer.seen] == [
                ("203.0.113.5:51820", 2, False)
            ]
            assert answer.reflexive == ("203.0.113.5:51820",)
            # local: what we announce beside it, not it, nor the announcement's kinds entry
            # local: the other candidates we announce (here one interface address), not the
            # reflexive one
            assert answer.local == ("192.0.2.10:51820",)
            assert daemon.endpoints.report(node_keys["lost"], "203.0.113.5:40000", "", at)
            answer = decode_answer(NetcheckAnswer, await daemon.control.dispatch("netcheck", {}))
            assert (answer.nat, answer.behind_nat) == ("symmetric", True)

    run_on_fake_clock(main)
