"""The append-only event store: a thin layer over the eventsourcing recorders.

The recorders give us what an audit log needs and nothing we would have to
maintain ourselves: a gap-free, totally ordered notification log (our
*positions*), atomic inserts across streams, and a unique (stream, version)
key that turns two writers racing on one lineage into an ``IntegrityError``
instead of a silent overwrite.

URLs: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////absolute.db``
(``?synchronous=NORMAL|FULL``, default NORMAL), ``postgresql://user[:pw]@host[:port]/db``
(``?schema=NAME``).
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    Notification,
    PersistenceError,
    StoredEvent,
)

from ledger.errors import ConcurrencyError, CorruptLogError, StoreError, StoreNotFoundError, StoreURLError
from ledger.events.seal import GENESIS, NewEvent, link_hash, seal_batch
from ledger.store.keys import KeyStore, MemoryKeyTable, PostgresKeyTable, SQLiteKeyTable, create_postgres_key_table
from ledger.store.probe import check_postgres_schema, check_sqlite_file

__all__ = ["EventStore", "StoreURL", "parse_store_url"]

log = logging.getLogger(__name__)

#: "A (stream, version) was already taken", as each backend says it.
_CONFLICTS = (IntegrityError, sqlite3.IntegrityError, psycopg.errors.IntegrityError)
#: Anything else a backend refuses a batch with.
_STORE_FAILURES = (PersistenceError, sqlite3.Error, psycopg.Error)

_SYNCHRONOUS = {"OFF", "NORMAL", "FULL", "EXTRA"}
# A schema name goes unquoted into SQL the eventsourcing library builds as text
# (its type lookup), where PostgreSQL folds it to lower case: only names that
# need no quoting at all are safe everywhere.
_PLAIN_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class StoreURL:
    kind: str  # "memory" | "sqlite" | "postgresql"
    url: str
    path: str = ""
    options: dict[str, str] = field(default_factory=dict)
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = ""
    dbname: str = ""


def parse_store_url(url: str) -> StoreURL:
    """Parse and check a store URL; a bad one raises ``StoreURLError`` naming it."""
    if not isinstance(url, str) or "://" not in url:
        raise StoreURLError(
            f"url {url!r} is not a store URL; use memory://, sqlite:///file.db "
            "or postgresql://user@host:5432/dbname"
        )
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "memory":
        if rest not in ("", "/"):
            raise StoreURLError(f"url {url!r}: memory:// takes no path")
        return StoreURL("memory", url)
    if scheme == "sqlite":
        path, _, query = rest.partition("?")
        if not path.startswith("/") or len(path) < 2:
            raise StoreURLError(
                f"url {url!r}: expected sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        path = unquote(path[1:])
        options = {k.lower(): v[-1] for k, v in parse_qs(query).items()}
        sync = options.get("synchronous", "NORMAL").upper()
        if sync not in _SYNCHRONOUS:
            raise StoreURLError(f"url {url!r}: synchronous must be one of {sorted(_SYNCHRONOUS)}")
        options["synchronous"] = sync
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise StoreURLError(f"url {url!r}: unknown option(s) {sorted(unknown)}")
        return StoreURL("sqlite", url, path=path, options=options)
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(url)
        dbname = parts.path.lstrip("/")
        if not parts.hostname or not dbname:
            raise StoreURLError(
                f"url {url!r}: expected postgresql://user@host:port/dbname"
            )
        try:
            port = parts.port or 5432
        except ValueError:
            raise StoreURLError(f"url {url!r}: the port is not a number") from None
        options = {k.lower(): v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(options) - {"schema"}
        if unknown:
            raise StoreURLError(f"url {url!r}: unknown option(s) {sorted(unknown)}")
        schema = options.get("schema")
        if schema is not None and not _PLAIN_SCHEMA.fullmatch(schema):
            raise StoreURLError(
                f"url {url!r}: schema {schema!r} is not a plain identifier "
                "(lower-case letters, digits and _, not starting with a digit, at most 63 characters)"
            )
        return StoreURL(
            "postgresql",
            url,
            options=options,
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or os.environ.get("PGUSER", "postgres")),
            password=unquote(parts.password or os.environ.get("PGPASSWORD", "")),
            dbname=dbname,
        )
    raise StoreURLError(
        f"url {url!r}: unknown scheme {scheme!r}; use memory://, sqlite:/// or postgresql://"
    )


def _sqlite_recorder(spec: StoreURL, create: bool = True) -> tuple[ApplicationRecorder, Any]:
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
            conn = super()._create_connection()
            raw = conn._sqlite_conn
            raw.execute(f"PRAGMA synchronous={synchronous}")
            raw.execute("PRAGMA cache_size=-8192")  # 8 MiB: more only inflates RSS
            raw.execute("PRAGMA wal_autocheckpoint=10000")
            # Freed cells are zeroed on every connection, so a page split or
            # merge never leaves a stale copy of a data key in free space.
            raw.execute("PRAGMA secure_delete=ON")
            return conn

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


def _postgres_recorder(spec: StoreURL, create: bool = True) -> tuple[ApplicationRecorder, Any]:
    import psycopg
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    schema = spec.options.get("schema", "public")
    conninfo = dict(host=spec.host, port=spec.port, user=spec.user, dbname=spec.dbname)
    if spec.password:
        conninfo["password"] = spec.password

    def datastore_for() -> PostgresDatastore:
        return PostgresDatastore(
            dbname=spec.dbname,
            host=spec.host,
            port=spec.port,
            user=spec.user,
            password=spec.password,
            schema=schema,
            pool_size=2,
            max_overflow=4,
        )

    try:
        if not create:
            with psycopg.connect(**conninfo, connect_timeout=5, autocommit=True) as conn:
                check_postgres_schema(spec.url, conn, schema)
            datastore = datastore_for()
            return PostgresApplicationRecorder(datastore), datastore  # reads the catalog, creates nothing
        with psycopg.connect(**conninfo, connect_timeout=5, autocommit=True) as conn:
            # An advisory lock: several processes opening a fresh schema at once
            # would otherwise race in CREATE TABLE ("tuple concurrently updated").
            conn.execute("SELECT pg_advisory_lock(7245001)")
            try:
                conn.execute(
                    psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        psycopg.sql.Identifier(schema)
                    )
                )
                datastore = datastore_for()
                recorder = PostgresApplicationRecorder(datastore)
                recorder.create_table()
                create_postgres_key_table(conn, schema)
            finally:
                conn.execute("SELECT pg_advisory_unlock(7245001)")
    except psycopg.OperationalError as exc:
        raise StoreError(f"url {spec.url!r}: cannot connect to PostgreSQL: {exc}".strip()) from None
    return recorder, datastore


_SQLITE_DAMAGED = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


def _read_error(url: str, exc: BaseException, start: int | None) -> StoreError:
    """A failed read as one line: ``CorruptLogError`` when SQLite says the file is damaged."""
    cause = exc if isinstance(exc, sqlite3.Error) else exc.__cause__
    code = getattr(cause, "sqlite_errorcode", None)
    where = "" if start is None else f" from position {start}"
    if code is not None and code & 0xFF in _SQLITE_DAMAGED:
        # The damaged page's records are unknown, so no position is claimed.
        return CorruptLogError(f"store {url!r}: the log cannot be read{where}, the file is damaged: {cause}")
    return StoreError(f"store {url!r}: read failed{where}: {cause or exc}")


@dataclass(slots=True)
class LogPage:
    """Consecutive log entries as parallel columns (stream ids as text)."""

    positions: list[int]
    stream_ids: list[str]
    versions: list[int]
    topics: list[str]
    states: list[bytes]

    def __len__(self) -> int:
        return len(self.positions)


class EventStore:
    """Append batches, read the ordered log; the key table sits beside it."""

    def __init__(self, url: str = "memory://", *, create: bool = True) -> None:
        """Open the store at ``url``, creating its tables unless ``create=False``.

        ``create=False`` opens only an existing ledger and writes nothing while
        opening: a missing or empty file, a foreign SQLite database, a PostgreSQL
        schema that is missing or has no ledger table raise ``StoreNotFoundError``
        (``ledger.store_probe`` says why the check runs before any connection).
        ``memory://`` never holds an existing ledger (it lives and dies with the
        store object), so it raises ``StoreNotFoundError`` too.
        """
        self.spec = parse_store_url(url)
        self.url = url
        #: False when opened for reading: whatever runs at open must not write then.
        self.create = create
        self._datastore: Any = None
        if self.spec.kind == "memory":
            if not create:
                raise StoreNotFoundError(
                    f"url {url!r}: a memory:// store holds no ledger until this process writes one; "
                    "create=False cannot open it"
                )
            from eventsourcing.popo import POPOApplicationRecorder

            self.recorder: ApplicationRecorder = POPOApplicationRecorder()
            table: Any = MemoryKeyTable()
        elif self.spec.kind == "sqlite":
            self.recorder, self._datastore = _sqlite_recorder(self.spec, create)
            table = SQLiteKeyTable(self._datastore, create=create)
        else:
            self.recorder, self._datastore = _postgres_recorder(self.spec, create)
            table = PostgresKeyTable(self._datastore, self.spec.options.get("schema", "public"))
        self._memory_lock = threading.Lock()
        self._memory_head: tuple[int, str] = (0, GENESIS)  # memory://: (last position, its hash)
        #: Per-lineage data keys for personal fields, outside the event table.
        self.keys = KeyStore(table)
        # A writable open finishes shredding the keys an earlier erase could not
        # (a reader held their bytes). A read-only open must skip this: it writes.
        if create:
            try:
                self.keys.finish_shredding()
            except StoreError as exc:  # never stops an open: the next erase or open retries
                log.warning("%s", exc)

    @property
    def kind(self) -> str:
        return self.spec.kind

    def append(self, events: Sequence[NewEvent]) -> list[int]:
        """Seal and insert the batch atomically; returns the positions the store assigned.

        Each backend takes its write lock, reads the log's last record, seals
        the batch at the positions that follow it (``events.seal_batch``) and
        inserts with those positions, in one transaction: a record's seal can
        then name its own position and its predecessor in the log.
        """
        if not events:
            return []
        insert = {"memory": self._append_memory, "sqlite": self._append_sqlite}.get(
            self.spec.kind, self._append_postgres
        )
        try:
            positions = insert(events)
        except _CONFLICTS as exc:
            streams = sorted({str(e.stream_id) for e in events})
            raise ConcurrencyError(
                "another writer appended to stream(s) "
                f"{', '.join(streams[:3])}{' …' if len(streams) > 3 else ''} first; "
                f"nothing of this batch was written ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})"
            ) from exc
        except _STORE_FAILURES as exc:
            raise StoreError(f"store {self.url!r} refused the batch: {exc}".strip().splitlines()[0]) from exc
        if len(positions) != len(events):  # pragma: no cover
            raise StoreError(f"store {self.url!r} did not report positions for the batch")
        return positions

    def _append_memory(self, events: Sequence[NewEvent]) -> list[int]:
        recorder = self.recorder
        with self._memory_lock:
            # This object is the memory store's only writer, so the head it sealed last is
            # normally the head; the stored record is read only if the list was changed behind it.
            head, prev = self._memory_head
            if (recorder.max_notification_id() or 0) != head:
                head = recorder.max_notification_id() or 0
                prev = link_hash(recorder.select_notifications(head, 1)[0].state) if head else GENESIS
            last = seal_batch(events, head + 1, prev)
            positions = recorder.insert_events(
                [StoredEvent(e.stream_id, e.version, e.topic, e.state) for e in events]
            )
            expected = list(range(head + 1, head + 1 + len(events)))
            if list(positions or ()) != expected:  # pragma: no cover - the POPO recorder numbers rows in order
                raise StoreError(f"store {self.url!r} gave positions {positions}, sealed for {expected}")
            self._memory_head = (expected[-1], last)
        return expected

    def _append_sqlite(self, events: Sequence[NewEvent]) -> list[int]:
        table = self.recorder.events_table_name  # type: ignore[attr-defined]
        with self._datastore.get_connection(commit=True) as conn:
            raw = conn._sqlite_conn
            # IMMEDIATE: take the write lock before reading the head, so no other
            # writer can take the positions this batch is sealed for.
            raw.execute("BEGIN IMMEDIATE")
            try:
                row = raw.execute(f"SELECT rowid, state FROM {table} ORDER BY rowid DESC LIMIT 1").fetchone()
                head, prev = (row[0], link_hash(row[1])) if row else (0, GENESIS)
                seal_batch(events, head + 1, prev)
                raw.executemany(
                    f"INSERT INTO {table} (rowid, originator_id, originator_version, topic, state) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(head + 1 + i, e.stream_id.hex, e.version, e.topic, e.state) for i, e in enumerate(events)],
                )
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
        return list(range(head + 1, head + 1 + len(events)))

    def _append_postgres(self, events: Sequence[NewEvent]) -> list[int]:
        from psycopg import sql

        recorder: Any = self.recorder
        table = sql.SQL("{}.{}").format(
            sql.Identifier(self._datastore.schema), sql.Identifier(recorder.events_table_name)
        )
        with self._datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            # The recorder's EXCLUSIVE table lock: commit order = position order,
            # and no other writer takes positions while this batch is sealed.
            for statement in recorder.lock_table_statements:
                curs.execute(statement, prepare=True)
            curs.execute(
                sql.SQL("SELECT notification_id, state FROM {} ORDER BY notification_id DESC LIMIT 1").format(table),
                prepare=True,
            )
            row = curs.fetchone()
            head, prev = (row["notification_id"], link_hash(bytes(row["state"] or b""))) if row else (0, GENESIS)
            seal_batch(events, head + 1, prev)
            curs.executemany(
                sql.SQL(
                    "INSERT INTO {} (originator_id, originator_version, topic, state, notification_id) "
                    "VALUES (%s, %s, %s, %s, %s)"
                ).format(table),
                [(e.stream_id, e.version, e.topic, e.state, head + 1 + i) for i, e in enumerate(events)],
            )
            curs.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(recorder.channel_name)))
        return list(range(head + 1, head + 1 + len(events)))

    def head(self) -> int:
        """The position of the last event (0 for an empty log)."""
        try:
            return self.recorder.max_notification_id() or 0
        except PersistenceError as exc:
            raise _read_error(self.url, exc, None) from exc

    def read(self, start: int = 1, limit: int = 10_000, stop: int | None = None) -> Sequence[Notification]:
        """Events with position >= start (and <= stop), oldest first."""
        try:
            return self.recorder.select_notifications(start, limit, stop=stop)
        except PersistenceError as exc:
            raise _read_error(self.url, exc, start) from exc

    def read_columns(self, start: int = 1, limit: int = 50_000, *, text_ids: bool = True) -> LogPage:
        """A page of the log as columns, exactly as stored, for bulk readers (replay, verify, projections).

        SQLite and PostgreSQL are read with one plain SELECT into tuples: the
        recorder's per-row ``Notification`` objects cost more than the query,
        and its conversions would fail inside the recorder on an edited row
        (``ledger.decode`` and ``ledger.integrity`` check the raw values and
        name the position instead). A damaged SQLite file is a
        ``CorruptLogError``. ``text_ids=False`` lets ``memory://`` hand back
        its stream ids as the UUIDs it holds (replay skips the text round trip).
        """
        kind = self.spec.kind
        try:
            if kind == "sqlite":
                table = self.recorder.events_table_name  # type: ignore[attr-defined]
                with self._datastore.get_connection(commit=False) as conn:
                    rows = conn._sqlite_conn.execute(
                        f"SELECT rowid, originator_id, originator_version, topic, state FROM {table} "
                        "WHERE rowid>=? ORDER BY rowid LIMIT ?",
                        (start, limit),
                    ).fetchall()
            elif kind == "postgresql":
                from psycopg import sql
                from psycopg.rows import tuple_row

                statement = sql.SQL(
                    "SELECT notification_id, originator_id::text, originator_version, topic, state "
                    "FROM {}.{} WHERE notification_id>=%s ORDER BY notification_id LIMIT %s"
                ).format(
                    sql.Identifier(self._datastore.schema),
                    sql.Identifier(self.recorder.events_table_name),  # type: ignore[attr-defined]
                )
                with self._datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
                    curs.execute(statement, (start, limit))
                    rows = curs.fetchall()
            else:
                rows = [
                    (n.id, str(n.originator_id) if text_ids else n.originator_id, n.originator_version, n.topic, n.state)
                    for n in self.recorder.select_notifications(start, limit)
                ]
        except sqlite3.DatabaseError as exc:  # the raw SQLite connection, not the recorder
            raise _read_error(self.url, exc, start) from exc
        except PersistenceError as exc:
            raise StoreError(f"store {self.url!r}: read failed: {exc}") from exc
        if not rows:
            return LogPage([], [], [], [], [])
        positions, stream_ids, versions, topics, states = map(list, zip(*rows))
        return LogPage(positions, stream_ids, versions, topics, states)

    def iter_all(self, start: int = 1, page: int = 10_000, stop: int | None = None) -> Iterator[Notification]:
        while True:
            batch = self.read(start, page, stop)
            if not batch:
                return
            yield from batch
            start = batch[-1].id + 1

    def read_stream(self, stream_id: Any) -> Sequence[StoredEvent]:
        return self.recorder.select_events(stream_id)

    def close(self) -> None:
        if self._datastore is not None:
            self._datastore.close()
            self._datastore = None
