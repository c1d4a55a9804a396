"""The on-disk store: SQLite (WAL) in the state dir.

It holds the network definition, the membership record set, the invites this node issued and
the node's own settings. On load every record goes through the membership core again (chains to
a root, dates, revocations, standing: everything is judged anew), and rows that fail are counted
and deleted. What is not done again for a *sealed* row is checking signatures: each row of the
record set carries a seal, a keyed BLAKE2b of its bytes under a key derived from this node's
secret node key (:func:`seal_key_of`), written with the row. A row's seal says this node merged
it, signatures checked, before writing it; whoever could forge one can read the node key and be
this node already (docs/threat-model.md). A row without a valid seal (written by an older
release, or before a node key rotation, or altered) is verified in full, and sealed if it is
kept. At 10,000 members that is 20,000 Ed25519 checks (several seconds) off the start.

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

import contextlib
import hashlib
import hmac
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from meshd.errors import DecodeError, StoreError
from meshd.membership import (
    Batch,
    Change,
    Membership,
    decode_batch_untrusted,
    decode_each_untrusted,
)
from meshd.node.store_trouble import disk_of, store_error
from meshd.records import Kind, Network, Record, decode_untrusted, record_id
from meshd.records.decode import forget_invites
from meshd.records.types import RECORD_ID_LEN

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    rid BLOB PRIMARY KEY, kind INTEGER NOT NULL, raw BLOB NOT NULL, seal BLOB
) WITHOUT ROWID;
-- One current announcement per member: a newer one replaces the row in one statement.
CREATE TABLE IF NOT EXISTS announcements (
    node BLOB PRIMARY KEY, rid BLOB NOT NULL, raw BLOB NOT NULL, seal BLOB
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS issued (
    rid BLOB PRIMARY KEY, kind INTEGER NOT NULL, raw BLOB NOT NULL, created_at INTEGER NOT NULL
);
-- The peers a stopping daemon had (meshd.mesh.kept_peers): gone with any change of the
-- record set, whoever makes it (an offline `meshd revoke`, another release), so that a list
-- is never older than the records it came from.
CREATE TABLE IF NOT EXISTS kept_peers (
    one INTEGER PRIMARY KEY CHECK (one = 1), data BLOB NOT NULL, seal BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS kept_peers_stale_on_insert AFTER INSERT ON records
BEGIN DELETE FROM kept_peers; END;
CREATE TRIGGER IF NOT EXISTS kept_peers_stale_on_update AFTER UPDATE ON records
BEGIN DELETE FROM kept_peers; END;
CREATE TRIGGER IF NOT EXISTS kept_peers_stale_on_delete AFTER DELETE ON records
BEGIN DELETE FROM kept_peers; END;
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
#: What a load merges and judges before the announcements (each merged as it is read).
_BEFORE_ANNOUNCEMENTS = tuple(kind for kind in LOAD_ORDER if kind is not Kind.ANNOUNCEMENT)


# SQLite's page cache, in KiB. Its default (2,000 KiB) filled with every page the load at
# start-up read and stayed full: ~0.8 KiB a member at 1,000 members, in the daemon's RSS, for
# records the daemon holds decoded anyway. The tables' interior pages fit in this; a write
# reads its leaf from the system's file cache (~2 us a record at 10,000 members).
CACHE_KIB = 128

SEAL_BYTES = 16
_SEAL_KEY_CONTEXT = b"meshd store seal 1"
_KEPT_PEERS_SEAL = b"meshd kept peers"  # (BLAKE2b's personalisation: 16 bytes)
# The tables of the record set; a store written before seals gets the column (NULL: unsealed).
# Releases without seals read such a store as before and write rows without a seal.
_SEALED_TABLES = ("records", "announcements")


def seal_key_of(node_seed: bytes) -> bytes:
    """The key this node seals its store's rows with, derived from its node key's seed."""
    return hashlib.blake2b(_SEAL_KEY_CONTEXT, key=node_seed, digest_size=32).digest()


@dataclass(frozen=True, slots=True)
class LoadReport:
    loaded: int
    rejected: int
    pending: int
    checked: int = 0  # rows whose signatures were checked (no valid seal)


class NetEffect:
    """The net effect on the store's tables of changes taken in order (:meth:`add`): a record
    stored and then dropped among them is never written, a member's last announcement is the
    one written. Its size is bounded by the records it names, however many changes it took:
    what a daemon whose store cannot be written (a full disk) keeps for later."""

    __slots__ = ("announcement_of", "announcements", "dropped", "dropped_nodes", "records")

    def __init__(self) -> None:
        self.records: dict[bytes, tuple[bytes, int, bytes]] = {}
        self.announcements: dict[bytes, tuple[bytes, bytes, bytes]] = {}
        self.announcement_of: dict[bytes, bytes] = {}
        self.dropped: dict[bytes, None] = {}  # record ids to delete, in order
        self.dropped_nodes: dict[bytes, None] = {}  # members whose announcement goes

    def add(self, change: Change) -> None:
        for stored in change.stored:
            rid, node, raw = stored.rid, stored.node_key, stored.raw
            if node is not None:
                self.announcements[node] = (node, rid, raw)  # the last one wins
                self.announcement_of[rid] = node
            else:
                self.records[rid] = (rid, int(stored.kind), raw)
        for rid in change.dropped:
            if self.records.pop(rid, None) is not None:
                continue
            node = self.announcement_of.pop(rid, None)
            if node is not None:
                # Its row on disk, if any, holds an older announcement of the same member.
                if self.announcements.get(node, (b"", b""))[1] == rid:
                    del self.announcements[node]
                self.dropped_nodes[node] = None
            else:
                self.dropped[rid] = None

    @property
    def needs_disk(self) -> bool:
        """Whether it holds credentials or revocations (or drops): what must reach the disk."""
        return bool(self.records or self.dropped or self.dropped_nodes)

    def __bool__(self) -> bool:
        return bool(self.records or self.announcements or self.dropped or self.dropped_nodes)

    def __len__(self) -> int:
        """The rows it writes or deletes."""
        return (
            len(self.records)
            + len(self.announcements)
            + len(self.dropped)
            + len(self.dropped_nodes)
        )


class Store:
    """One node's SQLite database. Not shared across threads; one writer at a time."""

    def __init__(self, path: Path, *, seal_key: bytes | None = None) -> None:
        """``seal_key``: :func:`seal_key_of` this node's key; without it rows are written
        unsealed and every row is verified in full on load."""
        self.path = path
        self.seal_key = seal_key
        try:
            if not path.exists():
                path.touch(mode=0o600)
            self._db = sqlite3.connect(path, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._hard = True
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self._db.executescript(SCHEMA)
            for table in _SEALED_TABLES:
                columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if "seal" not in columns:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN seal BLOB")
            version = self.get_meta("schema")
            if version is None:
                self.set_meta("schema", str(SCHEMA_VERSION).encode())
            elif version != str(SCHEMA_VERSION).encode():
                raise StoreError(
                    f"the store {path} has schema {version!r}, this meshd reads {SCHEMA_VERSION}",
                    hint="use the meshd version that wrote it",
                )
        except sqlite3.DatabaseError as exc:
            said = str(exc)
            raise store_error(
                f"cannot open the store {path}: {said}", said, path.parent,
                disk_of(path.parent, path), opening=True,
            ) from None  # fmt: skip

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the body returns, rolled back if it or the
        commit fails. Whatever SQLite said is the StoreError's message: a write that fails
        (a full disk) may have rolled the transaction back already, and the rollback's own
        complaint hid it ("cannot rollback - no transaction is active"); a commit that
        fails is rolled back, so that no transaction is left open to refuse every write
        after it."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.DatabaseError):
                        db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            said, where = str(exc), self.path.parent
            raise store_error(
                f"cannot write the store {self.path}: {said}", said, where,
                disk_of(where, self.path), opening=False,
            ) from None  # fmt: skip

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
        effect = NetEffect()
        for change in changes:
            effect.add(change)
        return self.write(effect, fsync=fsync)

    def write(self, effect: NetEffect, *, fsync: bool = True) -> bool:
        """:meth:`apply` for changes already gathered (a :class:`NetEffect`): all of it in
        one transaction, or nothing (a StoreError: the disk full, say; ``effect`` is kept
        whole, to be written again with what comes after it)."""
        if not effect:
            return False
        # Credentials and revocations are synced to disk before this returns. Announcements
        # alone are soft state, refreshed by their members all the time: their batches are
        # safe against a crash of meshd (kill -9) but skip the fsync.
        needs_disk = effect.needs_disk
        hard = needs_disk and fsync
        if hard != self._hard:
            self._db.execute(f"PRAGMA synchronous={'FULL' if hard else 'NORMAL'}")
            self._hard = hard
        with self.transaction() as db:
            if effect.dropped:
                rows = [(rid,) for rid in effect.dropped]
                db.executemany("DELETE FROM records WHERE rid = ?", rows)
                db.executemany("DELETE FROM announcements WHERE rid = ?", rows)
            if effect.dropped_nodes:
                nodes = [(node,) for node in effect.dropped_nodes]
                db.executemany("DELETE FROM announcements WHERE node = ?", nodes)
            if effect.records:
                db.executemany(
                    "INSERT OR REPLACE INTO records(rid, kind, raw, seal) VALUES (?, ?, ?, ?)",
                    [(*row, self._seal(row[2])) for row in effect.records.values()],
                )
            if effect.announcements:
                db.executemany(
                    "INSERT OR REPLACE INTO announcements(node, rid, raw, seal) "
                    "VALUES (?, ?, ?, ?)",
                    [(*row, self._seal(row[2])) for row in effect.announcements.values()],
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

    def _seal(self, raw: bytes) -> bytes | None:
        if self.seal_key is None:
            return None
        return hashlib.blake2b(raw, key=self.seal_key, digest_size=SEAL_BYTES).digest()

    def _sealed_rows(
        self, kinds: Iterable[Kind] = LOAD_ORDER
    ) -> Iterator[tuple[bytes, bytes, bytes | None, bytes | None]]:
        """(rid, raw, seal, node): ``node`` is the primary key of an announcement's row, None
        for the other records (whose primary key is ``rid``)."""
        for kind in kinds:
            if kind is Kind.ANNOUNCEMENT:
                query = "SELECT rid, raw, seal, node FROM announcements ORDER BY rid"
                cursor = self._db.execute(query)
            else:
                query = "SELECT rid, raw, seal, NULL FROM records WHERE kind = ? ORDER BY rid"
                cursor = self._db.execute(query, (int(kind),))
            for rid, raw, seal, node in cursor:
                yield (
                    bytes(rid),
                    bytes(raw),
                    None if seal is None else bytes(seal),
                    None if node is None else bytes(node),
                )

    def _sealed_stream(
        self,
        rids: bytearray,
        odd: list[bytes],
        unsealed: dict[bytes, tuple[bytes, bytes | None]],
        kinds: Iterable[Kind] = LOAD_ORDER,
    ) -> Iterator[bytes]:
        """The bytes of every row of ``kinds`` whose seal holds and whose id is its bytes',
        in the load's order, as they are read; every row's id packed into ``rids`` (or
        ``odd``), the other rows into ``unsealed`` (verified in full, and written again
        under their own id: the seal covers the bytes, not the id)."""
        for rid, raw, seal, node in self._sealed_rows(kinds):
            if len(rid) == RECORD_ID_LEN:
                rids += rid
            else:
                odd.append(rid)
            expected = self._seal(raw)
            if (
                expected is not None
                and seal is not None
                and hmac.compare_digest(seal, expected)
                and record_id(raw) == rid  # asked again by the merge: the last id is kept
            ):
                yield raw
            else:
                unsealed[rid] = (raw, node)

    def rows(self, kinds: Iterable[Kind] = LOAD_ORDER) -> Iterator[tuple[bytes, bytes]]:
        return ((rid, raw) for rid, raw, _, _ in self._sealed_rows(kinds))

    def count(self) -> int:
        row = self._db.execute(
            "SELECT (SELECT COUNT(*) FROM records) + (SELECT COUNT(*) FROM announcements)"
        ).fetchone()
        return int(row[0])

    def load_into(self, state: Membership, now: int) -> LoadReport:
        """Merge every stored record (Membership.load); delete rows that no longer verify.

        Sealed rows are merged without checking their signatures again, the others with
        (and sealed once kept); every other check and judgement runs for all."""
        unsealed: dict[bytes, tuple[bytes, bytes | None]] = {}  # rid -> (raw, node)
        # Every row's id, packed (not an object each, held for the whole load while the
        # records it reads are made: ~0.2 KiB a member left as holes once they go); an id of
        # another length (a damaged row) beside them.
        rids = bytearray()
        odd: list[bytes] = []
        refused: list[str] = []
        # The sealed rows as they are read, each decoded as the load takes it: a row's bytes
        # and its decoded record are let go once it is merged (what it keeps holds them
        # elided: meshd.records.elide), so the load does not hold every row's bytes at once
        # and leave them as holes in the allocator's pools when they go.
        # The announcements after the rest is judged, each merged as it is read (all of them
        # decoded and held until then was ~0.3 KiB a member at the load's peak).
        sealed = self._sealed_stream(rids, odd, unsealed, _BEFORE_ANNOUNCEMENTS)
        announced = self._sealed_stream(rids, odd, unsealed, (Kind.ANNOUNCEMENT,))
        taken = decode_each_untrusted(sealed, refused)
        later = decode_each_untrusted(announced, refused)
        # What merging these keeps is in the store already, under the same ids: it is not
        # handed back to be written (one object a record, held to the end of the load).
        batch = state.load(
            taken, now, signatures_trusted=True, announcements=later, stored_already=True
        )
        batches = [_with_refused(batch, refused)]
        del batch
        if unsealed:
            decoded, rejected = decode_batch_untrusted(raw for raw, _ in unsealed.values())
            taken = _handed_over(decoded)  # held by the load alone (see there)
            batches.append(state.load(taken, now, signatures_trusted=False, rejected=rejected))
        # The invites its decoding shared between their members are let go (of invites of one
        # use, one a member, held for nothing; meshd.records.decode).
        forget_invites()
        rejected_reasons = [reason for batch in batches for reason in batch.rejected]
        if rejected_reasons:
            # Records that merely ran out (expired) are routine housekeeping over the years; a
            # row that fails for any other reason (a bad signature, a broken chain) is news.
            reasons = sorted(set(rejected_reasons))
            log.log(
                logging.INFO if reasons == ["expired"] else logging.WARNING,
                "store: dropping %d stored records that no longer verify (%s)",
                len(rejected_reasons),
                ", ".join(reasons),
            )
        # Rows that merging did not keep (refused, superseded, or stored under an id that is
        # not the hash of their bytes) go; what it kept is written back under its true id.
        keep = state.holds  # kept: what the record set holds
        gone = [(rid,) for rid in odd]
        gone += [
            (rid,)
            for at in range(0, len(rids), RECORD_ID_LEN)
            if not keep(rid := bytes(rids[at : at + RECORD_ID_LEN]))
        ]
        if gone:
            with self.transaction() as db:
                db.executemany("DELETE FROM records WHERE rid = ?", gone)
                db.executemany("DELETE FROM announcements WHERE rid = ?", gone)
            self.apply(batches)
        # Rows verified in full and kept are sealed now: the next load trusts them. Each row
        # by its primary key (an announcement's is its member's key).
        kept = [(rid, raw, node) for rid, (raw, node) in unsealed.items() if keep(rid)]
        if kept and self.seal_key is not None:
            with self.transaction() as db:
                db.executemany(
                    "UPDATE records SET seal = ? WHERE rid = ?",
                    [(self._seal(raw), rid) for rid, raw, node in kept if node is None],
                )
                db.executemany(
                    "UPDATE announcements SET seal = ? WHERE node = ? AND rid = ?",
                    [(self._seal(raw), node, rid) for rid, raw, node in kept if node is not None],
                )
        loaded = sum(batch.new for batch in batches)
        # The load read every row once: SQLite's cache gives those pages back (a write reads
        # the few it needs again, from the system's file cache).
        self._db.execute("PRAGMA shrink_memory")
        return LoadReport(loaded, len(gone), state.pending_count, len(unsealed))

    # --- the peers a stopping daemon had (meshd.mesh.kept_peers) ---------------------------

    def keep_peers(self, data: bytes) -> bool:
        """Keep ``data`` (an encoded list of peers) for the next start, sealed, in place of
        any before; False (nothing kept) without a seal key. Any later change of the
        record set deletes it (the schema's triggers)."""
        seal = self._kept_seal(data)
        if seal is None:
            return False
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO kept_peers(one, data, seal) VALUES (1, ?, ?)", (data, seal)
            )
        return True

    def kept_peers(self) -> bytes | None:
        """The list kept by :meth:`keep_peers` if no record changed since and its seal is
        this node's; else None."""
        try:
            row = self._db.execute("SELECT data, seal FROM kept_peers WHERE one = 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the kept peers in {self.path}: {exc}") from None
        if row is None:
            return None
        data, seal = bytes(row[0]), bytes(row[1])
        expected = self._kept_seal(data)
        if expected is None or not hmac.compare_digest(expected, seal):
            log.info("the kept peers in %s are not sealed by this node's key: not used", self.path)
            return None
        return data

    def _kept_seal(self, data: bytes) -> bytes | None:
        if self.seal_key is None:
            return None
        return hashlib.blake2b(
            data, key=self.seal_key, digest_size=SEAL_BYTES, person=_KEPT_PEERS_SEAL
        ).digest()

    # --- what this node issued ------------------------------------------------------------

    def add_issued(self, rid: bytes, kind: Kind, raw: bytes, created_at: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO issued(rid, kind, raw, created_at) VALUES (?, ?, ?, ?)",
                (rid, int(kind), raw, created_at),
            )

    def remove_issued(self, rid: bytes) -> None:
        """Forget an issued record that never left this machine (its token was not written)."""
        with self.transaction() as db:
            db.execute("DELETE FROM issued WHERE rid = ?", (rid,))

    def issued(self, kind: Kind) -> list[bytes]:
        return [
            bytes(raw)
            for (raw,) in self._db.execute(
                "SELECT raw FROM issued WHERE kind = ? ORDER BY created_at", (int(kind),)
            )
        ]


def _with_refused(batch: Batch, refused: list[str]) -> Batch:
    """``batch`` with the reasons of records refused as they were decoded, after it was
    made (:func:`~meshd.membership.state.decode_each_untrusted`), among its own."""
    if not refused:
        return batch
    return replace(batch, rejected=(*refused, *batch.rejected))


def _handed_over(records: list[Record]) -> Iterator[Record]:
    """``records`` in order, each taken out of the list as it is yielded: the load that takes
    them holds each decoded record alone, and lets a certificate go once it is merged."""
    records.reverse()
    while records:
        yield records.pop()
