"""The daemon's look at its interface addresses (every 10 s) on a host of many interfaces.

A network namespace of ``--pairs`` veth pairs, each end up with its IPv6 link-local address
(a container host's interfaces), and one uplink holding an IPv4 and an IPv6 global address.
In it, side by side in one process: the read as it was (every link's name dumped, every
address decoded, then the usable ones kept) and ``local_addresses()`` as the daemon runs it
now (the address dump scanned, only global and site scope decoded, the names of their links
asked for one by one); both in a worker thread under trio, as the daemon reads. Both must
find the same usable addresses. Then Babel's look at a site link (every 2 s, and at each
link the kernel tells of: up, with a carrier and a usable link-local address?) as it was
(every link dumped to find it by name, every IPv6 address decoded) and as it is
(``meshd.daemon.babel_links._ready``: the link by name, its link-local addresses alone
decoded), on the uplink. CPU time a look, median of ``--repeat``. Needs root; the
namespace is deleted at the end.

    .venv/bin/python -m benchmarks.address_look [--pairs 1000] [--repeat 20] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

# Runs inside the namespace: both reads, timed, as JSON on stdout.
INSIDE = r"""
import ipaddress, json, statistics, sys, time
import trio
from meshd.daemon.wireguard_open import local_addresses
from meshd.mesh.underlay import usable
from meshd.wg.rtnl_socket import RtnlSocket

def read_before():
    with RtnlSocket() as rtnl:
        names = rtnl.names()
        found = []
        for msg in rtnl.addresses():
            if msg.address is None:
                continue
            interface = ipaddress.ip_interface(f"{msg.address}/{msg.prefixlen}")
            found.append((names.get(msg.index, ""), interface))
    return sorted((n, str(i)) for n, i in found if usable(i.ip))

def before():  # in a worker thread under trio, as the daemon reads
    return trio.run(trio.to_thread.run_sync, read_before)

def now():
    return sorted((a.ifname, str(a.interface)) for a in trio.run(local_addresses))

from meshd.daemon.babel_links import _ready
from meshd.wg import rtnetlink as rt

def site_before():  # the site link's look as it was
    with RtnlSocket() as rtnl:
        link = next((link for link in rtnl.links() if link.name == "up0"), None)
        for address in rtnl.addresses(rt.AF_INET6):
            if (
                address.index == link.index
                and address.address.is_link_local
                and not address.flags & rt.IFA_F_TENTATIVE
            ):
                return link.index
    return None

def site_now():
    return _ready("up0", None)

repeat = int(sys.argv[1])
out = {}
for name, read in (("before", before), ("now", now), ("site_before", site_before),
                   ("site_now", site_now)):
    times = []
    for _ in range(repeat):
        start = time.process_time()
        found = read()
        times.append(time.process_time() - start)
    out[name] = {"cpu_ms": round(1000 * statistics.median(times), 2), "found": found}
json.dump(out, sys.stdout)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS / "address-look.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (a network namespace)", file=sys.stderr)
        return 2
    ns = f"addrlook{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        lines = [f"link add v{i} type veth peer name w{i}" for i in range(args.pairs)]
        lines += [f"link set {e}{i} up" for i in range(args.pairs) for e in "vw"]
        lines += ["link add up0 type veth peer name up1", "link set up0 up", "link set up1 up",
                  "addr add 192.0.2.1/24 dev up0", "addr add 2001:db8::1/64 dev up0"]  # fmt: skip
        subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines).encode(), check=True)
        deadline = time.monotonic() + 60  # the link-local addresses come as links go up
        while True:
            shown = subprocess.run(["ip", "-n", ns, "-6", "-o", "addr", "show", "scope", "link"],
                                   capture_output=True, text=True, check=True).stdout  # fmt: skip
            ready = "tentative" not in shown  # the uplink's among them
            if (shown.count("\n") >= 2 * args.pairs and ready) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", INSIDE, str(args.repeat)],
            capture_output=True, text=True, check=True, env=env, cwd=ROOT,
        )  # fmt: skip
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    reads: dict[str, Any] = json.loads(done.stdout)
    same = (
        reads["before"]["found"] == reads["now"]["found"]
        and reads["site_before"]["found"] == reads["site_now"]["found"] is not None
    )
    usable_found = reads["now"]["found"]
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "python": platform.python_version(),
        "interfaces": 2 * args.pairs + 3,
        "link_local_addresses": shown.count("\n"),
        "repeat": args.repeat,
        "cpu_ms_a_look": {"before": reads["before"]["cpu_ms"], "now": reads["now"]["cpu_ms"]},
        "cpu_ms_a_site_link_look": {
            "before": reads["site_before"]["cpu_ms"],
            "now": reads["site_now"]["cpu_ms"],
        },
        "usable_found": usable_found,
        "same_addresses": same,
    }
    print(f"{result['interfaces']} interfaces, {result['link_local_addresses']} link-local "
          f"addresses; a look, CPU median of {args.repeat}: before "
          f"{reads['before']['cpu_ms']:.2f} ms, now {reads['now']['cpu_ms']:.2f} ms; "
          f"the same addresses found: {same} ({usable_found}); a site link's look: "
          f"before {reads['site_before']['cpu_ms']:.2f} ms, "
          f"now {reads['site_now']['cpu_ms']:.2f} ms")  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.output}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
