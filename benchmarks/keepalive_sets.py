"""The time of each UAPI ``set`` that gives wireguard-go's peers a persistent keepalive.

A wireguard-go device in a fresh network namespace (only ``lo``: the peers' endpoints,
198.18.0.0/15 as in ``benchmarks.startup``, have no route and nobody answers) gets
``--members`` peers without a keepalive, in sets of 1,000; then every peer gets a keepalive,
in sets of ``--chunk``, each set timed. wireguard-go sends the keepalive inside the set, and
a peer without a session first makes a handshake initiation. Needs root and wireguard-go.

    .venv/bin/python -m benchmarks.keepalive_sets --members 10000 --chunk 1000 200
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import time

import trio
from nacl.bindings import crypto_scalarmult_base

from benchmarks.measured_daemon import have_userspace, namespace
from meshd.wg.backend import InterfaceConfig
from meshd.wg.backend_userspace import UserspaceBackend
from meshd.wg.model import UpdatePeer, clamp_private_key


async def measure(netns: str, members: int, chunk: int) -> list[float]:
    """Seconds per keepalive set of ``chunk`` peers, in order."""
    config = InterfaceConfig(
        f"mka{secrets.token_hex(3)}", clamp_private_key(secrets.token_bytes(32)), netns=netns
    )
    backend = await UserspaceBackend.start(config)
    backend.uapi.timeout = 600.0
    try:
        keys = [
            crypto_scalarmult_base(clamp_private_key(secrets.token_bytes(32)))
            for _ in range(members)
        ]
        created = [
            UpdatePeer(
                k,
                endpoint=f"198.18.{i >> 8 & 255}.{i & 255}:51820",
                allowed_ips=(ipaddress.IPv6Network((0xFD00 << 112 | (i + 1), 128)),),
            )
            for i, k in enumerate(keys)
        ]
        for start in range(0, members, 1000):
            await backend.set(created[start : start + 1000])
        keepalives = [UpdatePeer(k, update_only=True, persistent_keepalive=25) for k in keys]
        times = []
        for start in range(0, members, chunk):
            began = time.perf_counter()
            await backend.set(keepalives[start : start + chunk])
            times.append(time.perf_counter() - began)
        return times
    finally:
        await backend.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=10000)
    parser.add_argument("--chunk", type=int, nargs="+", default=[1000, 200])
    args = parser.parse_args()
    if not have_userspace():
        parser.error("needs root and wireguard-go")
    for chunk in args.chunk:
        with namespace(f"meshd-ka-{secrets.token_hex(2)}") as netns:
            times = trio.run(measure, netns, args.members, chunk)
        print(
            f"{args.members} peers, keepalives in sets of {chunk}: {sum(times):.2f} s in all, "
            f"set max {max(times):.3f} s, min {min(times):.3f} s, over 5 s: "
            f"{sum(t > 5.0 for t in times)} of {len(times)}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
