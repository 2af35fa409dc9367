"""Read-only SQL over the analytics tables, in three layers that each hold on their own.

``Ledger.sql`` takes SQL from whoever calls it (and ``ledger sql`` from a shell),
so a query must not be able to change the analytics tables, the DuckDB file
behind them, a setting, or any other file, nor read a file or the network. No
layer looks at the query text itself; each asks DuckDB:

1. **The statement.** DuckDB's parser splits the text (exactly one statement,
   of type SELECT) and ``json_serialize_sql`` gives its syntax tree, which is
   walked for query nodes that write (``WITH d AS (DELETE … RETURNING …)``,
   ``COPY`` in a CTE), table functions outside a list of ones that only read
   the catalog or generate rows (``read_text``, ``glob``, ``checkpoint()``,
   ``query()``, …), and scalar functions DuckDB marks as having side effects
   (``nextval``, ``setseed``, ``write_log``, …). EXPLAIN is refused: its inner
   statement cannot be inspected, and ``EXPLAIN ANALYZE`` runs it (for a plan,
   call ``.explain()`` on the relation ``sql`` returns).
2. **The connection.** The statement runs on a fresh cursor whose transaction
   is started ``READ ONLY``: DuckDB refuses any write to any database in it,
   whatever layer 1 missed. One cursor per query, so nothing a query could leave
   behind on its connection (a temporary object, a variable) reaches the next.
3. **The instance.** The DuckDB instance is opened with external access off
   (no file, no network, no Python-variable scans), no extension install or
   autoload, and its configuration locked, so neither a query nor a later
   statement can switch any of that back on.

Errors of layers 2 and 3 are reported as ``ReadOnlyError`` like layer 1's.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from ledger import _process
from ledger.errors import LedgerError, ReadOnlyError

__all__ = [
    "check_query",
    "connect_locked",
    "connect_unlocked",
    "first_line",
    "lock_down",
    "one_line",
    "run_read_only",
]

# Settings DuckDB only takes when the instance starts, or that must be in force
# before anything runs: no file or network access, no extensions fetched or loaded.
_LOCKDOWN = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}

# Query nodes of a plain read. Everything else ending in _NODE (DELETE_QUERY_NODE,
# INSERT_QUERY_NODE, UPDATE_QUERY_NODE, COPY_QUERY_NODE, or one a later DuckDB adds)
# is refused.
_READ_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})

# Table functions that only generate rows or read the catalog. Anything else is
# refused: file and network readers (read_*, glob, sniff_csv, parquet_*), scanners of
# other systems, functions that change state (checkpoint, enable_logging,
# truncate_duckdb_logs, …), query()/query_table() (which run SQL text this layer did
# not see), and any table function a later DuckDB adds until it is listed here.
_READ_TABLE_FUNCTIONS = frozenset(
    {
        "range",
        "generate_series",
        "unnest",
        "repeat",
        "repeat_row",
        "json_each",
        "json_tree",
        "test_all_types",
        "test_vector_types",
        "icu_calendar_names",
        "pg_timezone_names",
        "duckdb_columns",
        "duckdb_constraints",
        "duckdb_databases",
        "duckdb_dependencies",
        "duckdb_extensions",
        "duckdb_functions",
        "duckdb_indexes",
        "duckdb_keywords",
        "duckdb_optimizers",
        "duckdb_schemas",
        "duckdb_sequences",
        "duckdb_settings",
        "duckdb_tables",
        "duckdb_types",
        "duckdb_variables",
        "duckdb_views",
        "duckdb_memory",
        "duckdb_temporary_files",
        "pragma_table_info",
        "pragma_show",
        "pragma_storage_info",
        "pragma_database_size",
        "pragma_metadata_info",
        "pragma_version",
        "pragma_platform",
        "pragma_user_agent",
        "pragma_collations",
    }
)

# Functions DuckDB marks as having side effects that only produce a value
# (randomness, ids of the current query) and change nothing.
_VALUE_ONLY_VOLATILE = frozenset(
    {
        "random",
        "uuid",
        "uuidv4",
        "uuidv7",
        "gen_random_uuid",
        "current_connection_id",
        "current_query",
        "current_query_id",
        "current_transaction_id",
        "error",
        "stats",
        "vector_type",
    }
)

# Verdicts of check_query by query text (a pure function of the text and of this
# DuckDB): a repeated query skips the syntax tree (about 0.7 ms). Bounded.
_VERDICTS = _process.sql_verdicts
_VERDICTS_MAX = 512


def connect_locked(database: str) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB database (a path or ``":memory:"``) on an instance that cannot reach outside itself.

    External access and extension loading are off from the start, the session
    time zone is UTC, and then the configuration is locked: no statement on any
    connection of this instance can change a setting again. Raises
    ``duckdb.Error`` when DuckDB cannot open the database.
    """
    return lock_down(connect_unlocked(database))


def connect_unlocked(database: str, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """The first half of ``connect_locked``: external access and extensions already off, nothing locked yet.

    Only for a caller that must look at the instance before locking it (DuckDB
    hands a second ``connect`` to a file this process has open the same
    instance, which ``projections.cache_file`` must notice); it calls
    ``lock_down`` before running anything else. ``memory_limit`` (DuckDB's
    setting, e.g. ``"128MB"``) caps DuckDB's buffer pool, which is set with the
    rest since nothing can change it once the configuration is locked.
    """
    config: dict[str, str | bool | int | float | list[str]] = dict(_LOCKDOWN)
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    return duckdb.connect(database, config=config)


def lock_down(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """The second half of ``connect_locked``: UTC, then the configuration locked; closes ``con`` on failure."""
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (DuckDB's run to several, with a caret)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line(exc: BaseException) -> str:
    """An exception's whole message on one line: DuckDB's hints kept, its caret drawing dropped.

    DuckDB puts what helps on later lines (``Did you mean "executions"?``,
    ``Candidate bindings: …``) and then the query with a caret under the
    error, which means nothing once joined; the lines left are joined with " — ".
    """
    lines = [line.strip() for line in str(exc).strip().splitlines()]
    kept = [line for line in lines if line and not line.startswith("LINE ") and line.strip("^ ") != ""]
    return " — ".join(kept) if kept else type(exc).__name__


def _side_effects(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """The functions this DuckDB marks as having side effects, less those that only produce a value."""
    known = _process.side_effect_functions  # one entry once computed: a property of this DuckDB
    if not known:
        rows = con.execute("SELECT DISTINCT lower(function_name) FROM duckdb_functions() WHERE has_side_effects").fetchall()
        known.append(frozenset(r[0] for r in rows) - _VALUE_ONLY_VOLATILE)
    return known[0]


def _syntax_tree(con: duckdb.DuckDBPyConnection, text: str) -> Any:
    (serialized,) = con.execute("SELECT json_serialize_sql(?)", [text]).fetchall()[0]
    tree = orjson.loads(serialized)
    if tree.get("error"):
        raise ReadOnlyError(f"query: DuckDB cannot describe this statement: {tree.get('error_message', 'unknown error')}")
    return tree


def _refusal(node: dict[str, Any], side_effects: frozenset[str]) -> str | None:
    """Why one node of the syntax tree cannot run read-only, or None."""
    kind = node.get("type")
    if isinstance(kind, str):
        if kind.endswith("_NODE") and kind not in _READ_NODES:
            what = kind.removesuffix("_NODE").removesuffix("_QUERY")
            return f"{what} inside the query would write"
        if kind == "TABLE_FUNCTION":
            function = node.get("function")
            name = function.get("function_name") if isinstance(function, dict) else None
            if not isinstance(name, str) or name.lower() not in _READ_TABLE_FUNCTIONS:
                return (
                    f"table function {name}() is not allowed here "
                    "(it reads a file or the network, runs other SQL, or changes state)"
                )
    if node.get("class") == "FUNCTION":
        name = node.get("function_name")
        if isinstance(name, str) and name.lower() in side_effects:
            return f"function {name}() changes state and is not allowed here"
    return None


def check_query(con: duckdb.DuckDBPyConnection, query: str) -> duckdb.Statement:
    """Layer 1: the one SELECT statement in ``query``, or ``ReadOnlyError`` saying why not.

    ``con`` is only used to parse (nothing runs); the statement returned is the
    parsed one, so what runs is exactly what was checked.
    """
    if not isinstance(query, str):
        raise ReadOnlyError(f"query: expected SQL text, got {type(query).__name__}")
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise ReadOnlyError(f"query: {one_line(exc)}") from None
    if len(statements) != 1:
        raise ReadOnlyError(f"query: read-only SQL takes exactly one statement, got {len(statements)}")
    statement = statements[0]
    if statement.type is not duckdb.StatementType.SELECT:
        hint = "; for a plan, call .explain() on the relation sql() returns" if statement.type is duckdb.StatementType.EXPLAIN else ""
        raise ReadOnlyError(f"query: read-only SQL takes one SELECT statement, got {statement.type.name}{hint}")
    if statement.query in _VERDICTS:
        reason = _VERDICTS[statement.query]
    else:
        reason = _tree_refusal(con, statement.query)
        if len(_VERDICTS) >= _VERDICTS_MAX:
            _VERDICTS.clear()
        _VERDICTS[statement.query] = reason
    if reason is not None:
        raise ReadOnlyError(f"query: read-only: {reason}")
    return statement


def _tree_refusal(con: duckdb.DuckDBPyConnection, text: str) -> str | None:
    """The first reason found in the statement's syntax tree why it cannot run read-only, or None."""
    side_effects = _side_effects(con)
    stack: list[Any] = [_syntax_tree(con, text)]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            reason = _refusal(item, side_effects)
            if reason is not None:
                return reason
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def run_read_only(
    con: duckdb.DuckDBPyConnection,
    statement: duckdb.Statement,
    params: list[Any] | None = None,
    cursor: duckdb.DuckDBPyConnection | None = None,
) -> duckdb.DuckDBPyRelation:
    """Layers 2 and 3: bind ``statement`` on a fresh cursor of ``con`` inside a READ ONLY transaction.

    The relation stays lazy (``.fetchall()``, ``.df()``, ``.arrow()`` run it; see ``_ReadRelation``)
    and reads the tables as they were when this returned: its transaction is a
    snapshot, open until the relation is dropped. ``con`` must come from
    ``connect_locked``. ``cursor``: a fresh cursor of ``con`` the caller keeps (to interrupt it).
    """
    cursor = con.cursor() if cursor is None else cursor
    try:
        cursor.execute("BEGIN TRANSACTION READ ONLY")
        relation = cursor.sql(statement, params=params)
    except (duckdb.PermissionException, duckdb.TransactionException) as exc:
        cursor.close()
        raise ReadOnlyError(f"query: read-only: {first_line(exc)}") from None
    except BaseException:
        cursor.close()
        raise
    if relation is None:  # a SELECT always gives rows; anything else is not what was checked
        cursor.close()
        raise ReadOnlyError("query: read-only SQL takes one SELECT statement, and this one returned no rows")
    return _for_notebooks(relation)


class _ReadRelation(duckdb.DuckDBPyRelation):
    """A relation ``sql`` returns: the same, but its Arrow reader never leaves the cursor busy.

    DuckDB's ``.arrow()`` / ``.to_arrow_reader()`` stream from an open result on
    the relation's cursor, so any later fetch of the same relation (``.fetchall()``,
    ``.df()``, another ``.arrow()``) failed with "connection has an open result"
    until the reader was drained; in a notebook it usually is not. Here the rows
    are fetched whole into Arrow (columnar, outside Python objects) and the reader
    walks them, so the cursor is free as soon as the call returns. Relations
    derived from this one (``.limit()``, ``.filter()``…) are DuckDB's own again.
    ``.df()`` needs pandas, which the ``notebook`` extra installs; without it the
    error says so.
    """

    __slots__ = ()

    def to_arrow_reader(self, batch_size: int = 131_072) -> pa.RecordBatchReader:
        table = self.to_arrow_table(batch_size)
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())

    def arrow(self, batch_size: int = 131_072) -> pa.RecordBatchReader:
        return self.to_arrow_reader(batch_size)

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> Any:
        return self.to_arrow_table().__arrow_c_stream__(requested_schema)

    def df(self, *, date_as_object: bool = False) -> Any:
        if importlib.util.find_spec("pandas") is None:
            raise LedgerError(
                "df(): pandas is not installed; install the notebook extra "
                "(pip install -e '.[notebook]' in a checkout), or use .to_arrow_table() / .fetchall()"
            )
        return super().df(date_as_object=date_as_object)

    fetchdf = df
    to_df = df


def _for_notebooks(relation: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """``relation`` as a ``_ReadRelation`` (the same object); unchanged where this DuckDB's class does not allow it."""
    try:
        relation.__class__ = _ReadRelation
    except TypeError:  # a DuckDB whose relation class is not a plain Python class
        pass
    return relation
