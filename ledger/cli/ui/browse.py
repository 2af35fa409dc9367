"""The web page's ways in that need no id: functions, runs, entity types, the analytics tables.

Each reads the DuckDB analytics tables (``reader.analytics.page``, the same read-only path as
``ledger sql`` and the ``/sql`` page) with bound parameters, and returns plain rows; the
HTML is ``ledger.cli.ui.pages``'s. Columns the run record may or may not hold in this log
(``actor``, ``function_version``, ``started_at``, added by a later version of the
execution fact) are read when the ``executions`` table has them and reported as missing
otherwise, so a page never guesses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.errors import LedgerError

__all__ = [
    "EXECUTION_PAGE",
    "BadFilter",
    "Found",
    "columns_of",
    "entity_types",
    "executions",
    "functions",
    "lineages_of_type",
    "tables",
]

#: Rows per page of ``/executions``.
EXECUTION_PAGE = 50
STATUSES = ("succeeded", "failed")


class BadFilter(LedgerError):
    """A filter of ``/executions`` the log cannot answer (an unknown status)."""


@dataclass(frozen=True, slots=True)
class Found:
    """Rows for a table on a page, how many there are in all, and a note about what is missing."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    total: int
    note: str | None = None


def _page(reader: Any, query: str, params: list[Any] | None = None, limit: int | None = None) -> Found:
    result = reader.analytics.page(query, params, limit)
    return Found(list(result.columns), [tuple(r) for r in result.rows], int(result.total if result.total is not None else len(result.rows)))


def columns_of(reader: Any, table: str) -> list[str]:
    """The columns the analytics table ``table`` has in this log's version of the tables."""
    found = _page(reader, "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [table])
    return [str(r[0]) for r in found.rows]


def tables(reader: Any) -> list[tuple[str, list[tuple[str, str]]]]:
    """Every analytics table (and view) with its columns and their types, as Datasette lists them."""
    found = _page(
        reader,
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position",
    )
    out: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in found.rows:
        out.setdefault(str(table), []).append((str(column), str(kind)))
    return sorted(out.items())


def functions(reader: Any) -> Found:
    """Every function in the log: runs, failures, last run and, where recorded, its code versions."""
    has = set(columns_of(reader, "executions"))
    versions = "count(DISTINCT function_version)" if "function_version" in has else "NULL"
    found = _page(
        reader,
        "SELECT function_name AS function, count(*) AS runs, count(*) FILTER (WHERE NOT succeeded) AS failures, "
        f"max(recorded_at) AS last_run, max(position) AS last_position, round(avg(duration_ms), 3) AS mean_ms, "
        f"{versions} AS code_versions FROM executions GROUP BY function_name ORDER BY function_name",
    )
    note = None if "function_version" in has else "code versions: this log's executions do not record one"
    return Found(found.columns, found.rows, found.total, note)


def executions(reader: Any, *, function: str, status: str, actor: str, page: int) -> Found:
    """One page of runs, newest first, filtered by function (a glob), status and actor."""
    has = set(columns_of(reader, "executions"))
    where, params = [], []
    if function:
        where.append("function_name GLOB ?")
        params.append(function)
    if status:
        if status not in STATUSES:
            raise BadFilter(f"status: expected succeeded or failed, got {status!r:.40}")
        where.append("succeeded" if status == "succeeded" else "NOT succeeded")
    note = None
    if actor:
        if "actor" not in has:
            return Found([], [], 0, "actor: this log's executions do not record an actor")
        where.append("actor::VARCHAR = ?")
        params.append(actor)
    extra = [c for c in ("actor", "function_version", "started_at") if c in has]
    columns = ["position", "recorded_at", "function_name", "CASE WHEN succeeded THEN 'succeeded' ELSE 'failed' END AS status",
               "duration_ms", "isolation", *extra, "error_type", "execution_id"]
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    query = f"SELECT {', '.join(columns)} FROM executions{clause} ORDER BY position DESC"
    offset = (page - 1) * EXECUTION_PAGE
    found = _page(reader, f"{query} LIMIT {EXECUTION_PAGE} OFFSET {offset}", params)
    total = _page(reader, f"SELECT count(*) FROM executions{clause}", params).rows[0][0]
    if not extra:
        note = "actor, code version, start time: this log's executions do not record them"
    return Found(found.columns, found.rows, int(total), note)


def entity_types(reader: Any) -> Found:
    """Each stored entity type with its lineages and versions."""
    return _page(
        reader,
        "SELECT entity_type, count(DISTINCT lineage_id) AS lineages, count(*) AS versions, "
        "max(recorded_at) AS last_version FROM entity_versions GROUP BY entity_type ORDER BY entity_type",
    )


def lineages_of_type(reader: Any, entity_type: str, limit: int = 500) -> Found:
    """The lineages of one entity type, latest change first."""
    return _page(
        reader,
        "SELECT lineage_id, count(*) AS versions, min(position) AS first_position, max(position) AS last_position, "
        "max(recorded_at) AS last_version FROM entity_versions WHERE entity_type = ? GROUP BY lineage_id "
        "ORDER BY last_position DESC",
        [entity_type],
        limit,
    )
