"""A Babel speaker on one link under any router-id: the hostile site router of the lab tests.

Run it inside a network namespace::

    python -m tests.babel.lan_speaker IFNAME --router-id HEX [--seqno N] [--rxcost N]
        [--hello S] [--duration S] PREFIX...

It speaks ordinary multicast Babel on ``IFNAME`` (meshd's own core and shell, no kernel
routes) and originates every ``PREFIX`` with metric 0 under ``--router-id``, with our seqno
starting at ``--seqno``; its IHUs report ``--rxcost`` for hearing the others, so that they
see it one cheap hop away. It stops after ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import ipaddress

import trio

from meshd.babel.core import BabelCore
from meshd.babel.ports import UdpPort, interface_addresses
from meshd.babel.shell import BabelShell


async def speak(args: argparse.Namespace) -> None:
    addresses = await interface_addresses(args.interface)
    core = BabelCore(bytes.fromhex(args.router_id))
    core.seqno = args.seqno
    core.add_interface(
        args.interface,
        kind="wired",
        hello_interval=args.hello,
        link_local=addresses.link_local,
        ipv4=addresses.ipv4,
        rxcost=args.rxcost,
    )
    for prefix in args.prefixes:
        core.originate(ipaddress.ip_network(prefix))
    port = await UdpPort.open(args.interface, addresses, multicast=True)
    with trio.move_on_after(args.duration):
        await BabelShell(core, [port]).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("interface")
    parser.add_argument("prefixes", nargs="+")
    parser.add_argument("--router-id", required=True, help="16 hex digits")
    parser.add_argument("--seqno", type=int, default=0)
    parser.add_argument("--rxcost", type=int, default=96)
    parser.add_argument("--hello", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=10.0)
    trio.run(speak, parser.parse_args())


if __name__ == "__main__":
    main()
