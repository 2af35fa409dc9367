"""Renderings of ledger data for the ``ledger`` command.

Every function here renders what the library already read (``projections.audit``
records, SQL rows, event payloads), never the user's entity classes, so the
command works wherever the store is reachable. They return renderables or text
and never print.

An audit tool that hides data is worse than none, so nothing here drops a
column or cuts a value (issue 13). A ``Rows`` table decides its layout when it
is printed: in a terminal, a table whose long cells wrap while ids (single
tokens: UUIDs, numbers, names) keep their full width, or, when even that cannot
fit, one record per row ("column  value" lines); when stdout is not a terminal,
tab-separated text with a header line, one row per line, so ``grep``, ``cut``
and ``> file`` see every value. JSON (``--format json``) keeps exact values;
tables round floats for reading.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.rule import Rule
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from projections.lineage import entity_label  # imports no DuckDB (annotations only)
from projections.audit import (
    AsOf,
    Erasure,
    ExecutionDetail,
    HistoryRow,
    LogEntry,
    VersionDiff,
)

__all__ = [
    "Lines",
    "OutputConsole",
    "Rows",
    "as_of_json",
    "cell",
    "changes_json",
    "split_erased",
    "diff_json",
    "diff_table",
    "duration",
    "event_row",
    "execution_detail",
    "execution_json",
    "history_json",
    "history_table",
    "log_json",
    "log_table",
    "number",
    "rows_as_csv",
    "rows_as_json",
    "rows_as_tsv",
    "rows_table",
    "short_type",
    "to_json",
    "verify_json",
]

#: A cell made only of one token at most this long is never wrapped (ids, numbers, names).
WHOLE_TOKEN = 40
#: Longer tokens (JSON, long words) may be folded, down to this width; UUIDs never are.
FOLD_MIN = 16
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SPACE = re.compile(r"\s")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class OutputConsole(Console):
    """The command's console: in a terminal rich wraps text at spaces (so an id is
    never broken by the terminal's own wrapping); piped it neither wraps nor crops,
    so each line reaches ``grep`` whole. An explicit ``soft_wrap=`` still wins."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        kwargs.setdefault("soft_wrap", not self.is_terminal)
        super().print(*objects, **kwargs)


def short_type(topic: str) -> str:
    """``ledger.cli.demo_pipeline:Student`` -> ``Student``; a wrapped output -> ``output(result)``."""
    return entity_label(topic)


def to_json(value: Any, *, indent: bool = True) -> str:
    """JSON text for any stored value or audit record (UUIDs, datetimes and unknown objects as strings)."""
    option = orjson.OPT_INDENT_2 if indent else 0
    return orjson.dumps(value, default=str, option=option | orjson.OPT_NON_STR_KEYS).decode()


# ---------------------------------------------------------------- values
def duration(ms: float | None) -> str:
    """A duration given in milliseconds, with 3 significant digits and a unit: ``33.1 µs``, ``4.52 ms``, ``1.25 s``."""
    if ms is None:
        return "-"
    if ms == 0:
        return "0 ms"
    value, unit = ms * 1e6, "ns"
    for bigger in ("µs", "ms", "s"):
        if abs(float(_significant(value, 3))) < 1000:
            break
        value, unit = value / 1000, bigger
    if abs(value) >= 1000:  # a thousand seconds or more: whole seconds
        return f"{value:,.0f} {unit}"
    return f"{_significant(value, 3)} {unit}"


def _significant(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant digits, without exponent or trailing zeros."""
    if value == 0 or not math.isfinite(value):
        return repr(value)
    places = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def number(value: float) -> str:
    """A float for reading: 6 significant digits (``0.03308999998807849`` -> ``0.03309``).

    Tables only; JSON, CSV and TSV keep the exact value.
    """
    if not math.isfinite(value) or value == 0:
        return repr(value)
    if abs(value) >= 1e15 or abs(value) < 1e-6:
        return f"{value:.6g}"
    if value.is_integer():
        return repr(value)
    return _significant(value, 6)


class Lines(tuple[Any, ...]):
    """A cell of several items: one per line in a terminal, ``; ``-separated when piped."""

    __slots__ = ()


def cell(value: Any, *, exact: bool = False) -> str:
    """One cell as text: plain scalars as text, structures as compact JSON, floats rounded unless ``exact``."""
    if value is None:
        return ""
    if isinstance(value, Lines):
        return "\n".join(cell(v, exact=exact) for v in value)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(value) if exact else number(value)
    if isinstance(value, (dict, list, tuple)):
        return to_json(value, indent=False)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _plain(value: Any) -> str:
    """A cell for one tab-separated line: items joined by ``; ``, tabs and newlines escaped."""
    if isinstance(value, Lines):
        return "; ".join(_plain(v) for v in value)
    return cell(value, exact=True).translate(_ESCAPES)


def _when(iso: str) -> str:
    """A stored UTC timestamp with all its microseconds, as ``2026-01-31 12:00:00.123456``.

    Nothing is cut: a time pasted from ``history`` into ``as-of --at`` must name the same
    instant (cut to milliseconds it fell before the version and returned the previous one)."""
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")


def when_text(value: datetime | None) -> str:
    """A time as ``_when`` prints it, ``-`` when unknown (a record from before it was kept)."""
    return "-" if value is None else _when(value.isoformat())


# ---------------------------------------------------------------- tables
@dataclass
class Rows:
    """Rows to print under named columns; a rich renderable that picks its layout when printed.

    ``title`` heads the table in a terminal; piped, it is left out (the output is
    then only the header line and the rows) unless ``plain_title``, for narrative
    output such as the demo's, where it becomes a ``# title`` line.
    """

    columns: Sequence[str]
    rows: list[Sequence[Any]] = field(default_factory=list)
    title: str | None = None
    plain_title: bool = False

    def tsv(self) -> str:
        """Tab-separated text: the header line, then one line per row, every value whole."""
        lines = ["\t".join(self.columns)]
        lines.extend("\t".join(_plain(v) for v in row) for row in self.rows)
        return "\n".join(lines) + "\n"

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not console.is_terminal:
            if self.title and self.plain_title:
                yield Segment(f"# {self.title}\n")
            for line in self.tsv().splitlines():
                yield Segment(line)
                yield Segment.line()
            return
        texts = [[cell(v) for v in row] for row in self.rows]
        widths = _fit(self.columns, texts, options.max_width)
        if widths is not None:
            yield self._table(texts, widths)
        else:
            yield from self._records(texts, options.max_width)

    def _table(self, texts: list[list[str]], widths: list[int]) -> Table:
        # Text, not str: a value is never read as rich markup (``[b]`` stays ``[b]``)
        table = Table(title=None if self.title is None else Text(self.title))
        for name, width in zip(self.columns, widths):
            table.add_column(Text(name), width=width, overflow="fold")
        for row in texts:
            table.add_row(*(Text(t or "-") for t in row))
        return table

    def _records(self, texts: list[list[str]], width: int) -> Iterator[Any]:
        """One block per row, "column  value", for a table too wide for the terminal."""
        if self.title:
            yield Text(self.title, style="bold")
        key_width = max((cell_len(c) for c in self.columns), default=0)
        for i, row in enumerate(texts, 1):
            yield Rule(f"{i} of {len(texts)}", align="left", style="dim")
            grid = Table.grid(padding=(0, 2))
            grid.add_column(no_wrap=True, width=key_width, style="bold")
            grid.add_column(overflow="fold")
            for name, text in zip(self.columns, row):
                grid.add_row(Text(name), Text(text or "-"))
            yield grid
        if not texts:
            yield Text("(no rows)", style="dim")


def _tokens(text: str) -> list[str]:
    return [t for t in _SPACE.split(text) if t]


def _fit(columns: Sequence[str], texts: list[list[str]], width: int) -> list[int] | None:
    """Column widths that show every cell without cutting an id, or None when none fit ``width``.

    A column whose cells are each a single short token (ids, positions, names)
    keeps its widest cell; other columns wrap, but never below their longest
    UUID, nor below ``FOLD_MIN`` or their header (up to 12) for other long words.
    Space left over goes to the wrapping columns, narrowest need first.
    """
    n = len(columns)
    if n == 0:
        return []
    available = width - (3 * n + 1)  # one space of padding each side, a border between and around
    minimum: list[int] = []
    natural: list[int] = []
    for j, name in enumerate(columns):
        cells = [row[j] for row in texts]
        lines = [line for c in cells for line in c.split("\n")]
        widest = max((cell_len(line) for line in lines), default=1)
        head = cell_len(name)
        natural.append(max(widest, head, 1))
        if all(len(_tokens(c)) <= 1 and cell_len(c) <= WHOLE_TOKEN for c in cells):
            minimum.append(max(widest, min(head, 12), 1))
            continue
        floor = min(head, 12)
        for token in (t for c in cells for t in _tokens(c)):
            size = cell_len(token)
            floor = max(floor, size if _UUID.fullmatch(token.strip("(),;:'\"[]{}")) else min(size, FOLD_MIN))
        minimum.append(floor)
    if sum(minimum) > available:
        return None
    widths = list(minimum)
    spare = available - sum(widths)
    wanting = sorted(range(n), key=lambda j: natural[j] - widths[j])
    for k, j in enumerate(wanting):
        share = spare // (n - k)
        grant = min(share, natural[j] - widths[j])
        widths[j] += grant
        spare -= grant
    return widths


def rows_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None, *, plain_title: bool = False
) -> Rows:
    """Any rows (SQL results) as a ``Rows`` table."""
    return Rows(list(columns), [tuple(r) for r in rows], title, plain_title)


def rows_as_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV with a header row; exact values, structures as compact JSON."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(v, exact=True) if not isinstance(v, Lines) else _plain(v) for v in row])
    return buf.getvalue()


def rows_as_tsv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Tab-separated text with a header line, one row per line (tabs, newlines, backslashes escaped)."""
    return Rows(list(columns), [tuple(r) for r in rows]).tsv()


def rows_as_json(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A list of row objects, keyed by column name."""
    return to_json([dict(zip(columns, row)) for row in rows])


# ---------------------------------------------------------------- the log
LOG_COLUMNS = ("position", "recorded_at", "event", "id", "summary")


def _subject(topic: str, payload: dict[str, Any]) -> str:
    if topic == "entity.version":
        return str(payload["ecs_id"])
    if topic.startswith("execution."):
        return str(payload["execution_id"])
    if topic == "reaction.emitted":
        return str(payload["event_id"])
    if topic == "entity.erased":
        return str(payload["lineage_id"])
    return ""


def event_row(position: int, topic: str, payload: dict[str, Any]) -> tuple[Any, ...]:
    """One log line: position, time, event type, the id it is about, and a summary."""
    when = _when(str(payload.get("recorded_at", "")))
    if topic == "entity.version":
        summary = f"{short_type(payload['entity_type'])} ({payload.get('cause', '?')})"
    elif topic.startswith("execution."):
        summary = f"{payload['function_name']} {duration(payload.get('duration_ms'))}"
        if topic == "execution.completed":
            semantics = [o["semantic"] for o in payload.get("outputs", [])]
            summary += f" -> {len(semantics)} output(s) {','.join(sorted(set(semantics)))}".rstrip()
            if payload.get("cache_hit"):
                summary += f" (cache hit: reused {payload.get('reused_execution_id')})"
        elif topic == "execution.reexecuted":
            summary = f"{payload['function_name']} re-executed {duration(payload.get('duration_ms'))}: " + (
                ("failure reproduced" if payload.get("recorded_error_type") else "outputs match")
                if payload.get("matches") else reexecution_verdict(payload)
            )
        else:
            summary += f" FAILED {payload.get('error_type')}: {payload.get('error_message')}"
    elif topic == "reaction.emitted":
        about = short_type(payload["subject_type"]) if payload.get("subject_type") else ""
        if payload.get("subject_id"):
            about = f"{about} {payload['subject_id']}".strip()
        summary = f"{payload.get('event_type')} {about}".rstrip()
    elif topic == "entity.erased":
        summary = f"lineage {payload.get('lineage_id')}: {payload.get('versions', '?')} version(s) erased ({payload.get('reason')})"
    else:
        summary = ""
    return position, when, topic, _subject(topic, payload), summary


def reexecution_verdict(payload: dict[str, Any]) -> str:
    """What a mismatching ``execution.reexecuted`` found, in a few words."""
    if payload.get("error_type"):
        return f"DIFFERS: raised {payload['error_type']}"
    paths = [d.get("path") for d in payload.get("differences", ())]
    shown = ", ".join(map(str, paths[:3])) + (" …" if len(paths) > 3 else "")
    return f"DIFFERS at {len(paths)} path(s): {shown}"


def reexecution_table(result: Any) -> Rows:
    """The differences of a ``Reexecution`` (``CallableRegistry.reexecute``) as a table."""
    rows: list[Sequence[Any]] = [(path, recorded, now) for path, (recorded, now) in result.differences.items()]
    title = f"re-execution of {result.execution_id} ({result.function_name})"
    return Rows(("path", "recorded", "now"), rows, title)


def log_table(entries: Sequence[LogEntry], title: str = "events") -> Rows:
    return Rows(LOG_COLUMNS, [event_row(e.position, e.topic, e.payload) for e in entries], title)


def log_json(entries: Sequence[LogEntry]) -> list[dict[str, Any]]:
    """``[{"position", "event", "recorded_at", "id", "payload"}]``: the events as stored (sealed text opened)."""
    return [
        {
            "position": e.position,
            "event": e.topic,
            "recorded_at": e.payload.get("recorded_at"),
            "id": _subject(e.topic, e.payload) or None,
            "payload": e.payload,
        }
        for e in entries
    ]


# ---------------------------------------------------------------- versions
def _change_text(old: Any, new: Any) -> str:
    from ledger import ERASED  # the tombstone (``ledger.model.personal``; the package loads it alone)

    if old is ERASED and new is ERASED:
        return "changed (personal data, values erased)"
    if isinstance(old, dict) or isinstance(new, dict):
        return "added" if old is None else "removed" if new is None else "replaced"
    return f"{old!r} -> {new!r}"


def split_erased(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """``value`` without its ``ERASED`` leaves, and their dotted paths: the text form of
    ``show`` names erased fields instead of printing a tombstone that reads like stored text."""
    from ledger import ERASED

    if value is ERASED:
        return None, [path]
    gone: list[str] = []
    if isinstance(value, dict):
        kept: dict[Any, Any] = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if item is ERASED:
                gone.append(where)
                continue
            kept[key], below = split_erased(item, where)
            gone += below
        return kept, gone
    if isinstance(value, list):
        items = []
        for i, item in enumerate(value):
            kept_item, below = split_erased(item, f"{path}.{i}" if path else str(i))
            items.append(kept_item)
            gone += below
        return items, gone
    return value, gone


def changes_json(changes: dict[str, tuple[Any, Any]] | None) -> list[dict[str, Any]] | None:
    """``{path: (old, new)}`` as ``[{"path", "old", "new"}]`` (None stays None: a first version);
    a personal change whose values were erased has both sides null and ``"erased": true``."""
    from ledger import ERASED

    if changes is None:
        return None
    return [
        {"path": path, "old": None, "new": None, "erased": True} if old is ERASED and new is ERASED
        else {"path": path, "old": old, "new": new}
        for path, (old, new) in changes.items()
    ]


def history_table(rows: Sequence[HistoryRow], erasure: Erasure | None = None, *, plain_title: bool = False) -> Rows:
    """Every version of one lineage, oldest first: what wrote it and what changed since the
    version it was made from. A branch (made from an older version than the row above) says
    so; an erased lineage ends with its erasure."""
    first = rows[0].version
    table = Rows(
        ("#", "position", "recorded_at", "ecs_id", "written by", "what changed"),
        title=f"history of {short_type(first.entity_type)} lineage {first.lineage_id}",
        plain_title=plain_title,
    )
    numbers = {row.version.ecs_id: i for i, row in enumerate(rows, 1)}
    for i, row in enumerate(rows, 1):
        lines = [] if row.changes is None else [f"{k}: {_change_text(a, b)}" for k, (a, b) in row.changes.items()]
        if row.changes is None:
            lines = ["created"]
        elif not lines:
            lines = ["(same values: tree membership changed)"]
        if row.branch and row.parent is not None:  # a branch always names its parent (projections.audit)
            lines.insert(0, f"branch from #{numbers.get(row.parent, '?')} ({row.parent})")
        rec = row.version
        by = f"{row.function} (execution {row.execution_id})" if row.origin == "execution" else row.origin
        change: Any = Lines(lines) if len(lines) > 1 else lines[0]
        table.rows.append((i, rec.position, _when(rec.recorded_at.isoformat()), str(rec.ecs_id), by, change))
    if erasure is not None:
        when = _when(erasure.recorded_at.isoformat()) if erasure.recorded_at is not None else "-"
        reason = f": {erasure.reason}" if erasure.reason else ""
        table.rows.append(("erased", erasure.position, when, "-", "erase", f"personal data erased{reason}"))
    return table


def execution_detail(detail: ExecutionDetail) -> Rows:
    """One execution: function, outcome, timing, each input and output, and a failure's error."""
    if detail.reexecution_of is not None:
        return _reexecution_detail(detail)
    table = Rows(("field", "value"), title=f"execution {detail.execution_id}")
    add = table.rows.append
    add(("function", detail.function))
    add(("outcome", "succeeded" if detail.succeeded else "FAILED"))
    if detail.reused_execution_id is not None:
        add(("cache hit", f"reused the outputs of execution {detail.reused_execution_id}"))
    add(("position", detail.position))
    add(("recorded_at", _when(detail.recorded_at.isoformat()) if detail.recorded_at is not None else "-"))
    add(("duration", duration(detail.duration_ms)))
    add(("isolation", detail.isolation))
    for arg in detail.inputs:
        where = arg.address or (str(arg.ecs_id) if arg.ecs_id else "(plain value)")
        if arg.version is not None:
            v = arg.version
            where += f"  {short_type(v.entity_type)} lineage {v.lineage_id} version {v.version}"
        add((f"input {arg.param_name}", where))
    for out in detail.outputs:
        text = f"{out.semantic}: {out.ecs_id}"
        if out.version is not None:
            text += f"  {short_type(out.version.entity_type)} lineage {out.lineage_id} version {out.version.version}"
        add((f"output {out.output_index if out.output_index is not None else ''}".rstrip(), text))
    if not detail.succeeded:
        add(("error type", str(detail.error_type)))
        add(("error message", str(detail.error_message)))
    # the run record after what went in and out (or wrong): the rows readers scan first stay first
    if detail.arguments is None:
        add(("arguments", "(not recorded)"))
    for argument in detail.arguments or ():  # an ExecutionArgument, not the ExecutionInput above
        if isinstance(argument.value, dict) and list(argument.value) == ["$e"]:  # an entity: the version read
            text = f"entity {argument.address}"
        else:
            text = cell(argument.value)
            if argument.address is not None and argument.address != argument.value:
                text += f"  ({argument.address})"
        if argument.read is not None:
            text += f"  reads {cell(argument.read)}"
        add((f"argument {argument.name}", text))
    _add_run(add, detail.run)
    if not detail.succeeded:
        add(("traceback", Lines(str(detail.traceback).rstrip().splitlines())))
    for r in detail.reexecutions:
        verdict = "matches" if r.matches else f"DIFFERS{f' (raised {r.error_type})' if r.error_type else ''}"
        add(("re-executed", f"{verdict}: {r.reexecution_id} at position {r.position}, {when_text(r.recorded_at)}"
             f"{f' by {r.actor}' if r.actor else ''}"))
    return table


def _add_run(add: Callable[[tuple[str, Any]], None], run: dict[str, Any]) -> None:
    """The run record's rows: which code, who, where, when (``unknown`` for an older record)."""

    def known(name: str) -> Any:
        value = run.get(name)
        return "unknown" if value is None else value

    add(("function_version", known("function_version")))
    where = f"{run['module']}:{run['qualname']}" if run.get("module") and run.get("qualname") else "unknown"
    add(("code", where + (f"  ({run['source_file']})" if run.get("source_file") else "")))
    if run.get("git_commit"):
        add(("git commit", f"{run['git_commit']}{' (uncommitted changes)' if run.get('git_dirty') else ''}"))
    add(("actor", known("actor")))
    add(("host", f"{known('host')} pid {known('pid')}"))
    add(("versions", f"Python {known('python_version')}, entity-ledger {known('ledger_version')}"))
    for name in ("started_at", "finished_at"):
        value = run.get(name)
        add((name, when_text(value if isinstance(value, datetime) or value is None else datetime.fromisoformat(str(value)))))


def _reexecution_detail(detail: ExecutionDetail) -> Rows:
    """An ``execution.reexecuted`` record: which execution, the verdict, each difference."""
    table = Rows(("field", "value"), title=f"re-execution {detail.execution_id}")
    add = table.rows.append
    add(("re-execution of", str(detail.reexecution_of)))
    add(("function", detail.function))
    add(("outcome", "outputs match" if detail.succeeded else "DIFFERS"))
    add(("position", detail.position))
    add(("recorded_at", _when(detail.recorded_at.isoformat()) if detail.recorded_at is not None else "-"))
    add(("duration", duration(detail.duration_ms)))
    _add_run(add, detail.run)
    if detail.error_type:
        add(("raised", detail.error_type))
    for d in detail.differences or ():
        add((f"difference {d.get('path')}", f"recorded {cell(d.get('recorded'))}, now {cell(d.get('now'))}"))
    return table


def _record(obj: Any) -> dict[str, Any]:
    """A dataclass record's fields, shallow (orjson serializes what is inside)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def history_json(rows: Sequence[HistoryRow], erasure: Erasure | None = None) -> dict[str, Any]:
    """``{"lineage_id", "entity_type", "versions": [{"version": {...}, "changes": [...] | null,
    "origin", "execution_id", "function", "parent", "branch"}], "erasure": {...} | null}``."""
    first = rows[0].version
    versions = []
    for row in rows:
        item = _record(row)
        item["changes"] = changes_json(row.changes)
        versions.append(item)
    return {
        "lineage_id": first.lineage_id,
        "entity_type": first.entity_type,
        "versions": versions,
        "erasure": None if erasure is None else _record(erasure),
    }


def execution_json(detail: ExecutionDetail) -> dict[str, Any]:
    """The execution record as ``show <execution_id>`` reads it: every field of ``ExecutionDetail``,
    the run record's fields at the top level (``function_version``, ``actor``, ``host``,
    ``started_at``, ``finished_at``, …: null when unknown), ``arguments`` as
    ``[{"name", "value", "address", "read"}]`` (null when not recorded) and ``reexecutions``."""
    out = dataclasses.asdict(detail)
    run = out.pop("run")
    out.update(run)
    return out


def diff_table(diff: dict[str, tuple[Any, Any]]) -> Rows:
    return Rows(("path", "old", "new"), [(path, old, new) for path, (old, new) in diff.items()])


def diff_json(found: VersionDiff) -> dict[str, Any]:
    """``{"old": {version}, "new": {version}, "changes": [{"path", "old", "new"}]}``."""
    item = _record(found)
    item["changes"] = changes_json(found.changes)
    return item


def as_of_json(found: AsOf, *, position: int | None, at: datetime | None) -> dict[str, Any]:
    """``{"lineage_id", "asked": {"position"} | {"at"}, "version": {...} | null, "data", "versions", "first_position"}``."""
    asked: dict[str, Any] = {"position": position} if at is None else {"at": at}
    return {"lineage_id": found.lineage_id, "asked": asked, **{k: v for k, v in _record(found).items() if k != "lineage_id"}}


def verify_json(report: Any, digest_position: int | None) -> dict[str, Any]:
    """``{"ok", "events_checked", "first_bad_position", "problems", "digest_position", "checkpointed_to", "unchecked_tail"}``."""
    return {
        "ok": bool(report.ok),
        "events_checked": report.events_checked,
        "first_bad_position": report.first_bad_position,
        "problems": list(report.problems),
        "digest_position": digest_position,
        "checkpointed_to": report.checkpointed_to,
        "unchecked_tail": report.unchecked_tail,
    }


def keygen_text(verifier: str, key_path: str, pub_path: str) -> str:
    """What ``keygen`` made: the verifier key text (safe to publish) and where both files are."""
    return f"verifier: {verifier}\nsigning key: {key_path} (keep it away from the store's writers)\nverifier key: {pub_path}"


def inclusion_lines(proof: Any) -> list[str]:
    """An inclusion proof for a terminal: the leaf, its tree and the path, one hash a line."""
    where = f"position {proof.position}, " if proof.position is not None else ""
    return [
        f"record at {where}leaf {proof.leaf_index} of a tree of {proof.size}",
        f"leaf hash: {proof.leaf_hash.hex()}",
        *(f"path[{i}]: {p.hex()}" for i, p in enumerate(proof.path)),
    ]


def consistency_lines(proof: Any) -> list[str]:
    """A consistency proof for a terminal: the two sizes and the path, one hash a line."""
    return [
        f"tree of {proof.old_size} records extended by the tree of {proof.size}",
        *(f"path[{i}]: {p.hex()}" for i, p in enumerate(proof.path)),
    ]
