"""Rich renderings of ledger data for the ``ledger`` command.

Every function here reads stored data only (the inline index and raw events),
never the user's entity classes, so the command works wherever the store is
reachable. They return renderables and never print.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import orjson
from rich.table import Table

from ledger.diffing import diff_versions
from ledger.index import InlineIndex, VersionRecord

__all__ = [
    "cell",
    "diff_table",
    "event_row",
    "history_table",
    "rows_as_csv",
    "rows_as_json",
    "rows_table",
    "short_type",
    "to_json",
]


def short_type(topic: str) -> str:
    """``tools.demo_pipeline:Student`` -> ``Student``."""
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


def _change_text(old: Any, new: Any) -> str:
    if isinstance(old, dict) or isinstance(new, dict):
        return "added" if old is None else "removed" if new is None else "replaced"
    return f"{old!r} -> {new!r}"


def history_table(index: InlineIndex, versions: Sequence[VersionRecord]) -> Table:
    """Every version of one lineage, oldest first, with what changed since the one before."""
    first = versions[0]
    table = Table(title=f"history of {short_type(first.topic)} lineage {first.lineage_id}")
    for col in ("#", "position", "recorded_at", "ecs_id", "cause of change"):
        table.add_column(col, no_wrap=col != "cause of change")
    prev: VersionRecord | None = None
    for i, rec in enumerate(versions, 1):
        if prev is None:
            change = "created"
        else:
            diff = diff_versions(index, prev, rec)
            change = ", ".join(f"{k}: {_change_text(a, b)}" for k, (a, b) in diff.items())
            change = change or "(same values: tree membership changed)"
        table.add_row(
            str(i), str(rec.position), rec.recorded_at.isoformat(timespec="milliseconds"), str(rec.ecs_id), change
        )
        prev = rec
    return table


def diff_table(diff: dict[str, tuple[Any, Any]], a: UUID, b: UUID) -> Table:
    table = Table(title=f"diff {a} -> {b}")
    for col in ("path", "old", "new"):
        table.add_column(col)
    for path, (old, new) in diff.items():
        table.add_row(path, cell(old), cell(new))
    return table


def event_row(position: int, topic: str, payload: dict[str, Any]) -> tuple[str, ...]:
    """One log line: position, time, event type, the id it is about, and a summary."""
    when = str(payload.get("recorded_at", ""))[:23].replace("T", " ")
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


def rows_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> Table:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
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
