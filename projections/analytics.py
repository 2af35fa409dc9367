"""DuckDB analytics over the event log: a catch-up projection with a tracked position.

``Analytics`` follows the log from the position it last applied: each page of
raw events goes into DuckDB through Arrow, the SQL in ``projections.tables``
derives every table from it, and the tracking row moves forward in the same
DuckDB transaction, so a crash never leaves a page half applied or applied
twice. With ``path`` the tables live in a DuckDB file and a new process resumes
where the last one stopped; by default they live in memory and a new process
catches up from the start.

The file is a cache (``projections.cache_file``): one that was built from
another log or with another layout, that DuckDB cannot open, or that is not a
DuckDB database at all is replaced and rebuilt from the log, with a warning; it
is never trusted. Opening it costs the same at any size: DuckDB checks each
block's checksum when it loads the block, so a damaged block is found by the
first read that needs it, and then the file is set aside, rebuilt, and the read
run again (``catch_up``, ``rebuild``, ``rows``, ``read``, ``export_parquet``;
a relation from ``sql`` raises DuckDB's error when fetched). A file that cannot
be used now (held by another process, unwritable, a symbolic link) raises
``CacheUnavailableError``, or with ``fallback=True`` leaves the tables in memory.

Catching up from far behind reads the next page from the store in a second
thread while DuckDB applies the current one (DuckDB releases the GIL).

Queries through ``sql`` are read-only by construction (``projections.readonly``):
one checked SELECT, on a cursor in a READ ONLY transaction, on a DuckDB instance
with no file or network access and a locked configuration. The write side
(catch-up, rebuild) uses the instance's own connection; ``export_parquet``
writes through pyarrow, since DuckDB itself may not touch files.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ledger.errors import CorruptLogError, KeyIntegrityError, LedgerError, ReadOnlyError
from ledger.events.bodies import ENTITY_ERASED, EXECUTION_FAILED
from ledger.events.decode import check_page
from ledger.events.seal import link_hash
from ledger.events.sealed_failure import open_failure
from ledger.model.personal import ERASED
from ledger.store.version_index import ANALYTICS_SECRET
from projections import cache_file
from projections.cache_file import CacheUnavailableError
from projections.readonly import check_query, connect_locked, first_line, run_read_only
from projections.tables import (
    DDL,
    DDL_PLAIN,
    ERASE_FAILURES,
    ERASE_OLD,
    LAYOUT,
    PAGE_SCRIPT,
    TABLES,
    TRACKING,
)

if TYPE_CHECKING:
    from ledger.store.base import EventStore, LogPage

__all__ = [
    "Analytics",
    "CacheUnavailableError",
    "ProjectionMismatchError",
    "QueryTimeLimitError",
    "ReadOnlySQLError",
    "RowsPage",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

Progress = Callable[[int, int], None]
"""Called with (events applied so far, events to apply in all)."""

_NAME = "analytics"
_HASH_SLICE = slice(-66, -2)  # a sealed record ends with "hash":"<64 hex>"}
_EXPORT_BATCH = 65_536
_CHUNK = 10_240  # rows per Arrow record batch of a staged page (see _stage)
_COMMIT_EVERY = 100_000  # events per transaction of a file far behind (see _follow)
_FILE_PAGE = 20_000  # the largest page applied to a file (see _follow)

ReadOnlySQLError = ReadOnlyError
"""The name this error had before ``ledger.errors.ReadOnlyError``; the same class."""


class QueryTimeLimitError(LedgerError):
    """A query ran past its time limit and was interrupted (``Analytics.start_page``); nothing changed."""


class ProjectionMismatchError(LedgerError):
    """A persisted projection does not belong to this log (or the log was rewritten).

    No longer raised when opening: such a file is a stale cache and is rebuilt.
    Kept so code that imports or catches it keeps working.
    """


@dataclass(frozen=True)
class RowsPage:
    """The first rows of a query's result, and how many rows it has in all."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    total: int


# ``SHOW ALL TABLES`` lists every schema, the internal one too; it is answered with
# the same listing of the documented tables only (``SHOW TABLES`` already lists ``main``).
_SHOW_ALL_TABLES = "show all tables"
_DOCUMENTED_TABLES = "SELECT * FROM (SHOW ALL TABLES) WHERE schema = 'main' AND NOT temporary ORDER BY name"


def _documented_only(query: str) -> str:
    """``query``, or the listing of the documented tables where it is ``SHOW ALL TABLES``.

    Not a safety layer (the text that runs is checked like any other); only the
    internal schema (tracking row, graph view) is kept out of the listing.
    """
    if isinstance(query, str) and " ".join(query.split()).rstrip("; ").lower() == _SHOW_ALL_TABLES:
        return _DOCUMENTED_TABLES
    return query


class _Forget(Exception):
    """A page erased a lineage whose failure text the file held opened: the file must go, not just the rows."""


@dataclass
class _Staged:
    """One page of the log, ready for DuckDB."""

    table: pa.Table
    count: int
    first: int
    last: int
    last_hash: str | None
    erases: bool  # the page holds an entity.erased event


class Analytics:
    """DuckDB tables kept in step with one event store's log."""

    def __init__(
        self, store: EventStore, path: str | os.PathLike[str] | None = None, *, fallback: bool = False
    ) -> None:
        """Open the tables: in memory, or in the DuckDB file at ``path`` (created if missing).

        A file that cannot be used now raises ``CacheUnavailableError`` having
        changed nothing; with ``fallback`` the tables are kept in memory
        instead, with a warning, and ``path`` becomes None.
        """
        self._store = store
        self._fallback = fallback
        self.path = None if path is None else Path(path)
        #: This projection made the file: if the log turns out damaged before anything is read
        #: from it, the file goes again (a command that failed leaves nothing behind).
        self._made_file = self.path is not None and not os.path.lexists(self.path)
        #: The file's bytes are those its MAC vouches for (``cache_file.seal``); False once written.
        self._sealed = False
        self._mac_key = None if self.path is None else store.secret(ANALYTICS_SECRET)
        if self.path is not None and self._mac_key is None:
            self._give_up_file(CacheUnavailableError(
                f"path {str(self.path)!r}: the store holds no key to authenticate an analytics file "
                "(open it writable once to make one)"
            ))
        self.con = self._open()
        self._load_tracking()

    def _open(self) -> duckdb.DuckDBPyConnection:
        """The writer's connection, on tables that are empty or a trusted cache of this very log."""
        if self.path is not None:
            try:
                return self._with_tables(cache_file.open_cache(self.path, self._distrust))
            except CacheUnavailableError as exc:
                self._give_up_file(exc)
        return self._with_tables(connect_locked(":memory:"))

    def _give_up_file(self, exc: CacheUnavailableError) -> None:
        """Keep the tables in memory from now on, if this projection may (else re-raise)."""
        if not self._fallback:
            raise exc
        log.warning("%s; keeping the analytics tables in memory instead", exc)
        self.path = None

    @staticmethod
    def _with_tables(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """Create whatever table is missing (all of them in a new database); closes ``con`` on failure."""
        try:
            try:
                for statement in DDL:
                    con.execute(statement)
            except (duckdb.BinderException, duckdb.ParserException, duckdb.NotImplementedException) as exc:
                if "compression" not in str(exc).lower():
                    raise
                for statement in DDL_PLAIN:  # a DuckDB that cannot store strings with zstd
                    con.execute(statement)
        except BaseException:
            con.close()
            raise
        return con

    def _drop_made_file(self) -> None:
        """Remove the file this projection created, after the log it was built from proved damaged."""
        if not self._made_file or self.path is None:
            return
        self._made_file = False
        self.con.close()
        for leftover in (self.path, Path(f"{self.path}.wal")):
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass
        self.path = None
        self.con = self._with_tables(connect_locked(":memory:"))
        self._load_tracking()

    def _load_tracking(self) -> None:
        rows = self.con.execute(f"SELECT position, head_hash FROM {TRACKING} WHERE name = ?", [_NAME]).fetchall()
        self.position: int = rows[0][0] if rows else 0
        self._head_hash: str | None = rows[0][1] if rows else None

    def _guarded(self, operation: Callable[[], T]) -> T:
        """Run ``operation``; when the file must be replaced (damaged, or ``_Forget``), replace it and run it again.

        Once only: a new file that is damaged again is an error. A second
        ``_Forget`` means a key outlived its lineage's erasure (``verify``
        reports it), so the text is readable from the store anyway; the
        operation just goes on from the page it committed.
        """
        replaced = False
        while True:
            try:
                result = operation()
                self._made_file = False  # it holds a good log's tables now: a cache like any other
                self._seal()
                return result
            except CorruptLogError:
                self._drop_made_file()
                raise
            except duckdb.Error as exc:
                if self.path is None or replaced or not cache_file.is_damage(exc):
                    raise
                reason, keep = f"is damaged ({first_line(exc)})", True
            except _Forget:
                if replaced or self.path is None:
                    continue
                reason, keep = "held the opened text of failures an erasure has made unreadable", False
            replaced = True
            self._sealed = False
            try:
                con = cache_file.replace(self.con, self.path, reason, keep=keep)
            except CacheUnavailableError as exc:
                self._give_up_file(exc)
                con = connect_locked(":memory:")
            self.con = self._with_tables(con)
            self._load_tracking()

    def _seal(self) -> None:
        """Checkpoint the file and write its MAC, if it changed since it was sealed or checked.

        The cost is one HMAC pass over the file after each write (about 850 MB/s here); reads
        of a file already sealed pay nothing. A file that cannot be checkpointed or sealed now
        stays unsealed: the next open rebuilds it rather than trust it.
        """
        if self.path is None or self._sealed or self._mac_key is None:
            return
        try:
            self.con.execute("CHECKPOINT")
            cache_file.seal(self.path, self._mac_key)
        except (duckdb.Error, OSError) as exc:
            log.warning("analytics database %s: cannot seal it (%s); the next open rebuilds it", self.path, exc)
            return
        self._sealed = True

    # ----------------------------------------------------------- following
    def catch_up(self, progress: Progress | None = None, page: int = 50_000) -> int:
        """Apply every event after the tracked position; returns how many were applied."""
        if page < 1:
            raise ValueError(f"page: expected a positive number of events, got {page}")
        return self._guarded(lambda: self._follow(progress, page))

    def _follow(self, progress: Progress | None, page: int) -> int:
        total = max(self._store.head() - self.position, 0)
        applied = 0
        if progress is not None:
            progress(0, total)
        # Pages far behind are committed a few at a time: DuckDB's commit of a page
        # cost more the bigger the table got (on a 1M-event rebuild, 6.3 s of commits
        # with one page each, 2.8 s with one per 200k events; the whole rebuild into a
        # file took 17% less with one per 500k than per 200k); the tracking row moves
        # with each commit, so a crash still loses nothing and repeats nothing. Tables
        # in memory are committed once, at the end: a commit into a table that already
        # holds rows copies the transaction's rows once more (1 s per 200k events at
        # 1M), and a crash loses them whole anyway.
        #
        # A file's first build must not hold the log in memory: DuckDB's buffer pool is capped
        # (``cache_file.MEMORY_LIMIT``), but a transaction's own rows stay in memory until it
        # commits, and each page in flight is held twice (Python's rows, Arrow's copy) while
        # the next one is read. Measured on the first build of a file (peak RSS of the
        # process): with 500k events a commit and pages of 50k, 504 MiB at 100k events and
        # 900 MiB at 435k, growing with the log; with 100k and pages of 20k, 460 and 493 MiB.
        commit_every = _COMMIT_EVERY if self.path is not None else None
        if self.path is not None:
            page = min(page, _FILE_PAGE)
        con = self.con
        forgotten = False
        uncommitted = 0
        erased_from: int | None = None  # the first page of this transaction that erased a lineage
        committed = (self.position, self._head_hash)
        with closing(self._pages(self.position + 1, page, ahead=total > page)) as pages:
            try:
                for staged in pages:
                    if not uncommitted:
                        con.begin()
                    self._sealed = False
                    self._apply(staged)
                    if staged.erases and erased_from is None:
                        erased_from = staged.first
                    uncommitted += staged.count
                    if commit_every is not None and uncommitted >= commit_every:
                        forgotten |= self._erase_earlier(erased_from)
                        uncommitted, erased_from = 0, None
                        con.commit()
                        committed = (self.position, self._head_hash)
                        if forgotten and self.path is not None:
                            raise _Forget
                    applied += staged.count
                    if progress is not None:
                        progress(applied, max(total, applied))
                if uncommitted:
                    forgotten |= self._erase_earlier(erased_from)
                    uncommitted = 0
                    con.commit()
            except BaseException:
                if uncommitted:
                    with suppress(duckdb.Error):
                        con.rollback()
                self.position, self._head_hash = committed
                raise
        if forgotten and self.path is not None:
            raise _Forget
        return applied

    def rebuild(self, from_position: int = 1, progress: Progress | None = None) -> int:
        """Drop what was derived from events at ``from_position`` onwards and apply them again."""
        if from_position < 1:
            raise ValueError(f"from_position: positions start at 1, got {from_position}")
        return self._guarded(lambda: self._rebuild(from_position, progress))

    def _rebuild(self, from_position: int, progress: Progress | None) -> int:
        con = self.con
        self._sealed = False
        con.begin()
        try:
            for name in TABLES:
                con.execute(f"DELETE FROM {name} WHERE position >= ?", [from_position])
            # Rows before from_position keep their tombstones: applying the
            # erasures at from_position or later again gives them the same ones.
            self._track(min(self.position, from_position - 1), None)
            con.commit()
        except BaseException:
            con.rollback()
            raise
        return self._follow(progress, 50_000)

    def _pages(self, start: int, page: int, *, ahead: bool) -> Generator[_Staged, None, None]:
        """Staged pages from ``start`` to the end of the log; with ``ahead``, each read while the last is applied."""
        if not ahead:
            while (staged := self._stage(start, page)) is not None:
                yield staged
                start = staged.last + 1
            return
        with ThreadPoolExecutor(1, thread_name_prefix="ledger-analytics-read") as reader:
            pending = reader.submit(self._stage, start, page)
            while (staged := pending.result()) is not None:
                pending = reader.submit(self._stage, staged.last + 1, page)
                yield staged

    def _stage(self, start: int, page: int) -> _Staged | None:
        """The page of the log from ``start`` as an Arrow table, or None at the end of the log."""
        batch = self._store.read_columns(start, page)
        if not len(batch):
            return None
        # every record the tables are built from must be as it was written (``ledger sql`` may
        # run without the replay that would otherwise have decoded the log first)
        check_page(start, batch.positions, batch.stream_ids, batch.versions, batch.topics, batch.states)
        table = pa.table(
            {
                "position": pa.array(batch.positions, pa.int64()),
                "stream_id": pa.array(batch.stream_ids, pa.string()),
                "stream_version": pa.array(batch.versions, pa.int64()),
                "event_type": pa.array(batch.topics, pa.string()),
                "payload": _payload_column(batch),
                # the seal hash, the leaf of the proofs' Merkle tree: a root can be recomputed from an export
                "hash": pa.array([link_hash(state) for state in batch.states], pa.string()),
                "opened": self._opened_failures(batch),
            }
        )
        return _Staged(
            # DuckDB scans an Arrow table one record batch per thread: in one batch, the page
            # would be parsed on one core
            table=pa.Table.from_batches(table.to_batches(max_chunksize=_CHUNK)),
            count=len(batch),
            first=batch.positions[0],
            last=batch.positions[-1],
            last_hash=_hash_of(batch.states[-1]),
            erases=ENTITY_ERASED in batch.topics,
        )

    def _apply(self, staged: _Staged) -> None:
        """Apply one page and move the tracking row, inside the caller's transaction.

        The page's own versions of lineages erased so far go in with their
        tombstones; earlier rows of a lineage it erases get theirs from
        ``_erase_earlier`` before the transaction commits.
        """
        con = self.con
        con.register("stage", staged.table)
        try:
            con.execute(PAGE_SCRIPT)
            self._track(staged.last, staged.last_hash)
        finally:
            con.unregister("stage")

    def _erase_earlier(self, erased_from: int | None) -> bool:
        """Tombstone the rows applied before an erasure of their lineage at ``erased_from`` or later.

        Once per transaction, just before it commits (each run scans the whole
        table, so not once per page); the tables are the same as if it had run
        after each page. True when a failure's text that rows held opened is now
        unreadable: updating those rows leaves the old text in free blocks of a
        DuckDB file, so a file-backed projection is then rebuilt in a new file.
        """
        if erased_from is None:
            return False
        con = self.con
        con.execute(ERASE_OLD, [erased_from])
        opened: int = con.execute(ERASE_FAILURES, [erased_from]).fetchall()[0][0]  # rows updated
        return opened > 0

    def _opened_failures(self, batch: LogPage) -> pa.Array:
        """Per event: the message of a failure sealed with personal keys, opened now (else NULL).

        Keys are read from the store's table, not a cache, so a key destroyed by
        any process counts; an erased lineage has none and the text is
        '<erased>'. A damaged key row is not an erasure and says so.
        """
        out: list[str | None] = []
        keys: dict[UUID, bytes | None] = {}

        def key_for(lineage: UUID) -> bytes | None:
            if lineage not in keys:
                keys[lineage] = self._store.keys.fetch(lineage)
            return keys[lineage]

        states = batch.states
        for i in [i for i, topic in enumerate(batch.topics) if topic == EXECUTION_FAILED]:
            state = states[i]
            if state is None or b'"sealed_with":["' not in state:
                continue
            try:
                text = open_failure(orjson.loads(state), key_for).get("error_message")
            except KeyIntegrityError:
                text = "<unreadable: a data key in ledger_keys is damaged; run ledger verify>"
            except orjson.JSONDecodeError:
                continue
            out.extend([None] * (i - len(out)))
            out.append("<erased>" if text is ERASED else str(text))
        if not out:
            return pa.nulls(len(batch), pa.string())
        out.extend([None] * (len(batch) - len(out)))
        return pa.array(out, pa.string())

    def _track(self, position: int, head_hash: str | None) -> None:
        self.con.execute(
            f"INSERT OR REPLACE INTO {TRACKING} VALUES (?, ?, ?, ?)", [_NAME, position, head_hash, LAYOUT]
        )
        self.position = position
        self._head_hash = head_hash

    def _distrust(self, con: duckdb.DuckDBPyConnection) -> tuple[str, bool] | None:
        """Why the file behind ``con`` cannot be trusted as this log's projection, or None.

        Trusted means: empty, or written with this layout and, if it applied any
        events, the event at its tracked position is hash for hash the one in
        this log. The answer is (reason, keep): ``keep`` when the file holds
        something else than a cache (someone's own database), which is moved
        aside rather than deleted. Raises ``duckdb.Error`` when the file cannot
        be read. Costs the same at any size: data blocks are checked as they
        are read (see the module's docstring), not here.
        """
        tables = {
            name
            for (name,) in con.execute(
                "SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE database_name = current_database()"
            ).fetchall()
        }
        if not tables:
            return None  # a new, empty database
        if TRACKING not in tables:
            if "main.projection_tracking" in tables:
                return "was written with an older layout", False
            return "holds tables that are not ledger analytics", True
        rows = con.execute(f"SELECT position, head_hash, layout FROM {TRACKING} WHERE name = ?", [_NAME]).fetchall()
        position, head_hash, layout = rows[0] if rows else (0, None, LAYOUT)  # no row: nothing applied yet
        if layout != LAYOUT:
            return "was written with another layout", False
        if position:
            batch = self._store.read_columns(position, 1, past_head=True)
            found = _hash_of(batch.states[0]) if len(batch) and batch.positions[0] == position else None
            if head_hash is None:
                return f"tracks event {position} without its hash", False
            if found != head_hash:
                return f"was built from another log (event {position} differs)", False
        assert self.path is not None and self._mac_key is not None
        unsealed = cache_file.unsealed(self.path, self._mac_key)
        if unsealed is not None:  # an edited file is evidence: moved aside to .bad, not deleted
            return unsealed, unsealed.startswith("was changed")
        self._sealed = True
        return None

    # ------------------------------------------------------------ reading
    def sql(self, query: str, params: list[Any] | None = None) -> duckdb.DuckDBPyRelation:
        """Catch up, then run one read-only SELECT (``?`` placeholders take ``params``).

        Anything that could write, change a setting, or read a file or the
        network raises ``ReadOnlyError`` naming ``query`` and changes nothing
        (``projections.readonly``). The relation reads the tables as they stood
        when this returned; DuckDB runs it when it is fetched, so a damaged
        block of a cache file surfaces then, as DuckDB's error (``rows`` recovers).
        """
        statement = check_query(self.con, _documented_only(query))
        self.catch_up()
        return run_read_only(self.con, statement, params)

    def rows(self, query: str, params: list[Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """``sql`` and fetch every row: (column names, rows).

        A cache file found damaged while fetching is set aside, rebuilt from
        the log, and the query run once more (what ``ledger sql`` uses).
        """

        def fetch() -> tuple[list[str], list[tuple[Any, ...]]]:
            relation = self.sql(query, params)
            return list(relation.columns), relation.fetchall()

        return self._guarded(fetch)

    def page(self, query: str, params: list[Any] | None = None, limit: int | None = None) -> RowsPage:
        """``sql`` and fetch its first ``limit`` rows (all with None), with the result's row count.

        The rows past ``limit`` are counted by DuckDB (``count(*)`` over the
        query, which reads no column it does not need) rather than fetched into
        Python, and only when there are any: a result that fits runs once.
        Recovers from a damaged cache file like ``rows``.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit: expected a number of rows >= 0 or None, got {limit}")

        return self._guarded(lambda: _rows_page(self.sql(query, params), limit))

    def start_page(
        self, query: str, params: list[Any] | None = None, limit: int | None = None, *, time_limit: float
    ) -> Callable[[], RowsPage]:
        """``page`` in two steps, for a server: check, catch up and bind now; fetch later, with a time limit.

        This call uses the writer's connection (the caller serialises it with its other reads);
        the function it returns runs the query on a cursor of its own, so it may run beside
        them, and interrupts it after ``time_limit`` seconds (``QueryTimeLimitError``): one
        heavy query must not hold the tables, or a thread, for hours. The cursor is closed
        either way.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit: expected a number of rows >= 0 or None, got {limit}")
        if not time_limit > 0:
            raise ValueError(f"time_limit: expected a number of seconds > 0, got {time_limit}")
        statement = check_query(self.con, _documented_only(query))
        self.catch_up()
        cursor = self.con.cursor()
        try:
            relation = run_read_only(self.con, statement, params, cursor)
        except BaseException:
            cursor.close()
            raise

        def fetch() -> RowsPage:
            timer = threading.Timer(time_limit, cursor.interrupt)
            timer.daemon = True
            timer.start()
            try:
                return _rows_page(relation, limit)
            except duckdb.InterruptException:
                raise QueryTimeLimitError(
                    f"query: stopped after {time_limit:g} s, the time limit of a query on this page"
                ) from None
            finally:
                timer.cancel()
                cursor.close()

        return fetch

    def read(self, reader: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Catch up, then ``reader(con)`` on the writer's connection; recovers from a damaged file like ``rows``.

        For the library's own read models over these tables (the lineage
        graph), which must only read.
        """

        def run() -> T:
            self._follow(None, 50_000)
            return reader(self.con)

        return self._guarded(run)

    def tables(self) -> list[str]:
        """The projected tables, in the order they are documented."""
        return list(TABLES)

    def export_parquet(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Catch up, then write one Parquet file per table (``<table>.parquet``).

        DuckDB has no file access here, so the rows stream out through Arrow and
        pyarrow writes them.
        """
        return self._guarded(lambda: self._export(Path(directory)))

    def _export(self, out: Path) -> list[Path]:
        self._follow(None, 50_000)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in TABLES:
            target = out / f"{name}.parquet"
            reader = self.con.sql(f"SELECT * FROM main.{name} ORDER BY position").to_arrow_reader(_EXPORT_BATCH)
            with pq.ParquetWriter(target, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
            written.append(target)
        return written

    def close(self) -> None:
        self.con.close()


def _rows_page(relation: duckdb.DuckDBPyRelation, limit: int | None) -> RowsPage:
    """The first ``limit`` rows of ``relation`` (all with None) and its row count (see ``Analytics.page``)."""
    columns = list(relation.columns)
    if limit is None:
        rows = relation.fetchall()
        return RowsPage(columns, rows, len(rows))
    rows = relation.limit(limit + 1).fetchall()
    if len(rows) <= limit:
        return RowsPage(columns, rows, len(rows))
    counted = relation.aggregate("count(*)").fetchall()
    return RowsPage(columns, rows[:limit], counted[0][0] if counted else len(rows))


def _hash_of(state: Any) -> str | None:
    """The hash a sealed record ends with (what the tracking row pins), or None for a damaged record."""
    if not isinstance(state, (bytes, bytearray, memoryview)):
        return None
    return bytes(state[_HASH_SLICE]).decode("ascii", "replace")


def _payload_column(batch: LogPage) -> pa.Array:
    """The page's payloads as an Arrow string column, taken as the UTF-8 bytes they are.

    (One ``b"".join`` and an offset array instead measured 1.5× slower: the join
    touches fresh memory every page, pyarrow's pool reuses the last page's.) A
    payload that is not UTF-8 is a ``CorruptLogError`` naming its position; a
    NULL one (a damaged record) stays NULL.
    """
    try:
        return pa.array(batch.states, pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        raise _not_text(batch) from None


def _not_text(batch: LogPage) -> CorruptLogError:
    """The error for a page holding a payload that is not UTF-8 text, naming the first such position."""
    for position, state in zip(batch.positions, batch.states):
        if isinstance(state, (bytes, bytearray, memoryview)):
            try:
                bytes(state).decode("utf-8")
            except UnicodeDecodeError:
                return CorruptLogError(f"position {position}: the record's payload is not UTF-8 text", position)
    first = batch.positions[0]
    return CorruptLogError(f"position {first}: a payload of the page from here is not text", first)
