"""``python -m meshd.lab``: build a lab for a demo or a manual test, list and remove labs.

    python -m meshd.lab up --hosts 5          # build, print the names, wait for Ctrl-C
    python -m meshd.lab up --hosts 5 --keep   # build, print the names, leave it running
    python -m meshd.lab up --hosts 1 --nat cone:2 --nat symmetric   # and hosts behind NATs
    python -m meshd.lab list                  # labs on this machine, live or left over
    python -m meshd.lab down RUNID            # remove one lab
    python -m meshd.lab down --all            # remove every lab

``up`` tears its lab down on exit, on Ctrl-C and on SIGTERM (and through atexit), unless
``--keep`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from meshd.lab import naming
from meshd.lab.commands import LabError
from meshd.lab.filters import FILTER_NAMES
from meshd.lab.lab import Lab
from meshd.lab.nat import NAT_KINDS
from meshd.lab.runs import list_runs
from meshd.lab.teardown import destroy_run


class Terminated(Exception):
    """SIGTERM arrived: unwind like Ctrl-C, so ``with Lab`` (and atexit) tear the lab down."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def describe(lab: Lab) -> dict[str, object]:
    return {
        "run_id": lab.run_id,
        "router": lab.router_netns,
        "udp_filter": lab.udp_filter,
        "dir": str(lab.dir),
        "hosts": [
            {
                "name": h.name,
                "netns": h.netns,
                "ifname": h.ifname,
                "router_ifname": h.router_ifname,
                "wg_ifname": h.wg_ifname,
                "ipv4": str(h.ipv4),
                "ipv6": str(h.ipv6),
                "behind": h.behind,
            }
            for h in lab.hosts
        ],
        "nats": [
            {
                "name": n.name,
                "kind": n.kind,
                "netns": n.netns,
                "wan4": str(n.wan4),
                "wan6": str(n.wan6),
                "lan4": str(n.lan4),
                "lan6": str(n.lan6),
                "behind": n.behind,
            }
            for n in lab.nats
        ],
    }


def print_lab(lab: Lab, as_json: bool) -> None:
    if as_json:
        print(json.dumps(describe(lab), indent=2), flush=True)
        return
    print(f"lab {lab.run_id}: router {lab.router_netns}, UDP filter {lab.udp_filter}")
    for h in lab.hosts:
        addresses = f"{h.ipv4!s:<15} {h.ipv6!s:<24}"
        where = f" behind {h.behind}" if h.behind else ""
        print(f"  {h.name:<4} {h.netns:<22} {h.ifname:<12} {addresses} wg {h.wg_ifname}{where}")
    for n in lab.nats:
        print(f"  NAT {n.name} ({n.kind}) {n.netns}: WAN {n.wan4} {n.wan6}, LAN {n.lan4} {n.lan6}")
    target = [h for h in lab.hosts if h.behind is None][-1]
    print(f"  e.g. ip netns exec {lab.hosts[0].netns} ping -c1 {target.ipv6.ip}", flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _raise_terminated)
    started = time.monotonic()
    lab = Lab(args.hosts, udp_filter=args.udp_filter)
    with lab:
        for kind, count in args.nat:
            nat = lab.add_nat(kind=kind)
            for _ in range(count):
                lab.add_host(behind=nat)
        built = time.monotonic() - started
        print_lab(lab, args.json)
        print(f"built in {built * 1000:.0f} ms", file=sys.stderr)
        if args.keep:
            # Leave it: forget the lab, so neither ``with`` nor atexit removes it.
            lab.detach()
            print(f"kept; remove it with: python -m meshd.lab down {lab.run_id}", file=sys.stderr)
            return 0
        print("press Ctrl-C (or send SIGTERM) to tear it down", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt, Terminated):
            threading.Event().wait()
        started = time.monotonic()
    print(f"torn down in {(time.monotonic() - started) * 1000:.0f} ms", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    runs = list_runs()
    if args.json:
        rows = [
            {
                "run_id": r.run_id,
                "namespaces": list(r.namespaces),
                "owner_pid": r.owner_pid,
                "owner_alive": r.owner_alive,
            }
            for r in runs
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for r in runs:
        owner = "unknown" if r.owner_pid is None else str(r.owner_pid)
        state = "running" if r.owner_alive else "left over"
        print(f"{r.run_id}  {len(r.namespaces)} namespaces  owner {owner} ({state})")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    if args.all == bool(args.run_ids):
        print("meshd.lab down: give run ids or --all, not both or neither", file=sys.stderr)
        return 2
    run_ids: list[str] = [r.run_id for r in list_runs()] if args.all else args.run_ids
    status = 0
    for run_id in run_ids:
        try:
            naming.check_run_id(run_id)
        except ValueError as exc:
            print(f"meshd.lab down: {exc}", file=sys.stderr)
            status = 2
            continue
        left = destroy_run(run_id)
        if left:
            print(f"{run_id}: could not remove {', '.join(left)}", file=sys.stderr)
            status = 1
        else:
            print(f"{run_id}: removed")
    return status


def nat_spec(text: str) -> tuple[str, int]:
    """``KIND[:HOSTS]``: a NAT of that kind with that many hosts behind it (default 1)."""
    kind, _, count = text.partition(":")
    if kind not in NAT_KINDS or (count and not count.isdigit()):
        raise argparse.ArgumentTypeError(f"KIND[:HOSTS] with KIND one of {', '.join(NAT_KINDS)}")
    return kind, int(count or 1)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m meshd.lab", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build a lab and print its names")
    up.add_argument("--hosts", type=int, default=3, help="number of hosts (default 3)")
    up.add_argument("--keep", action="store_true", help="leave the lab running and exit")
    up.add_argument("--udp-filter", choices=("auto", *FILTER_NAMES), default="auto")
    up.add_argument("--json", action="store_true", help="print the names as JSON")
    up.add_argument(
        "--nat",
        type=nat_spec,
        action="append",
        default=[],
        metavar="KIND[:HOSTS]",
        help="add a NAT (cone or symmetric) with HOSTS hosts behind it (default 1); repeatable",
    )
    up.set_defaults(func=cmd_up)
    ls = sub.add_parser("list", help="list labs on this machine")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    down = sub.add_parser("down", help="remove labs by run id")
    down.add_argument("run_ids", nargs="*", metavar="RUNID")
    down.add_argument("--all", action="store_true", help="remove every lab on this machine")
    down.set_defaults(func=cmd_down)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(name)s: %(message)s",
    )
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Terminated:
        return 128 + signal.SIGTERM
    except (LabError, ValueError) as exc:
        text = exc.one_line() if isinstance(exc, LabError) else str(exc)
        print(f"meshd.lab: {text}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
