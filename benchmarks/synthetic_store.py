"""Synthetic stores for the benchmarks that start a real daemon: a founder's state dir holding
N members, each certified by the network's root or joined under an invite and admitted by the
founder, each with a signed announcement (an endpoint and a listen address), merged by the
membership core and written by the store, as a sync would (:func:`build_store`).

:func:`build_store_in` builds one with another checkout's own code (a reference tree: the store
is written by the code that reads it); ``benchmarks.memory``, ``benchmarks.startup``,
``benchmarks.startup_steps`` and ``benchmarks.idle`` use them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PYTHON = sys.executable


# Run in the interpreter of the tree whose daemon is measured (cwd: that tree), so that the
# store is written by the code that reads it.
BUILD = """
import json, sys
from pathlib import Path
try:
    from benchmarks.synthetic_store import build_store
except ImportError:  # a tree from before the split
    from benchmarks.memory import build_store
joined = sys.argv[3]
if joined == "single-use":
    import benchmarks.synthetic_store as built
    if not hasattr(built, "SINGLE_USE"):  # a tree from before it: its invites given one use
        built.INVITE_USES, joined = 1, "invited"
extra = {} if joined == "certified" else {"joined": joined}
print(json.dumps(build_store(Path(sys.argv[1]), int(sys.argv[2]), **extra)))
"""


def build_store_in(
    root: Path, state_dir: Path, members: int, joined: str = "certified"
) -> dict[str, float]:
    """:func:`build_store`, run by the tree at ``root`` (a tree from before ``--joined``
    builds certified members only)."""
    built: dict[str, float] = run_script_in(root, BUILD, str(state_dir), str(members), joined)
    return built


def run_script_in(tree: Path, script: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run ``script`` (``python -c``) with ``args`` by the code of ``tree`` (its cwd and
    import path): what its last line of output says, as JSON."""
    done = subprocess.run(
        [PYTHON, "-c", script, *args],
        cwd=tree,
        env=dict(os.environ, PYTHONPATH=str(tree)),
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def commit_of(root: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or "?"


INVITE_USES = 100
"""With ``--joined invited``: the members of one invite (a team's)."""
SINGLE_USE = "single-use"
"""``--joined single-use``: each member under an invite of its own, of one use (what
``meshd invite`` makes unless told ``--uses``)."""


def build_store(state_dir: Path, members: int, joined: str = "certified") -> dict[str, float]:
    """A founder's state dir holding ``members`` members in all (the founder included):
    each certified by the root (``certified``), or joined under an invite of
    :data:`INVITE_USES` uses, admitted by the founder (``invited``: an enrollment signed
    with the invite's key, countersigned by the founder, as ``meshd join`` and the sponsor
    do), or the same under an invite of one use each (``single-use``)."""
    from meshd.membership import Membership
    from meshd.node.statedir import init_network
    from meshd.records import Role, make_admission, make_announcement, make_certificate
    from meshd.trust.invites import Issuer, create_invite, enroll
    from meshd.trust.keyfiles import read_secret
    from meshd.trust.keys import SigningKey, WireGuardKey

    started = time.perf_counter()
    now = int(time.time())
    node = init_network(
        state_dir, network_name="memory", node_name="n0", root_key_path=None, at=now - 3600
    )
    root = SigningKey(read_secret(node.paths.root_key))
    founder = SigningKey(read_secret(node.paths.node_key))
    network_id = node.anchor.network_id
    raws: list[bytes] = []
    invite = None
    for i in range(1, members):
        key = SigningKey(i.to_bytes(4, "big") * 8)
        wg_key = WireGuardKey.generate().public
        if joined in ("invited", SINGLE_USE):
            uses = 1 if joined == SINGLE_USE else INVITE_USES
            if (i - 1) % uses == 0:
                invite = create_invite(
                    Issuer(root), node.anchor, now=now - 3600, lifetime=86400, uses=uses
                )
            assert invite is not None
            enrollment = enroll(invite, node_key=key.public, wg_key=wg_key, name=f"m{i}", now=now)
            raws.append(make_admission(founder, enrollment=enrollment, admitted_at=now).raw)
        else:
            raws.append(
                make_certificate(
                    root,
                    network_id=network_id,
                    subject=key.public,
                    role=Role.MEMBER,
                    serial=os.urandom(16),
                    not_before=now - 3600,
                    not_after=now + 365 * 86400,
                    name=f"m{i}",
                    wg_key=wg_key,
                ).raw
            )
        host = f"198.18.{i >> 8 & 255}.{i & 255}"
        raws.append(
            make_announcement(
                key,
                network_id=network_id,
                seq=1,
                issued_at=now,
                endpoints=(f"{host}:51820",),
                addrs=(f"/ip4/{host}/tcp/7100",),
            ).raw
        )
    signed = time.perf_counter()
    state = Membership(node.anchor)
    node.store.load_into(state, now)
    for start in range(0, len(raws), 5000):
        node.store.apply([state.ingest_batch(raws[start : start + 5000], now)])
    standing = len(state.members(now))
    node.close()
    if standing != members:
        raise RuntimeError(f"built {standing} standing members, wanted {members}")
    return {
        "sign_s": round(signed - started, 2),
        "merge_s": round(time.perf_counter() - signed, 2),
    }
