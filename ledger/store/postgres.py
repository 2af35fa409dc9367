"""The ``postgresql://`` backend: the eventsourcing PostgreSQL recorder, with a sealed append.

Everything that reaches past the recorder's public API into the library's
internals for PostgreSQL lives here: the datastore's schema, the events
table's name, the recorder's table-lock statements and notification channel,
and the SQL of the append and the bulk read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from eventsourcing.persistence import ApplicationRecorder

from ledger.errors import StoreError
from ledger.events.seal import GENESIS, NewEvent, link_hash, seal_batch
from ledger.store.keys import PostgresKeyTable, create_postgres_key_table
from ledger.store.probe import check_postgres_schema

if TYPE_CHECKING:
    from ledger.store.base import StoreURL

__all__ = ["PostgresBackend"]

#: Serialises the creation of a fresh schema's tables across processes.
_CREATE_LOCK = 7245001


def _open_recorder(spec: StoreURL, create: bool = True) -> tuple[ApplicationRecorder, Any]:
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
            finally:
                conn.execute(f"SELECT pg_advisory_unlock({_CREATE_LOCK})")
    except psycopg.OperationalError as exc:
        raise StoreError(f"url {spec.url!r}: cannot connect to PostgreSQL: {exc}".strip()) from None
    return recorder, datastore


class PostgresBackend:
    """One PostgreSQL schema: the events table and, beside it, the key tables."""

    #: Raised by the psycopg connection the append uses, not by the recorder.
    conflicts: tuple[type[BaseException], ...] = (psycopg.errors.IntegrityError,)
    failures: tuple[type[BaseException], ...] = (psycopg.Error,)
    read_failures: tuple[type[BaseException], ...] = ()

    def __init__(self, spec: StoreURL, create: bool = True) -> None:
        """Open (and with ``create``, make) the schema's tables; ``create=False`` only checks the catalog."""
        self.recorder, self._datastore = _open_recorder(spec, create)
        self.key_table = PostgresKeyTable(self._datastore, spec.options.get("schema", "public"))

    def append(self, events: Sequence[NewEvent]) -> list[int]:
        """Seal the batch after the head and insert it with explicit positions, under the table lock."""
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

    def read_rows(self, start: int, limit: int, *, text_ids: bool = True) -> list[tuple[Any, ...]]:
        """One plain SELECT into tuples, stream ids cast to text, values otherwise as stored."""
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
            return curs.fetchall()

    def is_damaged(self, cause: BaseException | None) -> bool:
        return False  # the server reports its own damage as an error of the query

    def close(self) -> None:
        if self._datastore is not None:
            self._datastore.close()
            self._datastore = None
