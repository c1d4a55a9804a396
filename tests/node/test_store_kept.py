"""The peers a stopping daemon keeps in its store: sealed, and gone with any change of the
record set, whoever makes it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from meshd.node.store import Store, seal_key_of
from tests.factory import T0
from tests.node.stores import NOW, populate

KEY = seal_key_of(bytes(range(32)))
LIST = b"\x96\x01kept peers, as encoded by meshd.mesh.kept_peers"


def kept_store(path: Path) -> Store:
    store = Store(path, seal_key=KEY)
    populate(store)
    assert store.keep_peers(LIST)
    return store


def test_a_kept_list_reads_back_after_a_reopen(tmp_path: Path) -> None:
    kept_store(tmp_path / "meshd.db").close()
    store = Store(tmp_path / "meshd.db", seal_key=KEY)
    assert store.kept_peers() == LIST
    assert store.keep_peers(b"another")  # one list at a time: it takes the last one's place
    assert store.kept_peers() == b"another"


def test_a_record_stored_afterwards_deletes_the_list(tmp_path: Path) -> None:
    store = Store(tmp_path / "meshd.db", seal_key=KEY)
    net, state = populate(store)
    assert store.keep_peers(LIST)
    # A revocation, as `meshd revoke` stores one while the daemon is down.
    member = next(m for m in state.members(NOW) if m.name == "m1")
    revocation = state.ingest(net.revoke(member.node_key, at=T0 + 60), NOW)
    assert revocation.new
    store.apply([revocation])
    assert store.kept_peers() is None


def test_any_program_changing_the_records_deletes_the_list(tmp_path: Path) -> None:
    # The rule is the schema's (triggers), not the store's code: an older release, or any
    # program writing the file, deletes it as well.
    for statement in (
        "DELETE FROM records WHERE rowid IN (SELECT rowid FROM records LIMIT 1)",
        "UPDATE records SET kind = kind",
        "INSERT INTO records(rid, kind, raw) VALUES (x'00', 1, x'00')",
    ):
        path = tmp_path / f"{len(statement)}.db"
        kept_store(path).close()
        with sqlite3.connect(path) as db:
            db.execute(statement.replace("rowid", "rid"))
        assert Store(path, seal_key=KEY).kept_peers() is None, statement


def test_an_announcement_leaves_the_list(tmp_path: Path) -> None:
    # Endpoints that moved since are corrected by the first round; only a record that can
    # end a standing makes the list stale.
    path = tmp_path / "meshd.db"
    kept_store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE announcements SET raw = raw")
    assert Store(path, seal_key=KEY).kept_peers() == LIST


def test_a_list_not_sealed_by_this_nodes_key_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "meshd.db"
    kept_store(path).close()
    assert Store(path, seal_key=seal_key_of(bytes(32))).kept_peers() is None
    with sqlite3.connect(path) as db:
        db.execute("UPDATE kept_peers SET data = ?", (LIST + b"!",))
    assert Store(path, seal_key=KEY).kept_peers() is None


def test_without_a_seal_key_nothing_is_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "meshd.db")
    assert not store.keep_peers(LIST)
    assert store.kept_peers() is None
