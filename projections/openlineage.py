"""OpenLineage export: every execution as RunEvents (spec 2-0-2), one JSON object per line.

Lineage tools (Marquez, DataHub, OpenMetadata, Atlan) read OpenLineage; the ledger
already knows what each function read and wrote, so it can tell them. Per execution:

- a ``START`` at the time it started (recorded time minus its duration) and a
  ``COMPLETE`` (or ``FAIL``, with an ``errorMessage`` run facet) at the time it was
  recorded, both with ``run.runId`` = the execution_id;
- ``job``: namespace ``job_namespace(url)`` (``"entity-ledger:"`` + the store's namespace, so
  the jobs of a test ledger and a production ledger never merge in Marquez), name the
  function name, a ``jobType`` facet and, where the run record knows it, a
  ``sourceCodeLocation`` facet (the source file, its git commit) and, where the file still holds
  exactly the code that ran (its hash is the recorded version), a ``sourceCode`` facet;
- ``run`` facets: ``processing_engine`` (entity-ledger and its version) and, for a
  re-execution (exported as its own run, ``runId`` = the re-execution id), ``parent``
  naming the execution it re-ran;
- every input and output dataset carries a ``version`` facet: the ecs_id read or written;
- ``inputs``: the entity versions it read and the entities named by its reference
  arguments; ``outputs``: the entities it wrote. A dataset is one entity lineage:
  namespace = the store (``store_namespace``: its URL without user, password or any
  other credential), name = ``<entity type>/<lineage id>``;
- on each output, a ``columnLineage`` facet from the field provenance: every field of
  the output lists the input fields (reference arguments' paths) the call read. The
  ledger records what a call read, not which output field each value reached, so the
  mapping is per call (``INDIRECT`` would understate a copied value, ``DIRECT``
  overstate a filter; it says ``DIRECT``/``TRANSFORMATION`` with the parameter name).

Read from the analytics tables in a few set-based queries (they are caught up
first), then written with orjson. ``since`` (a log position, or a time) exports only
the executions recorded from there on, so a file can be extended incrementally.
"""

from __future__ import annotations

import ast
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import orjson

from ledger.errors import LedgerError
from ledger.events.bodies import EXECUTION_FAILED
from ledger.model.code_version import source_version
from ledger.store.base import parse_store_url

__all__ = [
    "JOB_NAMESPACE",
    "OpenLineageExport",
    "OpenLineageQueryError",
    "dataset_name",
    "export_openlineage",
    "job_namespace",
    "producer",
    "query_rows",
    "store_namespace",
]

JOB_NAMESPACE = "entity-ledger"
_SPEC = "https://openlineage.io/spec"
RUN_EVENT_SCHEMA = f"{_SPEC}/2-0-2/OpenLineage.json#/$defs/RunEvent"
_ERROR_FACET_SCHEMA = f"{_SPEC}/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
_COLUMN_FACET_SCHEMA = f"{_SPEC}/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet"
_JOB_TYPE_SCHEMA = f"{_SPEC}/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet"
_VERSION_SCHEMA = f"{_SPEC}/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"
_ENGINE_SCHEMA = f"{_SPEC}/facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet"
_LOCATION_SCHEMA = f"{_SPEC}/facets/1-1-0/SourceCodeLocationJobFacet.json#/$defs/SourceCodeLocationJobFacet"
_SOURCE_SCHEMA = f"{_SPEC}/facets/1-0-1/SourceCodeJobFacet.json#/$defs/SourceCodeJobFacet"
_PARENT_SCHEMA = f"{_SPEC}/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet"


class OpenLineageQueryError(LedgerError, ValueError):
    """An export argument that cannot be used (``since`` neither a position nor an aware time)."""


@dataclass(frozen=True)
class OpenLineageExport:
    """What an export wrote: the file, how many RunEvents, for how many runs (executions and their
    re-executions: two events each), up to which position."""

    path: Path
    events: int
    executions: int
    last_position: int | None


def producer() -> str:
    """The ``producer`` URI: this library and its version."""
    try:
        version = metadata.version("entity-ledger")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"https://pypi.org/project/entity-ledger/{version}/"


def store_namespace(url: str) -> str:
    """The store a dataset lives in, as a URL without credentials.

    PostgreSQL: ``postgresql://host:port/dbname`` (plus ``?schema=`` when given), never
    the user or password; SQLite: ``sqlite:////absolute/path.db`` (a URL that opens the
    same file); ``memory://``.
    """
    parsed = parse_store_url(url)
    if parsed.kind == "postgresql":
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        schema = parsed.options.get("schema")
        tail = f"?schema={schema}" if schema else ""
        return f"postgresql://{host}:{parsed.port}/{quote(parsed.dbname, safe='')}{tail}"
    if parsed.kind == "sqlite":
        return "sqlite:///" + quote(os.path.abspath(parsed.path), safe="/")
    return "memory://"


def job_namespace(url: str) -> str:
    """The jobs' namespace: ``"entity-ledger:"`` + the store's (``store_namespace``), so the
    same function run against two ledgers is two jobs, never merged into one history."""
    return f"{JOB_NAMESPACE}:{store_namespace(url)}"


def dataset_name(entity_type: str, lineage_id: str) -> str:
    """A dataset's name: the entity's type (its stored topic) and lineage id."""
    return f"{entity_type}/{lineage_id}"


def _since_clause(since: int | datetime | None) -> tuple[str, list[Any]]:
    if since is None:
        return "", []
    if isinstance(since, bool) or not isinstance(since, (int, datetime)):
        raise OpenLineageQueryError(f"since: expected a log position or a datetime, got {since!r}")
    if isinstance(since, datetime):
        if since.tzinfo is None:
            raise OpenLineageQueryError("since: a time must be timezone-aware (UTC)")
        return "WHERE x.recorded_at >= ?", [since]
    if since < 0:
        raise OpenLineageQueryError(f"since: a log position is 1 or more, got {since}")
    return "WHERE x.position >= ?", [since]


def recorded_source(path: str, qualname: str | None, name: str, version: str | None) -> str | None:
    """The source of function ``qualname`` as it stands in ``path`` now, if it is the code that ran.

    The run record keeps the code's version (``function_version``: a hash of the registered name,
    the source and ``unpack``), not its text. The file is read (never imported: an export runs no
    user code) and the function's lines, decorators included, are hashed the same way; only a
    text whose hash is the recorded version is returned, so the facet can never show code other
    than what ran (a file edited since, or a function defined in a block, gives None).
    """
    if not qualname or not version or "<" in qualname:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
        found: ast.AST = ast.parse(text)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None
    for part in qualname.split("."):
        body = getattr(found, "body", [])
        match = [n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part]
        if not match:
            return None
        found = match[-1]  # the definition that stood last, as the module's name would
    if not isinstance(found, (ast.FunctionDef, ast.AsyncFunctionDef)) or found.end_lineno is None:
        return None
    first = min([found.lineno, *(d.lineno for d in found.decorator_list)])
    source = "".join(text.splitlines(keepends=True)[first - 1 : found.end_lineno])
    if any(source_version(name, source.encode(), unpack) == version for unpack in (True, False)):
        return source
    return None


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def query_rows(con: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> dict[str, Any]:
    """Everything the events need, in four queries over the executions chosen by ``where``
    (a ``WHERE`` on ``executions x``, or ""); the export's benchmark floor reads the same."""
    chosen = f"(SELECT execution_id FROM executions x {where})"
    executions = con.execute(
        "SELECT execution_id, function_name, position, recorded_at, duration_ms, succeeded, "
        "error_type, error_message, started_at, finished_at, ledger_version, source_file, git_commit, "
        "qualname, function_version "
        f"FROM executions x {where} ORDER BY position",
        params,
    ).fetchall()
    # re-executions of the chosen executions, exported as runs whose parent is the execution
    reexecutions = con.execute(
        "SELECT r.reexecution_id, r.execution_id, r.function_name, r.position, r.recorded_at, r.duration_ms, "
        "r.error_type IS NULL OR r.error_type = r.recorded_error_type, r.error_type, r.started_at, r.finished_at "
        f"FROM reexecutions r WHERE r.execution_id IN {chosen} ORDER BY r.position",
        params,
    ).fetchall()
    inputs = con.execute(
        "SELECT i.execution_id, v.lineage_id, v.entity_type, i.ecs_id FROM execution_inputs i "
        "JOIN entity_versions v ON v.ecs_id = i.ecs_id "
        f"WHERE i.execution_id IN {chosen} ORDER BY i.position, i.execution_id, i.param_name, v.entity_type, v.lineage_id",
        params,
    ).fetchall()
    outputs = con.execute(
        "SELECT o.execution_id, o.ecs_id, o.lineage_id, v.entity_type, "
        "coalesce(json_keys(v.data), []) || coalesce(json_keys(v.children), []) "
        "FROM execution_outputs o JOIN entity_versions v ON v.ecs_id = o.ecs_id "
        f"WHERE o.execution_id IN {chosen} ORDER BY o.position, o.execution_id, o.output_index NULLS FIRST, o.ecs_id",
        params,
    ).fetchall()
    # An address names a version (ecs_id) or a lineage: the dataset is that lineage either way.
    fields = con.execute(
        "SELECT f.execution_id, f.output_ecs_id, f.param_name, coalesce(f.path, ''), "
        "coalesce(v.lineage_id, f.address_ecs_id), coalesce(v.entity_type, l.entity_type) "
        "FROM field_provenance f "
        "LEFT JOIN entity_versions v ON v.ecs_id = f.address_ecs_id "
        "LEFT JOIN (SELECT lineage_id, any_value(entity_type) AS entity_type FROM entity_versions "
        "           GROUP BY lineage_id) l ON v.ecs_id IS NULL AND l.lineage_id = f.address_ecs_id "
        f"WHERE f.execution_id IN {chosen} ORDER BY f.position, f.execution_id, f.output_ecs_id, f.param_name, 5, 4",
        params,
    ).fetchall()
    return {"executions": executions, "inputs": inputs, "outputs": outputs, "fields": fields, "reexecutions": reexecutions}


def _failure_traces(con: duckdb.DuckDBPyConnection, positions: list[int]) -> dict[int, dict[str, Any]]:
    """The stored payloads of failed executions (their tracebacks), by position."""
    if not positions:
        return {}
    rows = con.execute(
        "SELECT position, payload FROM events WHERE position IN (SELECT unnest(?))", [positions]
    ).fetchall()
    return {position: orjson.loads(payload) for position, payload in rows}


def _events(
    rows: dict[str, Any],
    namespace: str,
    traces: dict[int, dict[str, Any]],
    open_payload: Callable[[str, dict[str, Any]], dict[str, Any]],
    job_ns: str = JOB_NAMESPACE,
) -> list[bytes]:
    made_by = producer()
    inputs_of: dict[str, list[dict[str, Any]]] = {}
    # per execution: (entity type, lineage) -> the version read (None: named by an address only)
    inputs: dict[str, dict[tuple[str, str], str | None]] = defaultdict(dict)
    for execution_id, lineage_id, entity_type, ecs_id in rows["inputs"]:
        inputs[execution_id][(entity_type, lineage_id)] = ecs_id
    read: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for execution_id, output_ecs_id, param, path, lineage_id, entity_type in rows["fields"]:
        if entity_type is None:
            continue  # an address whose entity the tables do not hold: nothing to name
        inputs[execution_id].setdefault((entity_type, lineage_id), None)
        read[(execution_id, output_ecs_id)].append(
            {
                "namespace": namespace,
                "name": dataset_name(entity_type, lineage_id),
                "field": path or "*",
                "transformations": [{"type": "DIRECT", "subtype": "TRANSFORMATION", "description": f"read as {param}"}],
            }
        )
    outputs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for execution_id, ecs_id, lineage_id, entity_type, keys in rows["outputs"]:
        dataset: dict[str, Any] = {
            "namespace": namespace,
            "name": dataset_name(entity_type, lineage_id),
            "facets": {"version": _version(made_by, ecs_id)},
        }
        fields = read.get((execution_id, ecs_id))
        if fields:
            dataset["facets"]["columnLineage"] = {
                "_producer": made_by,
                "_schemaURL": _COLUMN_FACET_SCHEMA,
                "fields": {key: {"inputFields": fields} for key in keys},
            }
        outputs[execution_id].append(dataset)
    job_type = {
        "_producer": made_by, "_schemaURL": _JOB_TYPE_SCHEMA,
        "processingType": "BATCH", "integration": "ENTITY_LEDGER", "jobType": "FUNCTION",
    }
    lines: list[bytes] = []
    dumps = orjson.dumps
    jobs: dict[str, dict[str, Any]] = {}
    sources: dict[tuple[Any, ...], str | None] = {}  # (file, qualname, name, version) -> the source that ran, or None
    for (execution_id, function, position, recorded_at, duration_ms, succeeded, error_type, message,
         started_at, finished_at, ledger_version, source_file, git_commit, qualname, version) in rows["executions"]:
        job_facets: dict[str, Any] = {"jobType": job_type}
        if source_file and os.path.isabs(source_file):
            job_facets["sourceCodeLocation"] = {
                "_producer": made_by, "_schemaURL": _LOCATION_SCHEMA,
                "type": "git" if git_commit else "file", "url": Path(source_file).as_uri(), "path": source_file,
                **({"version": git_commit} if git_commit else {}),
            }
            key = (source_file, qualname, function, version)
            if key not in sources:
                sources[key] = recorded_source(source_file, qualname, function, version)
            if sources[key] is not None:
                job_facets["sourceCode"] = {
                    "_producer": made_by, "_schemaURL": _SOURCE_SCHEMA, "language": "python", "sourceCode": sources[key],
                }
        job = {"namespace": job_ns, "name": function, "facets": job_facets}
        jobs[execution_id] = job
        ins = [
            {"namespace": namespace, "name": dataset_name(t, lid), "facets": {"version": _version(made_by, v)} if v else {}}
            for (t, lid), v in inputs.get(execution_id, {}).items()
        ]
        inputs_of[execution_id] = ins
        engine = _engine(made_by, ledger_version)
        started = started_at or recorded_at - timedelta(milliseconds=duration_ms or 0.0)
        base = {"producer": made_by, "schemaURL": RUN_EVENT_SCHEMA, "job": job, "inputs": ins}
        lines.append(dumps({
            "eventType": "START", "eventTime": _iso(started),
            "run": {"runId": execution_id, "facets": {"processing_engine": engine}}, **base, "outputs": [],
        }))
        run_facets: dict[str, Any] = {"processing_engine": engine}
        if not succeeded:
            payload = traces.get(position)
            trace = open_payload(EXECUTION_FAILED, payload).get("traceback") if payload is not None else None
            run_facets["errorMessage"] = {
                "_producer": made_by,
                "_schemaURL": _ERROR_FACET_SCHEMA,
                "message": f"{error_type}: {message}" if error_type else str(message),
                "programmingLanguage": "PYTHON",
                **({"stackTrace": str(trace)} if trace else {}),
            }
        lines.append(dumps({
            "eventType": "COMPLETE" if succeeded else "FAIL", "eventTime": _iso(finished_at or recorded_at),
            "run": {"runId": execution_id, "facets": run_facets}, **base,
            "outputs": outputs.get(execution_id, []),
        }))
    for (reexecution_id, execution_id, function, _, recorded_at, duration_ms, completed, error_type,
         started_at, finished_at) in rows["reexecutions"]:
        job = jobs.get(execution_id) or {"namespace": job_ns, "name": function, "facets": {"jobType": job_type}}
        parent = {
            "_producer": made_by, "_schemaURL": _PARENT_SCHEMA,
            "run": {"runId": execution_id}, "job": {"namespace": job["namespace"], "name": job["name"]},
        }
        facets = {"processing_engine": _engine(made_by, None), "parent": parent}
        base = {"producer": made_by, "schemaURL": RUN_EVENT_SCHEMA, "job": job, "inputs": inputs_of.get(execution_id, [])}
        started = started_at or recorded_at - timedelta(milliseconds=duration_ms or 0.0)
        lines.append(dumps({"eventType": "START", "eventTime": _iso(started), "run": {"runId": reexecution_id, "facets": facets}, **base, "outputs": []}))
        end_facets = dict(facets)
        if not completed:
            end_facets["errorMessage"] = {
                "_producer": made_by, "_schemaURL": _ERROR_FACET_SCHEMA,
                "message": f"re-execution raised {error_type}", "programmingLanguage": "PYTHON",
            }
        lines.append(dumps({
            "eventType": "COMPLETE" if completed else "FAIL", "eventTime": _iso(finished_at or recorded_at),
            "run": {"runId": reexecution_id, "facets": end_facets}, **base, "outputs": [],
        }))
    return lines


def _version(made_by: str, ecs_id: str) -> dict[str, Any]:
    """The ``version`` dataset facet: the entity version (ecs_id) read or written."""
    return {"_producer": made_by, "_schemaURL": _VERSION_SCHEMA, "datasetVersion": str(ecs_id)}


def _engine(made_by: str, ledger_version: str | None) -> dict[str, Any]:
    """The ``processing_engine`` run facet: entity-ledger and the version that ran the function."""
    try:
        version = ledger_version or metadata.version("entity-ledger")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"_producer": made_by, "_schemaURL": _ENGINE_SCHEMA, "name": "entity-ledger", "version": version}


def export_openlineage(
    analytics: Any,
    url: str,
    path: str | os.PathLike[str],
    *,
    since: int | datetime | None = None,
    open_payload: Callable[[str, dict[str, Any]], dict[str, Any]],
) -> OpenLineageExport:
    """Write the RunEvents of the executions recorded since ``since`` (all by default) to ``path``.

    ``analytics`` is the ledger's ``projections.analytics.Analytics`` (caught up here),
    ``url`` the store's URL (for the datasets' namespace), ``open_payload`` what opens
    a sealed failure's traceback (``Ledger.open_payload``). The file is replaced; it
    is written beside itself first and renamed, so a failed export leaves the old one.
    """
    where, params = _since_clause(since)
    namespace = store_namespace(url)

    def read(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
        rows = query_rows(con, where, params)
        failed = [row[2] for row in rows["executions"] if not row[5]]
        return rows, _failure_traces(con, failed)

    rows, traces = analytics.read(read)
    lines = _events(rows, namespace, traces, open_payload, job_namespace(url))
    out = Path(path)
    partial = out.with_name(out.name + ".partial")
    with open(partial, "wb") as f:
        for line in lines:
            f.write(line)
            f.write(b"\n")
    os.replace(partial, out)
    executions = rows["executions"]
    # a re-execution is a run of its own (START + end): counted with the executions it re-ran
    runs = len(executions) + len(rows["reexecutions"])
    return OpenLineageExport(out, len(lines), runs, executions[-1][2] if executions else None)
