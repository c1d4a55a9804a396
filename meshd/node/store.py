"""The on-disk store: SQLite (WAL) in the state dir.

It holds the network definition, the membership record set, the invites this node issued and
the node's own settings. Nothing read back is trusted: on load every record goes through the
membership core's verification again, and rows that fail are counted and deleted.

Durability: the database runs in WAL mode with ``synchronous=FULL`` for every transaction
that holds a credential or a revocation, so those are on disk before ``commit`` returns.
Transactions of announcements alone (soft state that members refresh) use ``NORMAL``: they
survive a crash of the process, not necessarily of the machine. The running daemon commits
credentials and revocations with ``NORMAL`` too and syncs the log in a worker thread before it
acts on them (``apply(..., fsync=False)``, :meth:`Store.sync_to_disk`, meshd.daemon.disksync).
A revocation is committed before anything
acts on it or forwards it; a kill -9 at any instant leaves the last committed state, which
SQLite's journal recovers on the next open.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from meshd.errors import DecodeError, StoreError
from meshd.membership import Change, Membership
from meshd.records import Kind, Network, decode_untrusted

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    rid BLOB PRIMARY KEY, kind INTEGER NOT NULL, raw BLOB NOT NULL
) WITHOUT ROWID;
-- One current announcement per member: a newer one replaces the row in one statement.
CREATE TABLE IF NOT EXISTS announcements (
    node BLOB PRIMARY KEY, rid BLOB NOT NULL, raw BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS issued (
    rid BLOB PRIMARY KEY, kind INTEGER NOT NULL, raw BLOB NOT NULL, created_at INTEGER NOT NULL
);
"""
# Records are loaded in this order so that most have what they depend on already.
LOAD_ORDER = (
    Kind.ROLLOVER,
    Kind.ADMIN_HANDOVER,
    Kind.RENEWAL,
    Kind.CERTIFICATE,
    Kind.ADMISSION,
    Kind.HANDOVER,
    Kind.REVOCATION,
    Kind.LEAVE,
    Kind.ANNOUNCEMENT,
    Kind.WG_ROTATION,
)


@dataclass(frozen=True, slots=True)
class LoadReport:
    loaded: int
    rejected: int
    pending: int


class Store:
    """One node's SQLite database. Not shared across threads; one writer at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            if not path.exists():
                path.touch(mode=0o600)
            self._db = sqlite3.connect(path, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._hard = True
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            version = self.get_meta("schema")
            if version is None:
                self.set_meta("schema", str(SCHEMA_VERSION).encode())
            elif version != str(SCHEMA_VERSION).encode():
                raise StoreError(
                    f"the store {path} has schema {version!r}, this meshd reads {SCHEMA_VERSION}",
                    hint="use the meshd version that wrote it",
                )
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot open the store {path}: {exc}",
                hint="check the state dir's permissions, or move the damaged file away",
            ) from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot write the store {self.path}: {exc}") from None

    # --- meta -----------------------------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def network(self) -> Network | None:
        raw = self.get_meta("network")
        if raw is None:
            return None
        try:
            return decode_untrusted(raw, Network)
        except DecodeError as exc:
            raise StoreError(f"the network record in {self.path} is damaged: {exc}") from None

    # --- the record set -------------------------------------------------------------------

    def apply(self, changes: Sequence[Change], *, fsync: bool = True) -> bool:
        """Persist what merging did (outcomes or batches), in one transaction, committed
        before this returns. Returns whether it wrote credentials or revocations (what must
        reach the disk, not only survive a crash of meshd).

        ``fsync=False``: committed (atomic, safe against meshd being killed) without waiting
        for the disk; :meth:`sync_to_disk` then makes it durable (meshd.daemon.disksync)."""
        # The net effect of the changes, in order: a record stored and then dropped within
        # them is never written.
        records: dict[bytes, tuple[bytes, int, bytes]] = {}
        announcements: dict[bytes, tuple[bytes, bytes, bytes]] = {}
        announcement_of: dict[bytes, bytes] = {}
        dropped: list[tuple[bytes]] = []
        dropped_nodes: list[tuple[bytes]] = []
        for change in changes:
            for rid, kind, raw, node in change.stored:
                if node is not None:
                    announcements[node] = (node, rid, raw)  # the last one wins
                    announcement_of[rid] = node
                else:
                    records[rid] = (rid, int(kind), raw)
            for rid in change.dropped:
                if records.pop(rid, None) is not None:
                    continue
                node = announcement_of.pop(rid, None)
                if node is not None:
                    # Its row on disk, if any, holds an older announcement of the same member.
                    if announcements.get(node, (b"", b""))[1] == rid:
                        del announcements[node]
                    dropped_nodes.append((node,))
                else:
                    dropped.append((rid,))
        if not records and not announcements and not dropped and not dropped_nodes:
            return False
        # Credentials and revocations are synced to disk before this returns. Announcements
        # alone are soft state, refreshed by their members all the time: their batches are
        # safe against a crash of meshd (kill -9) but skip the fsync.
        needs_disk = bool(records or dropped or dropped_nodes)
        hard = needs_disk and fsync
        if hard != self._hard:
            self._db.execute(f"PRAGMA synchronous={'FULL' if hard else 'NORMAL'}")
            self._hard = hard
        with self.transaction() as db:
            if dropped:
                db.executemany("DELETE FROM records WHERE rid = ?", dropped)
                db.executemany("DELETE FROM announcements WHERE rid = ?", dropped)
            if dropped_nodes:
                db.executemany("DELETE FROM announcements WHERE node = ?", dropped_nodes)
            if records:
                db.executemany(
                    "INSERT OR REPLACE INTO records(rid, kind, raw) VALUES (?, ?, ?)",
                    records.values(),
                )
            if announcements:
                db.executemany(
                    "INSERT OR REPLACE INTO announcements(node, rid, raw) VALUES (?, ?, ?)",
                    announcements.values(),
                )
        return needs_disk

    def sync_to_disk(self) -> None:
        """fsync the write-ahead log: every transaction committed so far is then on disk.

        Safe to call from another thread: it opens the log file itself and touches no
        connection (fsync flushes the file's pages whichever descriptor wrote them). In WAL
        mode SQLite syncs the log before each checkpoint, so what a checkpoint moved out of
        it is on disk already."""
        try:
            fd = os.open(self.path.with_name(self.path.name + "-wal"), os.O_RDONLY)
        except FileNotFoundError:
            return  # no log: nothing written since it was checkpointed, synced and removed
        except OSError as exc:
            raise StoreError(f"cannot sync the store {self.path}: {exc}") from None
        try:
            os.fsync(fd)
        except OSError as exc:
            raise StoreError(f"cannot sync the store {self.path}: {exc}") from None
        finally:
            os.close(fd)

    def rows(self, kinds: Iterable[Kind] = LOAD_ORDER) -> Iterator[tuple[bytes, bytes]]:
        for kind in kinds:
            if kind is Kind.ANNOUNCEMENT:
                query = "SELECT rid, raw FROM announcements ORDER BY rid"
                cursor = self._db.execute(query)
            else:
                query = "SELECT rid, raw FROM records WHERE kind = ? ORDER BY rid"
                cursor = self._db.execute(query, (int(kind),))
            yield from ((bytes(rid), bytes(raw)) for rid, raw in cursor)

    def count(self) -> int:
        row = self._db.execute(
            "SELECT (SELECT COUNT(*) FROM records) + (SELECT COUNT(*) FROM announcements)"
        ).fetchone()
        return int(row[0])

    def load_into(self, state: Membership, now: int) -> LoadReport:
        """Verify and merge every stored record; delete rows that no longer verify."""
        batch = state.ingest_batch((raw for _, raw in self.rows()), now)
        if batch.rejected:
            log.warning(
                "store: dropping %d stored records that no longer verify (%s)",
                len(batch.rejected),
                ", ".join(sorted(set(batch.rejected))),
            )
        # Rows that merging did not keep (refused, superseded, or stored under an id that is
        # not the hash of their bytes) go; what it kept is written back under its true id.
        keep = set(state.record_ids())
        gone = [(rid,) for rid, _ in self.rows() if rid not in keep]
        if gone:
            with self.transaction() as db:
                db.executemany("DELETE FROM records WHERE rid = ?", gone)
                db.executemany("DELETE FROM announcements WHERE rid = ?", gone)
            self.apply([batch])
        return LoadReport(batch.new, len(gone), state.pending_count)

    # --- what this node issued ------------------------------------------------------------

    def add_issued(self, rid: bytes, kind: Kind, raw: bytes, created_at: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO issued(rid, kind, raw, created_at) VALUES (?, ?, ?, ?)",
                (rid, int(kind), raw, created_at),
            )

    def issued(self, kind: Kind) -> list[bytes]:
        return [
            bytes(raw)
            for (raw,) in self._db.execute(
                "SELECT raw FROM issued WHERE kind = ? ORDER BY created_at", (int(kind),)
            )
        ]
