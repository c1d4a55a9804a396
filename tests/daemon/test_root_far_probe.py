"""A joiner asks the inviter's far addresses for a TCP connection first, and dials one that
accepts before one listed earlier that is silent (root: a namespace).

The invite carries the inviter's public address first (``--public-addr``), then where it
listens. Here neither is on a network of the joiner's: the public address is routed, inside
a namespace of the test's own, onto a veth where every packet to it is dropped (a stale
address, a port nobody forwards), and the inviter listens on an address of its own on the
loopback interface (which the joiner's list of its networks leaves out). Before, the
public address was dialled first and its dial waited the whole dial timeout (5 s: its SYN
sent three times); now both are asked at once, the listen address accepts, and the public
one sees the probe's one SYN and no dial (the joiner's daemon, once admitted, probes again
when it first dials the founder).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from meshd.daemon.config import DaemonConfig
from tests.daemon.support import daemons
from tests.daemon.test_root_lan_first import counted, ip, join_public_first, sent_to_public

pytestmark = pytest.mark.root

DIAL_TIMEOUT = DaemonConfig(Path()).dial_timeout
FAR = "10.88.0.1"  # the inviter's own, on lo: not on any network of the joiner's


@contextmanager
def far_site() -> Iterator[str]:
    """A namespace where the inviter's public address drops every packet (counted), and
    the address it listens on is on lo."""
    with counted("farprobe", drop=True) as ns:
        ip("-n", ns, "addr", "add", f"{FAR}/32", "dev", "lo")
        yield ns


def test_a_silent_public_address_listed_first_does_not_hold_up_the_join(tmp_path: Path) -> None:
    with far_site() as ns, daemons(tmp_path, "founder", "j") as nodes:
        took = join_public_first(ns, nodes, FAR)
        sent = sent_to_public(ns)
        print(f"joined in {took:.2f} s, {sent} packets to the public address")
        # Dialled first, the public address held the join up for its whole dial timeout
        # (its SYN sent at 0, 1 and 3 s): 6.2 s and 5 packets before. Now only asked by the
        # probes, one SYN each: the join's, then the daemon's first pass (the founder as a
        # member and as the bootstrap address: 2 at most); never dialled.
        assert took < DIAL_TIMEOUT
        assert sent <= 3
        for node in nodes:
            node.stop()
