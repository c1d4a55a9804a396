"""A hostile member's side of the NAT protocol, run in its lab host's namespace.

Usage: ``python -m tests.lab_mesh.nat_hostile STATE_DIR NETWORK_ID SECONDS VICTIM_ADDR
THIRD_KEY_HEX EVIL`` connects to the victim as the member whose node key is in STATE_DIR and,
for SECONDS, sends it every 0.2 s a punch notice naming the third member with EVIL as its
hint, a report that the victim's WireGuard is at EVIL, and a punch request for the third
member. Prints how many messages went out.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from meshd.gossip import nat
from meshd.gossip.host import GossipHost, HostConfig
from meshd.trust.keyfiles import read_secret


def _accept_all(*message: object) -> bool:
    return True


async def main(state_dir: str, network_id: str, seconds: float, victim: str, third: bytes,
               evil: str) -> int:  # fmt: skip
    config = HostConfig(
        identity_seed=read_secret(Path(state_dir) / "node.key"),
        listen_addrs=("/ip4/0.0.0.0/tcp/0",),
        topic=f"/meshd/{network_id}/1",
        shutdown_timeout=3.0,
    )
    sent = 0
    messages: list[nat.Message] = [
        nat.PunchNotice(third, (evil, evil)),
        nat.Report(evil, evil),
        nat.PunchRequest(third),
    ]
    async with GossipHost(config, _accept_all) as host:
        result = await host.connect_any([victim])
        victim_id = result[0].peer_id
        assert result[0].ok, result
        assert victim_id is not None
        with trio.move_on_after(seconds):
            while True:
                for message in messages:
                    stream = await host.open_stream(victim_id, nat.PROTOCOL_ID)
                    await stream.send_frame(nat.encode_message(message))
                    await stream.close()
                    sent += 1
                await trio.sleep(0.2)
    return sent


if __name__ == "__main__":
    state, network, secs, victim_addr, third_hex, evil_endpoint = sys.argv[1:7]
    print(trio.run(main, state, network, float(secs), victim_addr, bytes.fromhex(third_hex),
                   evil_endpoint))  # fmt: skip
