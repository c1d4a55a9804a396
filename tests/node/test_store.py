"""The SQLite store: round trips, re-verification on load, durability under kill -9."""

from __future__ import annotations

import logging
import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from meshd.encoding import pack
from meshd.errors import StoreError
from meshd.membership import Membership
from meshd.node.store import NetEffect, Store
from meshd.records import CONTEXTS, VERSION, Kind, Role, record_id
from tests.factory import DAY, T0, Net
from tests.node.stores import NOW, populate


def populated(tmp_path: Path) -> tuple[Net, Membership, Store]:
    store = Store(tmp_path / "meshd.db")
    net, state = populate(store)
    return net, state, store


def test_reload_gives_the_same_state(tmp_path: Path) -> None:
    net, state, store = populated(tmp_path)
    assert store.count() == len(state)
    reloaded = net.state()
    report = store.load_into(reloaded, NOW + 2)
    assert report.rejected == 0
    assert report.loaded == len(state)
    assert reloaded.digest() == state.digest()
    assert [(m.name, m.state) for m in reloaded.members(NOW)] == [
        (m.name, m.state) for m in state.members(NOW)
    ]
    assert store.network() == net.network


def legacy_revocation(net: Net, target: bytes, role: Role, at: int) -> bytes:
    """A revocation as releases before the ``sponsored`` list wrote it: fields #2-#9 (no
    list), encoded here by hand and signed by the root under the revocation context."""
    fields = [net.anchor.network_id, net.root.public, target, int(role), at, at + 400 * DAY]
    body = pack([int(Kind.REVOCATION), VERSION, *fields, "left", []])
    return pack([body, net.root.sign(CONTEXTS[Kind.REVOCATION], body)])


def test_a_store_of_legacy_revocations_loads_them_all(tmp_path: Path) -> None:
    """A store written before revocations had a ``sponsored`` list holds legacy revocations.
    They load, all of them, with their ids, and judge members as the release that wrote
    them did: the revoked stay revoked, and what a revoked member countersigned before its
    revocation stands."""
    net = Net()
    state = net.state()
    store = Store(tmp_path / "meshd.db")
    store.set_meta("network", net.network.raw)
    founder = net.founder()
    outcomes = [state.ingest(founder.credential, NOW)]
    invites = [net.invite() for _ in range(3)]
    members = [net.join(state, founder, invites[i], f"m{i}", at=T0 + 10 + i) for i in range(3)]
    outcomes += [state.ingest(m.credential, NOW) for m in members]
    child = net.join(state, members[0], net.invite(), "child", at=T0 + 20)
    outcomes.append(state.ingest(child.credential, NOW))
    store.apply(outcomes)
    store.close()
    # The rows the previous release wrote for its two revocations.
    revocations = [
        legacy_revocation(net, members[0].key.public, Role.MEMBER, T0 + 50),
        legacy_revocation(net, invites[1].certificate.subject, Role.INVITE, T0 + 60),
    ]
    with sqlite3.connect(tmp_path / "meshd.db") as db:
        db.executemany(
            "INSERT INTO records(rid, kind, raw) VALUES (?, ?, ?)",
            [(record_id(raw), int(Kind.REVOCATION), raw) for raw in revocations],
        )
    db.close()

    reopened = Store(tmp_path / "meshd.db")
    reloaded = net.state()
    report = reopened.load_into(reloaded, NOW + 2)
    assert report.rejected == 0
    assert report.loaded == 7
    assert sorted(r.raw for r in reloaded.revocations()) == sorted(revocations)
    assert {record_id(raw) for raw in revocations} <= set(reloaded.record_ids())
    assert [(m.name, m.state.value, m.reason) for m in reloaded.members(NOW)] == [
        ("child", "admitted", ""),
        ("founder", "admitted", ""),
        ("m0", "revoked", "revoked"),
        ("m1", "revoked", "issuer-revoked"),
        ("m2", "admitted", ""),
    ]
    # Kept on disk too: a second load finds them again.
    again = net.state()
    assert reopened.load_into(again, NOW + 3).rejected == 0
    assert again.digest() == reloaded.digest()
    reopened.close()


def test_damaged_rows_are_dropped_on_load(tmp_path: Path) -> None:
    net, _, store = populated(tmp_path)
    db = sqlite3.connect(tmp_path / "meshd.db")
    rid, raw = db.execute("SELECT rid, raw FROM announcements LIMIT 1").fetchone()
    flipped = bytearray(raw)
    flipped[-1] ^= 1
    db.execute("UPDATE announcements SET raw = ? WHERE rid = ?", (bytes(flipped), rid))
    # A valid record filed under the wrong id is rewritten under its own.
    rid2, raw2 = db.execute(
        "SELECT rid, raw FROM records WHERE kind = ?", (int(Kind.REVOCATION),)
    ).fetchone()
    db.execute("UPDATE records SET rid = ? WHERE rid = ?", (b"x" * 16, rid2))
    # And one filed under an id of another length (the load packs the 16-byte ones).
    rid3, raw3 = db.execute(
        "SELECT rid, raw FROM records WHERE kind = ? AND rid != ?", (int(Kind.CERTIFICATE), rid2)
    ).fetchone()
    db.execute("UPDATE records SET rid = ? WHERE rid = ?", (b"short", rid3))
    db.commit()
    db.close()
    reloaded = net.state()
    report = store.load_into(reloaded, NOW + 2)
    assert report.rejected == 3
    assert reloaded.record(rid) is None
    assert reloaded.record(rid2) == raw2
    assert reloaded.record(rid3) == raw3
    db = sqlite3.connect(tmp_path / "meshd.db")
    stored = {bytes(r) for (r,) in db.execute("SELECT rid FROM records")}
    db.close()
    assert b"x" * 16 not in stored
    assert b"short" not in stored
    assert {rid2, rid3} <= stored
    again = net.state()
    assert store.load_into(again, NOW + 2).rejected == 0
    assert again.digest() == reloaded.digest()


def test_unreadable_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "meshd.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError) as info:
        Store(path)
    assert "cannot open the store" in str(info.value)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "meshd.db")
    store.set_meta("schema", b"99")
    store.close()
    with pytest.raises(StoreError) as info:
        Store(tmp_path / "meshd.db")
    assert "schema" in str(info.value)


def test_database_file_is_private(tmp_path: Path) -> None:
    Store(tmp_path / "meshd.db").close()
    assert (tmp_path / "meshd.db").stat().st_mode & 0o077 == 0


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tests.factory import Net, T0
    from meshd.trust.keys import SigningKey
    from meshd.records import Role, make_network
    from meshd.node.store import Store

    path = Path(sys.argv[1])
    net = Net(root=SigningKey(bytes(range(32))))
    store = Store(path)
    store.set_meta("network", net.network.raw)
    state = net.state()
    founder = net.founder()
    store.apply([state.ingest(founder.credential, T0 + 1)])
    i = 0
    while True:
        target = SigningKey.generate().public
        revocation = net.revoke(target, Role.MEMBER, at=T0 + 2)
        store.apply([state.ingest(revocation, T0 + 3)])
        # Only now is it durable: report it.
        sys.stdout.write(revocation.raw.hex() + "\\n")
        sys.stdout.flush()
        ann = founder.announce(net, T0 + 3)
        store.apply([state.ingest(ann, T0 + 3)])
        i += 1
    """
)


@pytest.mark.parametrize("delay", [0.15, 0.3, 0.45, 0.6, 0.75])
def test_kill_9_loses_no_acknowledged_revocation(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "meshd.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    try:
        # Its first acknowledgement (start-up took 0.8 s on a loaded machine), then a kill at
        # a different point each time.
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        assert ready, "the writer never got going"
        first = proc.stdout.readline()
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
    acknowledged = [bytes.fromhex(line) for line in (first + out).decode().split()]
    assert acknowledged, "the writer never got going"
    net = Net(
        root=__import__("meshd.trust.keys", fromlist=["SigningKey"]).SigningKey(bytes(range(32)))
    )
    store = Store(path)  # opens after any crash
    state = net.state()
    report = store.load_into(state, T0 + 4)
    assert report.rejected == 0
    stored = {state.record(rid) for rid in state.record_ids()}
    missing = [raw for raw in acknowledged if raw not in stored]
    assert not missing, f"{len(missing)} acknowledged revocations lost"


def test_expired_records_are_pruned_on_load(tmp_path: Path) -> None:
    net, _, store = populated(tmp_path)
    later = net.state()
    report = store.load_into(later, T0 + 500 * DAY)
    assert report.loaded == 0
    assert store.count() == 0


def test_records_that_merely_expired_are_pruned_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Expiry is routine over the years: pruning only expired rows is said at INFO, so an
    offline command's one-line error is not joined by a warning about housekeeping."""
    net, _, store = populated(tmp_path)
    with caplog.at_level(logging.INFO, logger="meshd.node.store"):
        store.load_into(net.state(), T0 + 500 * DAY)
    pruned = [r for r in caplog.records if "no longer verify" in r.getMessage()]
    assert pruned
    assert all(r.levelno == logging.INFO for r in pruned)
    assert "(expired)" in pruned[0].getMessage()


def test_records_that_fail_for_another_reason_are_pruned_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored row refused for anything but expiry (here each row's last signature byte
    flipped on disk, so its seal no longer matches and its signature fails) is news: a
    WARNING naming the reason."""
    net, _, store = populated(tmp_path)
    with store.transaction() as db:
        rows = db.execute("SELECT rid, raw FROM records").fetchall()
        for rid, raw in rows:
            damaged = bytes(raw[:-1]) + bytes([raw[-1] ^ 1])
            db.execute("UPDATE records SET raw = ? WHERE rid = ?", (damaged, rid))
    with caplog.at_level(logging.INFO, logger="meshd.node.store"):
        store.load_into(net.state(), NOW + 2)
    pruned = [r for r in caplog.records if "no longer verify" in r.getMessage()]
    assert pruned
    assert all(r.levelno == logging.WARNING for r in pruned)
    assert "expired" not in pruned[0].getMessage()


def test_batch_effects_apply_in_order(tmp_path: Path) -> None:
    """An announcement stored in an earlier batch, superseded and then dropped in a later
    one, leaves no row behind."""
    net = Net()
    state = net.state()
    store = Store(tmp_path / "meshd.db")
    founder = net.founder()
    store.apply([state.ingest(founder.credential, NOW)])
    node = net.join(state, founder, net.invite(), "m", at=T0 + 10)
    store.apply([state.ingest(node.credential, NOW)])
    store.apply([state.ingest(node.announce(net, NOW), NOW)])
    store.apply(
        [
            state.ingest(node.announce(net, NOW + 1), NOW + 1),
            state.ingest(net.revoke(node.key.public, at=T0 + 50), NOW + 1),
        ]
    )
    assert store.count() == len(state) == 3
    reloaded = net.state()
    assert store.load_into(reloaded, NOW + 2).rejected == 0
    assert reloaded.digest() == state.digest()


def test_a_full_disk_writes_nothing_and_what_it_refused_is_written_whole_later(
    tmp_path: Path,
) -> None:
    """SQLite out of room (its page limit reached, as a full disk): the write is a
    StoreError and leaves the store as it was; the changes kept (a NetEffect), with what
    came after them, are written whole once there is room, to the same state a store that
    never filled holds."""
    net = Net()
    state = net.state()
    store = Store(tmp_path / "meshd.db")
    founder = net.founder()
    store.apply([state.ingest(founder.credential, NOW)])
    before = store.count()
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")
    effect = NetEffect()
    nodes = [net.join(state, founder, net.invite(), f"m{i}", at=T0 + 10) for i in range(40)]
    for n in nodes:
        effect.add(state.ingest(n.credential, NOW))
        effect.add(state.ingest(n.announce(net, NOW), NOW))
    with pytest.raises(StoreError, match="database or disk is full") as refused:
        store.write(effect)
    assert refused.value.hint == (
        f"free space on the file system of {tmp_path}; the store is not damaged"
    )
    assert store.count() == before  # rolled back whole
    assert not store._db.in_transaction  # nothing left open to refuse what comes next
    store.set_meta("k", b"v")  # a small write that fits still goes
    dropped = nodes[0]
    effect.add(state.ingest(net.revoke(dropped.key.public, at=T0 + 50), NOW + 1))
    store._db.execute("PRAGMA max_page_count=1073741823")
    assert store.write(effect)
    assert store.count() == len(state)
    reloaded = net.state()
    assert store.load_into(reloaded, NOW + 2).rejected == 0
    assert reloaded.digest() == state.digest()
