"""The ``postgresql://`` backend: the eventsourcing PostgreSQL recorder, with a sealed append.

Everything that reaches past the recorder's public API into the library's
internals for PostgreSQL lives here: the datastore's schema, the events
table's name, the recorder's table-lock statements and notification channel,
and the SQL of the append and the bulk read. The version index's tables and queries are in
``pg_index.py`` (a mixin of ``PostgresBackend``), the key table in ``pg_keys.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import PersistenceError

from ledger.errors import CorruptLogError, StoreError
from ledger.events.decode import corrupt
from ledger.events.seal import (
    GENESIS,
    NewEvent,
    SessionLink,
    link_hash,
    seal_at,
    seal_batch,
)
from ledger.store.group_commit import GroupCommit, Request
from ledger.store.pg_append import (
    CHECKPOINT_EVERY,
    CHECKPOINT_FUNCTION,
    CHECKPOINT_MOST,
    CHECKPOINT_SECONDS,
    CHECKPOINTS,
    FALLBACK_STATES,
    FUNCTION,
    HWM_FUNCTION,
    LIVE_ROW,
    chain_setting,
    create_append_function,
    lock_keys,
)
from ledger.store.pg_index import (
    _ERASURES,
    _FOLLOWERS,
    _MEMOS,
    _TRACKING,
    _VERSIONS,
    PostgresIndex,
    create_index_tables,
)
from ledger.store.pg_keys import PostgresKeyTable, create_postgres_key_table
from ledger.store.pg_params import bytea_array, int_array, text_array, uuid_array
from ledger.store.pg_side import PostgresListener, PostgresSideTables, connect_keywords, sqlstate
from ledger.store.probe import check_postgres_schema
from ledger.store.version_index import (
    INDEX_NAME,
    IndexRows,
    rows_for_batch,
)

if TYPE_CHECKING:
    from eventsourcing.postgres import PostgresApplicationRecorder

    from ledger.store.base import StoreURL

__all__ = ["PostgresBackend"]

log = logging.getLogger(__name__)

#: Serialises the creation of a fresh schema's tables across processes.
_CREATE_LOCK = 7245001

#: Seconds a connection of this library may sit inside a transaction waiting for its own process
#: before the server ends it. A writer holds the write lock (shared) through its transaction, and
#: every high-water mark waits for it: a writer process stopped there (SIGSTOP, a debugger, a
#: frozen VM) would otherwise stall every reader and, queued behind them, every writer. Its batch
#: then rolls back (a hole) and its commit fails. The library's own transactions never wait on
#: their process for more than a few milliseconds.
IDLE_IN_TRANSACTION_S = 10.0


def _open_recorder(spec: StoreURL, create: bool = True) -> tuple[PostgresApplicationRecorder, Any]:
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    schema = spec.options.get("schema", "public")
    conninfo = connect_keywords(spec)

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
            idle_in_transaction_session_timeout=IDLE_IN_TRANSACTION_S,
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
            conn.execute(f"SELECT pg_advisory_lock({_CREATE_LOCK})")
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
                create_index_tables(conn, schema)
                create_append_function(conn, schema, recorder.events_table_name, recorder.channel_name, INDEX_NAME)
            finally:
                conn.execute(f"SELECT pg_advisory_unlock({_CREATE_LOCK})")
    except psycopg.OperationalError as exc:
        raise StoreError(f"url {spec.url!r}: cannot connect to PostgreSQL: {exc}".strip()) from None
    return recorder, datastore


class PostgresBackend(PostgresIndex, PostgresSideTables):
    """One PostgreSQL schema: the events table and, beside it, the key tables."""

    #: False: every append under the ledger's lock, one transaction each (``bench_group_commit.py``
    #: measures the two ways against each other).
    group_commit = True
    #: Raised by the psycopg connection the append uses, not by the recorder.
    conflicts: tuple[type[BaseException], ...] = (psycopg.errors.IntegrityError,)
    failures: tuple[type[BaseException], ...] = (psycopg.Error,)
    read_failures: tuple[type[BaseException], ...] = ()

    def __init__(self, spec: StoreURL, create: bool = True) -> None:
        """Open (and with ``create``, make) the schema's tables; ``create=False`` only checks the catalog."""
        self.recorder, self._datastore = _open_recorder(spec, create)
        self.key_table = PostgresKeyTable(self._datastore, spec.options.get("schema", "public"))
        from psycopg import sql

        schema = sql.Identifier(self._datastore.schema)
        self._versions = sql.SQL("{}.{}").format(schema, sql.Identifier(_VERSIONS))
        self._erasures = sql.SQL("{}.{}").format(schema, sql.Identifier(_ERASURES))
        self._tracking = sql.SQL("{}.{}").format(schema, sql.Identifier(_TRACKING))
        self._acknowledge = sql.SQL(
            "INSERT INTO {} AS f (name, position) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET position = greatest(f.position, EXCLUDED.position)"
        ).format(sql.SQL("{}.{}").format(schema, sql.Identifier(_FOLLOWERS)))
        self._follower_position = sql.SQL("SELECT position FROM {} WHERE name = %s").format(
            sql.SQL("{}.{}").format(schema, sql.Identifier(_FOLLOWERS))
        )
        self._spec = spec
        self._memos = sql.SQL("{}.{}").format(schema, sql.Identifier(_MEMOS))
        self._insert_memos = sql.SQL(
            "INSERT INTO {} (cache_key, execution_id, position) "
            "SELECT * FROM unnest(%s::bytea[], %s::uuid[], %s::bigint[]) ON CONFLICT DO NOTHING"
        ).format(self._memos)
        self._memo_sql = sql.SQL(
            "SELECT m.execution_id, m.position, e.originator_id::text, e.originator_version, e.topic, e.state "
            "FROM {} m LEFT JOIN {} e ON e.notification_id = m.position WHERE m.cache_key = %s"
        ).format(self._memos, sql.SQL("{}.{}").format(schema, sql.Identifier(self.recorder.events_table_name)))
        recorder = self.recorder
        table = self._events = sql.SQL("{}.{}").format(schema, sql.Identifier(recorder.events_table_name))
        self._append_sql: tuple[Any, ...] = (
            *recorder.lock_table_statements,
            sql.SQL("SELECT notification_id, state FROM {} ORDER BY notification_id DESC LIMIT 1").format(table),
            sql.SQL(
                "INSERT INTO {} (originator_id, originator_version, topic, state, notification_id) "
                "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[], %s::bigint[])"
            ).format(table),
            sql.SQL("NOTIFY {}").format(sql.Identifier(recorder.channel_name)),
        )
        self._rendered: tuple[str, ...] | None = None
        casts = ("uuid[]", "bigint[]", "text[]", "bytea[]", "text[]", "int[]", "uuid[]", "int[]", "uuid[]", "uuid[]", "uuid[]", "uuid[]", "int[]")
        self._call = sql.SQL("SELECT first_position, hashes, checkpoint, session, session_after, session_prev FROM {}.{}(" + ", ".join(f"%s::{c}" for c in casts) + ")").format(
            schema, sql.Identifier(FUNCTION)
        )
        self._hwm_sql = sql.SQL("SELECT {}.{}() AS hwm").format(schema, sql.Identifier(HWM_FUNCTION))
        self._checkpoint_sql = sql.SQL("SELECT {}.{}(%s, %s, %s) AS hi").format(schema, sql.Identifier(CHECKPOINT_FUNCTION))
        self._checkpoints = sql.SQL("{}.{}").format(schema, sql.Identifier(CHECKPOINTS))
        self._chain = chain_setting(self._datastore.schema, recorder.events_table_name)
        self._server_append = True  # until the schema shows it has no such function
        #: Whether this schema's writers take positions concurrently (seal v3, read up to the
        #: high-water mark): the schema has the tracking row the upgrade writes (``pg_append``).
        self._concurrent = self._read_live_after() is not None
        #: The last position this backend appended, and the last checkpoint it heard of.
        self._appended = 0
        self._checkpointed = 0
        self._checkpoint_tried = time.monotonic()
        self._group = GroupCommit(self._commit_many)

    def _statements(self, conn: Any) -> tuple[str, ...]:
        """The append's SQL, rendered once (composing it per call showed in profiles)."""
        if self._rendered is None:
            self._rendered = tuple(s.as_string(conn) for s in self._append_sql)
        return self._rendered

    @property
    def concurrent_appends(self) -> bool:
        """Whether appends may run while this process plans the next batch (``Ledger.commit``
        then releases its lock around ``append``): writers of this schema take positions
        concurrently, and batches arriving together share a transaction (``GroupCommit``)."""
        return self._concurrent and self._server_append and self.group_commit

    def append(self, events: Sequence[NewEvent], tracking: tuple[str, int] | None = None) -> list[int]:
        """Append the batch with one call of the schema's append function, else the Python way.

        ``tracking`` (follower name, position) is acknowledged in the same transaction. Where
        writers take positions concurrently, batches of this process's threads that arrive
        while a commit is under way share the next one (``group_commit``).
        """
        if self._concurrent and self._server_append and self.group_commit:
            return self._group.submit((events, tracking))
        return self._append_one(events, tracking)

    def _append_one(self, events: Sequence[NewEvent], tracking: tuple[str, int] | None = None) -> list[int]:
        if self._server_append:
            positions = self._append_in_server(events, tracking)
            if positions is not None:
                return positions
        return self._append_from_python(events, tracking)

    def _commit_many(self, group: list[Request]) -> None:
        """Settle every request of a group: one transaction for all; if any batch of it fails,
        each batch alone, so that only the failing one hears of it."""
        if len(group) > 1:
            calls = [self._server_call(events) for events, _ in (r.item for r in group)]
            ready = [c for c in calls if c is not None]
            if len(ready) == len(calls):  # every batch can go through the append function
                try:
                    with self._datastore.get_connection() as conn, conn.transaction():
                        done = [self._call_in(conn, r.item[0], c, r.item[1]) for r, c in zip(group, ready)]
                except Exception:  # noqa: BLE001 - each batch is tried alone below, and told its own error
                    pass
                else:
                    for r, (positions, _) in zip(group, done):
                        r.succeed(positions)
                    self._after_append(max(p[-1] for p, _ in done), max((c or 0) for _, c in done))
                    return
        for r in group:
            try:
                r.succeed(self._append_one(*r.item))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the thread that appended it
                r.fail(exc)

    def _server_call(self, events: Sequence[NewEvent]) -> tuple[tuple[str, ...], IndexRows] | None:
        """The append function's parameters for a batch, and its index rows; None when the
        function cannot take it (an unreadable version body: the Python path refuses it)."""
        try:
            rows = rows_for_batch(events, 0)  # offsets: the server adds the first position
        except CorruptLogError:
            return None
        v_rows, roots = rows.split_roots()
        last: dict[UUID, int] = {}
        prev_in_batch = []
        for i, e in enumerate(events, 1):
            prev_in_batch.append(last.get(e.stream_id, 0))
            last[e.stream_id] = i
        params = (  # array literals (``pg_params``): psycopg's per-element adaptation cost more than the rest
            uuid_array([e.stream_id for e in events]),
            int_array([e.version for e in events]),
            text_array([e.topic for e in events]),
            bytea_array([e.body for e in events]),
            text_array([e.prev_hash for e in events]),
            int_array(prev_in_batch),
            uuid_array([r[0] for r in v_rows]),
            int_array([r[1] for r in v_rows]),
            uuid_array([r[2] for r in v_rows]),
            uuid_array(list(roots)),
            uuid_array(list(roots.values())),
            uuid_array([lineage for lineage, _ in rows.erasures]),
            int_array([off for _, off in rows.erasures]),
        )
        return params, rows

    def _call_in(
        self, conn: Any, events: Sequence[NewEvent], call: tuple[tuple[str, ...], IndexRows], tracking: tuple[str, int] | None
    ) -> tuple[list[int], int | None]:
        """One batch through the append function inside the caller's transaction: (positions, last checkpoint)."""
        params, rows = call
        row = conn.execute(self._call, params, prepare=True).fetchone()
        first = row["first_position"]
        positions = list(range(first, first + len(events)))
        if rows.memos:  # the memo index, in the same transaction (the function does not know it)
            self._write_memos(conn, [(key, execution, first + off) for key, execution, off in rows.memos])
        # Before the commit: the library's own seal of the batch (which fills each
        # NewEvent's state) must give the server's hashes, or nothing is written.
        seal_at(events, positions, SessionLink(row["session"], row["session_after"], row["session_prev"], row["checkpoint"]))
        if [e.hash for e in events] != row["hashes"]:
            raise StoreError(
                f"{FUNCTION} sealed the batch for position {first} differently from ledger.events.seal; nothing was written"
            )
        if tracking is not None:
            conn.execute(self._acknowledge, tracking)
        return positions, row["checkpoint"]

    def _append_in_server(self, events: Sequence[NewEvent], tracking: tuple[str, int] | None = None) -> list[int] | None:
        """One round trip (``pg_append``); None when the function cannot serve this batch."""
        call = self._server_call(events)
        if call is None:
            return None
        try:
            with self._datastore.get_connection() as conn, conn.transaction():
                positions, checkpoint = self._call_in(conn, events, call, tracking)
        except StoreError:
            raise
        except Exception as exc:  # the datastore wraps psycopg's errors; the SQLSTATE is on the cause
            state = sqlstate(exc)
            if state not in FALLBACK_STATES:
                raise
            if state == "42883":  # no function in this schema (an older library's, opened with create=False)
                self._server_append = False
            return None
        self._concurrent = True
        self._after_append(positions[-1], checkpoint)
        return positions

    def _after_append(self, last: int, checkpoint: int | None) -> None:
        """Make the next checkpoint when this batch ended ``CHECKPOINT_EVERY`` positions past the last
        one, or when this process last tried ``CHECKPOINT_SECONDS`` ago.

        After the commit, in its own transaction: the checkpoint covers positions up to the
        high-water mark, which waits for this batch's own commit. The records after the last
        checkpoint rest on their stream chains (and a digest) until the next one.
        """
        self._appended = max(self._appended, last)
        if checkpoint is not None:
            self._checkpointed = max(self._checkpointed, checkpoint)
        now = time.monotonic()
        at_least = None
        if last - self._checkpointed >= CHECKPOINT_EVERY:
            at_least = CHECKPOINT_EVERY
        elif last > self._checkpointed and now - self._checkpoint_tried >= CHECKPOINT_SECONDS:
            at_least = 1
        if at_least is None:
            return
        self._checkpoint_tried = now
        try:
            self.checkpoint(at_least)
        except Exception as exc:  # the batch is committed: its caller must hear of success
            log.warning("could not make a checkpoint after position %d (the next writer will): %s", last, exc)

    def checkpoint(self, at_least: int = 1) -> int | None:
        """Make the next checkpoint row, up to the high-water mark, when it would cover at least
        ``at_least`` positions and no other process is making one; returns its last position."""
        if not self._concurrent:
            return None
        made = None
        hwm = self.head()  # its own transaction, ended before the checkpoint's begins (see pg_append)
        for _ in range(64):  # a long log (just upgraded) gets CHECKPOINT_MOST positions per row
            with self._datastore.transaction(commit=True) as curs:
                curs.execute(self._checkpoint_sql, (at_least, CHECKPOINT_MOST, hwm))
                hi = curs.fetchone()["hi"]
            if hi is None:
                break
            made = self._checkpointed = hi
        return made

    def records_between(self, after: int, upto: int) -> int:
        """How many records lie in positions (after, upto]: holes do not count."""
        from psycopg import sql

        if not self._concurrent:
            return max(0, upto - after)
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(
                sql.SQL("SELECT count(*) AS n FROM {} WHERE notification_id > %s AND notification_id <= %s").format(self._events),
                (after, upto),
            )
            return int(curs.fetchone()["n"])

    def checkpoints(self) -> list[tuple[int, int, int, str, list[int]]]:
        """(lo, hi, records, hash, holes) of every checkpoint row, by position."""
        from psycopg import sql

        if not self._concurrent:
            return []
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(sql.SQL("SELECT lo, hi, records, hash, holes FROM {} ORDER BY hi").format(self._checkpoints))
            return [(r["lo"], r["hi"], r["records"], r["hash"], list(r["holes"] or [])) for r in curs.fetchall()]

    def head(self) -> int:
        """The high-water mark where writers take positions concurrently (every position at or
        below it is final), else the last position."""
        if not self._concurrent:
            return self.recorder.max_notification_id() or 0
        with self._datastore.transaction(commit=True) as curs:  # the lock is taken and given back inside
            curs.execute(self._hwm_sql, prepare=True)
            return int(curs.fetchone()["hwm"])

    def _read_live_after(self) -> int | None:
        """The position after which every append indexes itself (``pg_append.LIVE_ROW``); None on a
        schema an older library wrote (or one with no index tables)."""
        from psycopg import sql

        try:
            with self._datastore.transaction(commit=False) as curs:
                if not self._has_index(curs):
                    return None
                curs.execute(sql.SQL("SELECT position FROM {} WHERE name = %s").format(self._tracking), (LIVE_ROW,))
                row = curs.fetchone()
        except (psycopg.Error, PersistenceError):
            return None
        return None if row is None else int(row["position"])

    def index_live_after(self) -> int | None:
        """See ``_read_live_after``: up to there ``EventStore.catch_up_index`` indexes; past it, appends do."""
        return self._read_live_after() if self._concurrent else None

    def _append_from_python(self, events: Sequence[NewEvent], tracking: tuple[str, int] | None = None) -> list[int]:
        """Seal and insert the batch from Python; one round trip per statement.

        The path for a schema without the append function, or a batch the function cannot
        take. On a schema an older library wrote (no ``LIVE_ROW``), it seals v2 after the
        head with explicit positions, under the table lock, as that library does. On one whose
        writers take positions concurrently, it takes them from the sequence under the same
        advisory locks and seals v3, as ``ledger_append_v2`` does.
        """
        concurrent = self._read_live_after() is not None
        with self._datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            *lock, select_head, insert, notify = self._statements(conn)
            if concurrent:  # no table lock: with the advisory locks it could deadlock against a reader
                positions = self._allocate(curs, len(events))
                link = self._session_link(curs)
                seal_at(events, positions, link)
                # the session's chain moves on with the batch, as in ledger_append_v3 (a rollback puts it back)
                curs.execute("SELECT set_config(%s, %s, false)", (self._chain, link.setting(positions[-1], events[-1].hash)))
            else:
                # The recorder's EXCLUSIVE table lock: commit order = position order,
                # and no other writer takes positions while this batch is sealed.
                for statement in lock:
                    curs.execute(statement)
                if self._read_live_after() is not None:  # upgraded meanwhile (its upgrade took this lock)
                    raise StoreError("the schema was upgraded to concurrent writers while this batch was sealed; nothing was written, retry")
                curs.execute(select_head, prepare=True)
                row = curs.fetchone()
                head, prev = (row["notification_id"], link_hash(bytes(row["state"] or b""))) if row else (0, GENESIS)
                positions = list(range(head + 1, head + 1 + len(events)))
                seal_batch(events, head + 1, prev)
            curs.execute(
                insert,
                (
                    [e.stream_id for e in events],
                    [e.version for e in events],
                    [e.topic for e in events],
                    [e.state for e in events],
                    positions,
                ),
                prepare=True,
            )
            first = positions[0]
            if concurrent:  # appends index themselves; the tracking row stays where catch-up left it
                self._write_index(curs, rows_for_batch(events, first), None, 0, "")
            else:
                self._write_index(curs, rows_for_batch(events, first), first - 1, positions[-1], events[-1].hash)
            if tracking is not None:
                curs.execute(self._acknowledge, tracking)
            curs.execute(notify)
        if concurrent:
            self._concurrent = True
            self._after_append(positions[-1], None)
        return positions

    def _allocate(self, curs: Any, count: int) -> list[int]:
        """A block of ``count`` consecutive positions from the sequence, under the write lock (shared)
        and the allocation lock, as ``ledger_append_v2`` takes them."""
        write_lock, allocate_lock, _ = self._lock_keys()
        sequence = self._sequence(curs)
        curs.execute("SELECT pg_advisory_xact_lock_shared(%s)", (write_lock,))
        # held to commit (a session lock could outlive a failed transaction on a pooled
        # connection): function writers wait for this rare path's commit to allocate
        curs.execute("SELECT pg_advisory_xact_lock(%s)", (allocate_lock,))
        curs.execute("SELECT nextval(%s) AS first", (sequence,))
        first = curs.fetchone()["first"]
        if count > 1:
            curs.execute("SELECT setval(%s, %s)", (sequence, first + count - 1))
        return list(range(first, first + count))

    def _session_link(self, curs: Any) -> SessionLink:
        """This connection's writer session chain and the last checkpoint, as ``ledger_append_v3`` reads them."""
        from psycopg import sql

        curs.execute(
            "SELECT current_setting(%s, true) AS chain, replace(gen_random_uuid()::text, '-', '') AS fresh, "
            "to_regclass(%s) IS NOT NULL AS present",
            (self._chain, f'"{self._datastore.schema}".{CHECKPOINTS}'),
        )
        row = curs.fetchone()
        checkpoint = 0
        if row["present"]:  # a schema whose checkpoint table was dropped is still written (the Python path)
            curs.execute(sql.SQL("SELECT coalesce(max(hi), 0) AS hi FROM {}").format(self._checkpoints))
            checkpoint = int(curs.fetchone()["hi"])
        return SessionLink.parse(row["chain"], checkpoint, row["fresh"])

    def _lock_keys(self) -> tuple[int, int, int]:
        return lock_keys(self._datastore.schema, self.recorder.events_table_name)

    def _sequence(self, curs: Any) -> str:
        curs.execute("SELECT pg_get_serial_sequence(%s, 'notification_id') AS seq", (self._qualified_events(),))
        return str(curs.fetchone()["seq"])

    def _qualified_events(self) -> str:
        return f'"{self._datastore.schema}"."{self.recorder.events_table_name}"'

    def read_rows(self, start: int, limit: int, *, text_ids: bool = True, past_head: bool = False) -> list[tuple[Any, ...]]:
        """One plain SELECT into tuples, stream ids cast to text, values otherwise as stored.

        Where writers take positions concurrently, a page stops at the high-water mark
        (``head``): a reader that goes on from its last record never skips one that commits
        later below it. ``past_head``: whatever is committed (a record the caller knows is
        there, or ``verify``), without waiting for the mark.
        """
        if self._concurrent and not past_head:
            hwm = self.head()
            rows = self._select_records(
                "notification_id>=%s AND notification_id<=%s ORDER BY notification_id LIMIT %s", (start, hwm, limit)
            )
            end = hwm if len(rows) < limit else rows[-1][0]
            self._check_holes(start, end, rows)
            return rows
        return self._select_records("notification_id>=%s ORDER BY notification_id LIMIT %s", (start, limit))

    def _check_holes(self, start: int, end: int, rows: list[tuple[Any, ...]]) -> None:
        """Every position in [start, end] a page has no record for must be a hole its checkpoint
        recorded (a rolled-back batch), or lie past the last checkpoint: otherwise the record
        was removed, and a reader must not pass it as if it never was (``CorruptLogError``)."""
        from psycopg import sql

        missing: list[int] = []
        expected = start
        for row in rows:
            position = row[0]
            if position > expected:
                missing.extend(range(expected, min(position, expected + 10_000)))
            expected = position + 1
        if end >= expected:
            missing.extend(range(expected, min(end + 1, expected + 10_000)))
        if not missing:
            return
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(
                sql.SQL("SELECT lo, hi, holes FROM {} WHERE hi >= %s AND lo < %s ORDER BY hi").format(self._checkpoints),
                (missing[0], missing[-1]),
            )
            covering = [(r["lo"], r["hi"], set(r["holes"] or ())) for r in curs.fetchall()]
        for position in missing:
            for lo, hi, holes in covering:
                if lo < position <= hi and position not in holes:
                    raise corrupt(position, "the record is missing (it was in the log when its checkpoint was made); run ledger verify")

    def _select_records(self, where: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Raw records (position, stream id as text, version, topic, state) matching ``where``."""
        from psycopg import sql
        from psycopg.rows import tuple_row

        statement = sql.SQL(
            "SELECT notification_id, originator_id::text, originator_version, topic, state FROM {}.{} WHERE " + where
        ).format(
            sql.Identifier(self._datastore.schema),
            sql.Identifier(self.recorder.events_table_name),
        )
        with self._datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(statement, params)
            rows: list[tuple[Any, ...]] = curs.fetchall()
        return rows

    def listen(self) -> PostgresListener:
        """A connection LISTENing on the channel every append NOTIFYs (``PostgresListener``)."""
        return PostgresListener(self._spec, self.recorder.channel_name)

    def is_damaged(self, cause: BaseException | None) -> bool:
        return False  # the server reports its own damage as an error of the query

    def close(self) -> None:
        """Checkpoint what this process appended past the last checkpoint, then release the pool."""
        if self._datastore is not None:
            if self._appended > self._checkpointed:
                try:
                    self.checkpoint(1)
                except Exception as exc:  # never stops a close: the next writer checkpoints it
                    log.warning("could not checkpoint the log's tail on close: %s", exc)
            self._datastore.close()
            self._datastore = None
