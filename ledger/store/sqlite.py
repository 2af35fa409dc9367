"""The ``sqlite:///`` backend: the eventsourcing SQLite recorder, tuned, with a sealed append.

Everything that reaches past the recorder's public API into the library's
internals for SQLite lives here: the connection pool subclass that tunes each
connection, the raw ``sqlite3`` connection behind the pool's wrapper, the
events table's name, and the SQL of the append and the bulk read. The version index's
queries are in ``sqlite_index.py`` (a mixin of ``SQLiteBackend``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import count
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import (
    OperationalError,
    PersistenceError,
)

from ledger.errors import CorruptLogError, StoreError, StoreURLError
from ledger.events.seal import GENESIS, NewEvent, link_hash, seal_batch
from ledger.store.keys import SHRED_WAIT_MS, SHREDS, TABLE, raw_key
from ledger.store.probe import check_sqlite_file
from ledger.store.single_writer import SingleWriterLog
from ledger.store.sqlite_index import _ERASURES, _MEMOS, _TRACKING, _VERSIONS, SQLiteIndex
from ledger.store.version_index import (
    ANALYTICS_SECRET,
    INDEX_NAME,
    rows_for_batch,
)

if TYPE_CHECKING:
    from eventsourcing.sqlite import SQLiteApplicationRecorder

    from ledger.store.base import StoreURL

__all__ = ["SQLiteBackend"]

_DAMAGED = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB

#: Durable followers (``Ledger.follow``): the last position each named follower acknowledged.
_FOLLOWERS = "ledger_followers"
_ACKNOWLEDGE = (
    f"INSERT INTO {_FOLLOWERS} (name, position) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET position = max(position, excluded.position)"
)
_TREE_STATE = "ledger_tree_state"
_TREE_TILES = "ledger_tree_tiles"
_SECRETS = "ledger_secrets"
_INDEX_DDL = (
    f"CREATE TABLE IF NOT EXISTS {_VERSIONS} "
    "(ecs_id BLOB PRIMARY KEY, position INTEGER NOT NULL, root_ecs_id BLOB) WITHOUT ROWID",
    f"CREATE TABLE IF NOT EXISTS {_ERASURES} (lineage_id TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID",
    f"CREATE INDEX IF NOT EXISTS {_ERASURES}_position ON {_ERASURES} (position)",
    f"CREATE TABLE IF NOT EXISTS {_MEMOS} "
    "(cache_key BLOB PRIMARY KEY, execution_id BLOB NOT NULL, position INTEGER NOT NULL) WITHOUT ROWID",
    f"CREATE TABLE IF NOT EXISTS {_TRACKING} (name TEXT PRIMARY KEY, position INTEGER NOT NULL, head_hash TEXT NOT NULL)",
    f"INSERT OR IGNORE INTO {_TRACKING} (name, position, head_hash) VALUES ('{INDEX_NAME}', 0, '{GENESIS}')",
    f"CREATE TABLE IF NOT EXISTS {_FOLLOWERS} (name TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID",
    # The Merkle tree (``merkle.py``): its state row names the log (the origin of its signed heads,
    # made once, at random, with the store) and the leaves the tiles cover.
    f"CREATE TABLE IF NOT EXISTS {_TREE_STATE} (name TEXT PRIMARY KEY, origin TEXT NOT NULL, "
    "size INTEGER NOT NULL, position INTEGER NOT NULL)",
    f"INSERT OR IGNORE INTO {_TREE_STATE} (name, origin, size, position) "
    "VALUES ('tree', 'entity-ledger/' || lower(hex(randomblob(16))), 0, 0)",
    f"CREATE TABLE IF NOT EXISTS {_TREE_TILES} (level INTEGER NOT NULL, idx INTEGER NOT NULL, "
    "first_position INTEGER NOT NULL, hashes BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID",
    f"CREATE INDEX IF NOT EXISTS {_TREE_TILES}_first ON {_TREE_TILES} (level, first_position)",
    # keys for what the store vouches for outside itself (the analytics cache's MAC): never in the cache file
    f"CREATE TABLE IF NOT EXISTS {_SECRETS} (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    f"INSERT OR IGNORE INTO {_SECRETS} (name, value) VALUES ('{ANALYTICS_SECRET}', randomblob(32))",
)


def _open_recorder(spec: StoreURL, create: bool = True) -> tuple[SQLiteApplicationRecorder, Any]:
    from eventsourcing.sqlite import (
        SQLiteApplicationRecorder,
        SQLiteConnection,
        SQLiteConnectionPool,
        SQLiteDatastore,
    )

    synchronous = spec.options["synchronous"]

    class TunedPool(SQLiteConnectionPool):
        """Tunes every connection; the library has no settings for these.

        A larger page cache and less frequent WAL checkpoints keep bulk appends
        from stalling on checkpoints (measured: p90 append latency spikes).
        """

        def _create_connection(self) -> SQLiteConnection:
            conn = self._connect_waiting()
            raw = conn._sqlite_conn
            raw.execute(f"PRAGMA synchronous={synchronous}")
            raw.execute("PRAGMA cache_size=-8192")  # 8 MiB: more only inflates RSS
            raw.execute("PRAGMA wal_autocheckpoint=10000")
            # Freed cells are zeroed on every connection, so a page split or
            # merge never leaves a stale copy of a data key in free space.
            raw.execute("PRAGMA secure_delete=ON")
            return conn

        def _connect_waiting(self) -> SQLiteConnection:
            """A new connection; a brand-new file that another process is switching to WAL at
            the same moment answers "database is locked" at once (the switch does not wait
            for the busy timeout), so try again for up to the lock timeout."""
            deadline = time.monotonic() + 30
            while True:
                try:
                    return super()._create_connection()
                except (OperationalError, sqlite3.OperationalError) as exc:  # raised wrapped or raw
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)

    directory = os.path.dirname(os.path.abspath(spec.path))
    if not os.path.isdir(directory):
        raise StoreURLError(f"url {spec.url!r}: directory {directory!r} does not exist")
    check_sqlite_file(spec.url, spec.path, create=create)
    datastore = SQLiteDatastore(db_name=spec.path, lock_timeout=30)
    datastore.pool = TunedPool(db_name=spec.path, lock_timeout=30)
    recorder = SQLiteApplicationRecorder(datastore)
    if create:
        recorder.create_table()
    else:
        # The pool would switch a rollback-journal file to WAL on its first
        # connection: a write, which opening for reading must not make.
        datastore.pool.is_journal_mode_wal = True
    return recorder, datastore


def _lineage_or_raw(value: Any) -> Any:
    """A key row's lineage id as a UUID, or the stored value itself when it is not one."""
    try:
        return UUID(value) if type(value) is str else value
    except ValueError:
        return value


class SQLiteBackend(SQLiteIndex, SingleWriterLog):
    """One SQLite file: the events table and, beside it, the key table."""

    #: Raised by the raw connection the append and the bulk read use, not by the recorder.
    conflicts: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)
    failures: tuple[type[BaseException], ...] = (sqlite3.Error,)
    read_failures: tuple[type[BaseException], ...] = (sqlite3.DatabaseError,)

    def __init__(self, spec: StoreURL, create: bool = True) -> None:
        """Check the file first (``ledger.store.probe``), then open it; ``create=False`` writes nothing."""
        self.recorder, self._datastore = _open_recorder(spec, create)
        self._path = spec.path
        self._own_lock = threading.Lock()
        self._own: Any = None
        #: (last position, its link hash, ``PRAGMA data_version``) after this backend's own last
        #: append; None until then, and after any append that did not commit (``append``).
        self._tail: tuple[int, str, int] | None = None
        self.key_table = SQLiteKeyTable(self._datastore, create=create)
        if create:
            try:
                self._create_index_tables()
            except (PersistenceError, sqlite3.Error) as exc:
                self.close()
                cause = exc.__cause__ if isinstance(exc, PersistenceError) else exc
                if self.is_damaged(cause):
                    raise CorruptLogError(f"store {spec.url!r}: the file is damaged: {cause}") from exc
                raise StoreError(f"store {spec.url!r}: cannot create the version index: {exc}") from exc

    def _create_index_tables(self) -> None:
        """The index tables, in one IMMEDIATE transaction.

        Several processes open a new store at once (``map`` workers): a deferred transaction
        would read first and then fail to write, at once, with "database is locked" when
        another opener wrote meanwhile; taking the write lock first makes it wait its turn.
        """
        with self._own_connection() as conn:
            raw = conn._sqlite_conn
            raw.execute("BEGIN IMMEDIATE")
            try:
                for statement in _INDEX_DDL:
                    raw.execute(statement)
                columns = {row[1] for row in raw.execute(f"PRAGMA table_info({_VERSIONS})").fetchall()}
                if "root_ecs_id" not in columns:  # the layout before tree rows
                    raw.execute(f"ALTER TABLE {_VERSIONS} ADD COLUMN root_ecs_id BLOB")
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise

    @contextmanager
    def _own_connection(self) -> Iterator[Any]:
        """This backend's own connection, for its appends and the index lookups the write side makes.

        Taking a connection from the pool costs more than the lookup itself (measured: ~70 µs
        against 20 µs), and a pooled reader's first read after another connection's commit
        costs more again; the write side does both several times per call. One connection,
        made by the pool's factory (same settings) but kept here, serves them under a lock.
        """
        with self._own_lock:
            if self._own is None:
                self._own = self._datastore.pool._create_connection()
            yield self._own

    def append(self, events: Sequence[NewEvent], tracking: tuple[str, int] | None = None) -> list[int]:
        """Seal the batch after the head and insert it with explicit rowids, in one IMMEDIATE transaction.

        ``tracking`` (follower name, position) is acknowledged in the same transaction.
        """
        table = self.recorder.events_table_name
        with self._own_connection() as conn:
            raw = conn._sqlite_conn
            # IMMEDIATE: take the write lock before reading the head, so no other
            # writer can take the positions this batch is sealed for.
            raw.execute("BEGIN IMMEDIATE")
            try:
                head, prev, version = self._head(raw, table)
                seal_batch(events, head + 1, prev)
                raw.executemany(
                    f"INSERT INTO {table} (rowid, originator_id, originator_version, topic, state) "
                    "VALUES (?, ?, ?, ?, ?)",
                    # '%032x' of the int is UUID.hex without its Python-level property call
                    [(p, "%032x" % e.stream_id.int, e.version, e.topic, e.state) for p, e in zip(count(head + 1), events)],
                )
                self._write_index(raw, rows_for_batch(events, head + 1), head, head + len(events), events[-1].hash, fresh=True)
                if tracking is not None:
                    raw.execute(_ACKNOWLEDGE, tracking)
                raw.execute("COMMIT")
            except BaseException:
                self._tail = None
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
            self._tail = (head + len(events), events[-1].hash, version)
        return list(range(head + 1, head + 1 + len(events)))

    def _head(self, raw: Any, table: str) -> tuple[int, str, int]:
        """(last position, the hash the next record links to, ``PRAGMA data_version``), under the write lock.

        ``data_version`` changes exactly when another connection (in this process or another)
        committed since this one last looked, and the own connection writes the events table
        only in ``append``: when it is unchanged since this backend's last committed append,
        the head is still the one that append left, and the ``SELECT`` of the last record
        (and its link hash) is skipped (measured: the pragma costs a third of the read).
        """
        (version,) = raw.execute("PRAGMA data_version").fetchone()
        tail = self._tail
        if tail is not None and tail[2] == version:
            return tail[0], tail[1], version
        row = raw.execute(f"SELECT rowid, state FROM {table} ORDER BY rowid DESC LIMIT 1").fetchone()
        head, prev = (row[0], link_hash(row[1])) if row else (0, GENESIS)
        return head, prev, version

    def read_rows(self, start: int, limit: int, *, text_ids: bool = True, past_head: bool = False) -> list[tuple[Any, ...]]:
        """One plain SELECT on the raw connection: the values exactly as stored (stream ids are text here)."""
        table = self.recorder.events_table_name
        with self._datastore.get_connection(commit=False) as conn:
            rows: list[tuple[Any, ...]] = conn._sqlite_conn.execute(
                f"SELECT rowid, originator_id, originator_version, topic, state FROM {table} "
                "WHERE rowid>=? ORDER BY rowid LIMIT ?",
                (start, limit),
            ).fetchall()
        return rows

    def hold_follower(self, name: str) -> Callable[[], None] | None:
        """An ``flock`` on ``<store>.follow-<hash of name>.lock``: held by one open file at a time
        (in this process or another), and released by the kernel when its holder dies."""
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]
        fd = os.open(f"{os.path.abspath(self._path)}.follow-{digest}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return lambda: os.close(fd)  # closing the last descriptor releases the flock

    def secret(self, name: str) -> bytes | None:
        """The store's secret ``name`` (made by a writable open), or None (a file written before it)."""
        row = self._side_row(f"SELECT value FROM {_SECRETS} WHERE name = ?", (name,))
        return None if row is None else bytes(row[0])

    def _side_row(self, query: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        """One row of a table beside the log, or None: no such row, or a file written before the
        table was added (a read-only open never creates it)."""
        try:
            with self._own_connection() as conn:
                row: tuple[Any, ...] | None = conn._sqlite_conn.execute(query, params).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
        return row

    # ------------------------------------------------------------ Merkle tree tiles
    def tree_state(self) -> tuple[str, int, int] | None:
        """(origin, size, position) of the stored tree; None in a file written before the tree."""
        row = self._side_row(f"SELECT origin, size, position FROM {_TREE_STATE} WHERE name = 'tree'")
        return None if row is None else (str(row[0]), int(row[1]), int(row[2]))

    def tree_tiles(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], tuple[bytes, int]]:
        """The tiles among ``keys``: one statement per 100 keys (a proof asks for its tiles at once)."""
        found: dict[tuple[int, int], tuple[bytes, int]] = {}
        one = f"SELECT level, idx, CAST(hashes AS BLOB), first_position FROM {_TREE_TILES} WHERE level = ? AND idx = ?"
        with self._own_connection() as conn:
            raw = conn._sqlite_conn
            for at in range(0, len(keys), 100):
                chunk = keys[at : at + 100]
                for level, index, hashes, first in raw.execute(" UNION ALL ".join([one] * len(chunk)), [v for k in chunk for v in k]):
                    found[(int(level), int(index))] = (bytes(hashes), int(first))
        return found

    def tree_tile_at(self, position: int) -> tuple[int, int] | None:
        with self._own_connection() as conn:
            row = conn._sqlite_conn.execute(
                f"SELECT idx, first_position FROM {_TREE_TILES} WHERE level = 0 AND first_position <= ? "
                "ORDER BY first_position DESC LIMIT 1",
                (position,),
            ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def tree_write(self, expect: int, size: int, position: int, tiles: list[tuple[int, int, int, bytes]]) -> bool:
        """Move the state row from ``expect`` and store the tiles, in one IMMEDIATE transaction."""
        with self._own_connection() as conn:
            raw = conn._sqlite_conn
            raw.execute("BEGIN IMMEDIATE")
            try:
                moved: int = raw.execute(
                    f"UPDATE {_TREE_STATE} SET size = ?, position = ? WHERE name = 'tree' AND size = ?", (size, position, expect)
                ).rowcount
                if moved == 1:
                    raw.executemany(
                        f"INSERT INTO {_TREE_TILES} (level, idx, first_position, hashes) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (level, idx) DO UPDATE SET first_position = excluded.first_position, hashes = excluded.hashes",
                        tiles,
                    )
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
        return moved == 1

    def tree_dump(self) -> Iterator[tuple[int, int, int, bytes]]:
        with self._datastore.get_connection(commit=False) as conn:
            for level, index, first, hashes in conn._sqlite_conn.execute(
                f"SELECT level, idx, first_position, CAST(hashes AS BLOB) FROM {_TREE_TILES} ORDER BY level, idx"
            ):
                yield int(level), int(index), int(first), bytes(hashes)

    # ------------------------------------------------------------ followers
    def follower_position(self, name: str) -> int:
        """The position follower ``name`` last acknowledged (0: none, or a file without the table)."""
        row = self._side_row(f"SELECT position FROM {_FOLLOWERS} WHERE name = ?", (name,))
        return 0 if row is None else int(row[0])

    def acknowledge(self, name: str, position: int) -> None:
        """Move follower ``name`` forward to ``position`` (never back), in its own transaction."""
        with self._own_connection() as conn:
            raw = conn._sqlite_conn
            raw.execute("BEGIN IMMEDIATE")
            try:
                raw.execute(_ACKNOWLEDGE, (name, position))
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise

    def listen(self) -> None:
        """No notification channel: followers poll."""
        return None

    def is_damaged(self, cause: BaseException | None) -> bool:
        """True when SQLite says the file itself is damaged (corrupt, or not a database)."""
        code = getattr(cause, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _DAMAGED

    def close(self) -> None:
        with self._own_lock:
            self._tail = None
            if self._own is not None:
                self._own.close()
                self._own = None
        if self._datastore is not None:
            self._datastore.close()
            self._datastore = None


# ---------------------------------------------------------------- key table
class SQLiteKeyTable:
    """``ledger_keys`` in the store's SQLite file, through the eventsourcing pool."""

    def __init__(self, datastore: Any, *, create: bool = True) -> None:
        """``create=False`` (a store opened for reading) leaves the schema as it is."""
        self._datastore = datastore
        if not create:
            return
        with datastore.transaction(commit=True) as cur:
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} "
                "(lineage_id TEXT PRIMARY KEY, key BLOB NOT NULL) WITHOUT ROWID"
            )
            cur.execute(f"CREATE TABLE IF NOT EXISTS {SHREDS} (lineage_id TEXT PRIMARY KEY) WITHOUT ROWID")

    def fetch(self, lineage_id: UUID) -> Any:
        with self._datastore.transaction(commit=False) as cur:
            cur.execute(f"SELECT key FROM {TABLE} WHERE lineage_id = ?", (str(lineage_id),))
            row = cur.fetchone()
        return None if row is None else raw_key(row[0])

    def insert_if_absent(self, lineage_id: UUID, key: bytes) -> Any:
        with self._datastore.transaction(commit=True) as cur:
            cur.execute(
                f"INSERT INTO {TABLE} (lineage_id, key) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (str(lineage_id), key),
            )
            cur.execute(f"SELECT key FROM {TABLE} WHERE lineage_id = ?", (str(lineage_id),))
            return raw_key(cur.fetchone()[0])

    def delete(self, lineage_id: UUID) -> bool:
        with self._datastore.get_connection(commit=True) as conn:
            conn._sqlite_conn.execute("PRAGMA secure_delete = ON")  # freed cells are overwritten with zeros
            with conn.transaction(commit=True) as cur:
                cur.execute(f"DELETE FROM {TABLE} WHERE lineage_id = ?", (str(lineage_id),))
                count: int = cur.sqlite_cursor.rowcount
                deleted = count > 0
                if deleted:
                    cur.execute(
                        f"INSERT INTO {SHREDS} (lineage_id) VALUES (?) ON CONFLICT DO NOTHING",
                        (str(lineage_id),),
                    )
        return deleted

    def shred(self) -> set[UUID]:
        """Copy the WAL into the zeroed main file and truncate it, unless a reader prevents it.

        A checkpoint cannot copy WAL frames past the snapshot of a connection
        still reading, nor truncate the WAL: SQLite then reports ``busy`` (or
        fewer frames checkpointed than logged) and the deleted keys' bytes are
        still in the files, so they stay pending.
        """
        import sqlite3

        with self._datastore.get_connection(commit=True) as conn:
            raw = conn._sqlite_conn
            try:
                pending = [r[0] for r in raw.execute(f"SELECT lineage_id FROM {SHREDS}").fetchall()]
                if not pending:
                    return set()
                if not self._checkpoint(raw):
                    return {UUID(p) for p in pending}
            except sqlite3.Error as exc:
                raise StoreError(f"key table {TABLE!r}: shredding deleted keys failed: {exc}") from exc
            with conn.transaction(commit=True) as cur:
                cur.executemany(f"DELETE FROM {SHREDS} WHERE lineage_id = ?", [(p,) for p in pending])
            self._checkpoint(raw)  # leave the WAL empty again (it holds no key bytes either way)
        return set()

    @staticmethod
    def _checkpoint(raw: Any) -> bool:
        """``wal_checkpoint(TRUNCATE)`` with a short busy timeout; True when the WAL was emptied."""
        (timeout,) = raw.execute("PRAGMA busy_timeout").fetchone()
        raw.execute(f"PRAGMA busy_timeout = {SHRED_WAIT_MS}")
        try:
            busy, logged, copied = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            raw.execute(f"PRAGMA busy_timeout = {int(timeout)}")
        emptied: bool = busy == 0 and logged == copied
        return emptied

    def fetch_all(self) -> dict[Any, Any]:
        """Every row, by lineage; a ``lineage_id`` that is not a UUID (an edited or inserted row:
        SQLite keeps any value in a TEXT column) stays the value it is, for the audit to name."""
        with self._datastore.transaction(commit=False) as cur:
            cur.execute(f"SELECT lineage_id, key FROM {TABLE}")
            return {_lineage_or_raw(r[0]): raw_key(r[1]) for r in cur.fetchall()}
