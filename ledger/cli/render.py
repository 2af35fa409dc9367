"""Rich renderings of ledger data for the ``ledger`` command.

Every function here renders what the library already read (``projections.audit``
records, SQL rows, event payloads), never the user's entity classes, so the
command works wherever the store is reachable. They return renderables and never
print.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from rich.table import Table

from projections.audit import Erasure, ExecutionDetail, HistoryRow

__all__ = [
    "cell",
    "diff_table",
    "event_row",
    "execution_detail",
    "history_table",
    "rows_as_csv",
    "rows_as_json",
    "rows_table",
    "short_type",
    "to_json",
]


def short_type(topic: str) -> str:
    """``ledger.cli.demo_pipeline:Student`` -> ``Student``."""
    return topic.rpartition(":")[2]


def to_json(value: Any, *, indent: bool = True) -> str:
    """JSON text for any stored value (UUIDs, datetimes and unknown objects as strings)."""
    option = orjson.OPT_INDENT_2 if indent else 0
    return orjson.dumps(value, default=str, option=option | orjson.OPT_NON_STR_KEYS).decode()


def cell(value: Any) -> str:
    """One table cell: plain scalars as text, structures as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, (dict, list, tuple)):
        return to_json(value, indent=False)
    return str(value)


def _when(iso: str) -> str:
    """A stored UTC timestamp to the millisecond, as ``2026-01-31 12:00:00.123``."""
    return iso[:23].replace("T", " ")


def _change_text(old: Any, new: Any) -> str:
    if isinstance(old, dict) or isinstance(new, dict):
        return "added" if old is None else "removed" if new is None else "replaced"
    return f"{old!r} -> {new!r}"


def history_table(rows: Sequence[HistoryRow], erasure: Erasure | None = None) -> Table:
    """Every version of one lineage, oldest first: what wrote it and what changed since the
    version it was made from. A branch (made from an older version than the row above) says
    so; an erased lineage ends with its erasure."""
    first = rows[0].version
    table = Table(title=f"history of {short_type(first.entity_type)} lineage {first.lineage_id}")
    for col in ("#", "position", "recorded_at", "ecs_id"):
        table.add_column(col, no_wrap=True)
    table.add_column("written by", overflow="fold")
    table.add_column("what changed", overflow="fold")
    numbers = {row.version.ecs_id: i for i, row in enumerate(rows, 1)}
    for i, row in enumerate(rows, 1):
        if row.changes is None:
            change = "created"
        else:
            change = "\n".join(f"{k}: {_change_text(a, b)}" for k, (a, b) in row.changes.items())
            change = change or "(same values: tree membership changed)"
        if row.branch:
            change = f"branch from #{numbers.get(row.parent, '?')} ({row.parent})\n{change}"
        rec = row.version
        by = f"{row.function} (execution {row.execution_id})" if row.origin == "execution" else row.origin
        table.add_row(
            str(i), str(rec.position), _when(rec.recorded_at.isoformat()), str(rec.ecs_id), by, change
        )
    if erasure is not None:
        when = _when(erasure.recorded_at.isoformat()) if erasure.recorded_at is not None else "-"
        reason = f": {erasure.reason}" if erasure.reason else ""
        table.add_row("erased", str(erasure.position), when, "-", "erase", f"personal data erased{reason}")
    return table


def execution_detail(detail: ExecutionDetail) -> Table:
    """One execution: function, outcome, timing, each input and output, and a failure's error."""
    table = Table(title=f"execution {detail.execution_id}", show_header=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")
    outcome = "succeeded" if detail.succeeded else "FAILED"
    when = _when(detail.recorded_at.isoformat()) if detail.recorded_at is not None else "-"
    table.add_row("function", detail.function)
    table.add_row("outcome", outcome)
    table.add_row("position", str(detail.position))
    table.add_row("recorded_at", when)
    table.add_row("duration", f"{detail.duration_ms:.3f} ms")
    table.add_row("isolation", detail.isolation)
    for arg in detail.inputs:
        where = arg.address or (str(arg.ecs_id) if arg.ecs_id else "(plain value)")
        if arg.version is not None:
            v = arg.version
            where += f"  {short_type(v.entity_type)} lineage {v.lineage_id} version {v.version}"
        table.add_row(f"input {arg.param_name}", where)
    for out in detail.outputs:
        text = f"{out.semantic}: {out.ecs_id}"
        if out.version is not None:
            text += f"  {short_type(out.version.entity_type)} lineage {out.lineage_id} version {out.version.version}"
        table.add_row(f"output {out.output_index if out.output_index is not None else ''}".rstrip(), text)
    if not detail.succeeded:
        table.add_row("error type", str(detail.error_type))
        table.add_row("error message", str(detail.error_message))
        table.add_row("traceback", str(detail.traceback).rstrip())
    return table


def diff_table(diff: dict[str, tuple[Any, Any]]) -> Table:
    table = Table()
    for col in ("path", "old", "new"):
        table.add_column(col)
    for path, (old, new) in diff.items():
        table.add_row(path, cell(old), cell(new))
    return table


def event_row(position: int, topic: str, payload: dict[str, Any]) -> tuple[str, ...]:
    """One log line: position, time, event type, the id it is about, and a summary."""
    when = _when(str(payload.get("recorded_at", "")))
    if topic == "entity.version":
        ident = str(payload["ecs_id"])
        summary = f"{short_type(payload['entity_type'])} ({payload.get('cause', '?')})"
    elif topic.startswith("execution."):
        ident = str(payload["execution_id"])
        summary = f"{payload['function_name']} {payload['duration_ms']:.1f} ms"
        if topic == "execution.completed":
            semantics = [o["semantic"] for o in payload.get("outputs", [])]
            summary += f" -> {len(semantics)} output(s) {','.join(sorted(set(semantics)))}".rstrip()
        else:
            summary += f" FAILED {payload.get('error_type')}: {payload.get('error_message')}"
    else:
        ident, summary = "", ""
    return str(position), when, topic, ident, summary


def rows_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None, whole: Sequence[str] = ()
) -> Table:
    """Rows as a rich table; ``whole`` columns (ids to copy) are never wrapped or cropped."""
    table = Table(title=title)
    for col in columns:
        if col in whole:
            table.add_column(col, no_wrap=True, min_width=36 if col == "id" else None)
        else:
            table.add_column(col, overflow="fold", min_width=min(24, max(len(col), 10)))
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    return table


def rows_as_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else cell(v) for v in row])
    return buf.getvalue()


def rows_as_json(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A list of row objects, keyed by column name."""
    return to_json([dict(zip(columns, row)) for row in rows])
