"""BIRD 2 as the reference router on the far side of a :func:`tests.babel_interop.netns.veth_pair`.

BIRD runs in the foreground (``-f``), so the process started is BIRD itself and is stopped by
its PID; it is asked through its control socket (``birdc -s``). Its direct protocol exports
the addresses of its loopback (fd00:255::2/128, 10.255.0.2/32 from the pair), and with
``sadr`` its IPv6 channel is source-specific (a ``sadr`` table, RFC 9079) with a static
fd00:99::/64 from fd00:aa::/48 to announce; without it, its IPv6 channel is an ordinary one.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.babel_interop.netns import Pair, _stop, wait_for

#: BIRD's Hello interval here, as the babeld of the other tests (HELLO).
BIRD_HELLO = "500 ms"


@dataclass(frozen=True, slots=True)
class Bird:
    process: subprocess.Popen[bytes]
    control: Path

    def ask(self, *command: str) -> str:
        done = subprocess.run(
            ["birdc", "-s", str(self.control), *command],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        return done.stdout

    def unicast(self, prefix: str) -> bool:
        """Whether BIRD holds a usable (unicast) Babel route for ``prefix`` (``A from B``
        for a source-specific one), in any of its tables; a retracted one it keeps for a
        while is ``unreachable``."""
        text = self.ask("show", "route", "table", "all", "protocol", "babel1")
        pattern = rf"^{re.escape(prefix)}\s+unicast \[babel1"
        return re.search(pattern, text, re.MULTILINE) is not None

    def held(self, prefix: str) -> bool:
        """Whether BIRD holds any route for ``prefix`` learnt by Babel, usable or not."""
        text = self.ask("show", "route", "table", "all", "protocol", "babel1")
        return re.search(rf"^{re.escape(prefix)}\s", text, re.MULTILINE) is not None

    def neighbours(self) -> str:
        return self.ask("show", "babel", "neighbors")


def _config(workdir: Path, veth: str, *, sadr: bool, password: str | None) -> str:
    auth = ""
    if password is not None:
        algorithm, secret = password.split(":", 1)
        auth = f'authentication mac; password "{secret}" {{ algorithm {algorithm}; }};'
    if sadr:
        tables = "ipv6 sadr table sadr6;"
        v6 = "ipv6 sadr { table sadr6; import all; export all; };"
        static = (
            "protocol static { ipv6 sadr { table sadr6; };"
            " route fd00:99::/64 from fd00:aa::/48 unreachable;"
            " route fd00:255::2/128 from ::/0 unreachable; }"
        )
    else:
        tables, static = "", ""
        v6 = "ipv6 { import all; export where source = RTS_DEVICE || source = RTS_BABEL; };"
    return f"""
router id 10.255.0.2;
log "{workdir / "bird.log"}" all;
{tables}
protocol device {{ scan time 1; }}
protocol direct {{ ipv4; ipv6; interface "lo"; }}
protocol kernel {{ ipv4 {{ export all; }}; }}
protocol kernel {{ ipv6 {{ export all; }}; }}
{static}
protocol babel {{
  interface "{veth}" {{ type wired; hello interval {BIRD_HELLO}; {auth} }};
  ipv4 {{ import all; export where source = RTS_DEVICE || source = RTS_BABEL; }};
  {v6}
}}
"""


@contextmanager
def bird(
    pair: Pair, workdir: Path, *, sadr: bool = False, password: str | None = None
) -> Iterator[Bird]:
    """BIRD in the pair's far namespace. ``password``: ``ALGORITHM:TEXT`` (BIRD's names,
    ``hmac sha256`` or ``blake2s128``), the key being the text's bytes (RFC 8967)."""
    conf = workdir / "bird.conf"
    conf.write_text(_config(workdir, pair.veth, sadr=sadr, password=password))
    control = workdir / "bird.ctl"
    log = (workdir / "bird.out").open("wb")
    process = subprocess.Popen(
        ["ip", "netns", "exec", pair.babeld_ns, "bird", "-f", "-c", str(conf),
         "-s", str(control)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        if not wait_for(control.exists, 5.0):
            said = (workdir / "bird.out").read_text()
            raise RuntimeError(f"BIRD did not open its control socket: {said}")
        yield Bird(process, control)
    finally:
        _stop(process)
        log.close()
