"""The ``ledger`` command: a thin typer/rich layer over the library.

Each command parses options, makes one library call and renders the result
(``ledger.cli.render``). A ``LedgerError`` (bad id, address or URL), a SQL error
or an I/O error becomes a one-line message and exit status 1, never a traceback.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

import ledger.cli.render as render  # not `from ledger.cli import`: the package's __init__ imports us
from ledger.cli.parsing import CLIError, iso_time, log_bound
from ledger.errors import CorruptLogError, DigestError, LedgerError, ProofError
from projections import audit
from projections.stored_reads import StoredReader
from projections.tables import COLUMNS

if TYPE_CHECKING:
    from ledger import Digest, Ledger, VerifyReport
    from ledger.proofs import SigningKey

# Start-up: a reading command (log, show, history) imports neither DuckDB, pyarrow, the
# web stack nor the write side (``from ledger import Ledger`` loads the whole library, see
# ledger/__init__.py). Those imports sit in the commands and helpers that need them;
# tests/test_cli_startup.py checks it.

app = typer.Typer(
    help="Inspect and audit an entity-ledger store. Every command takes --db URL (or $LEDGER_URL).",
    no_args_is_help=True,
    add_completion=True,  # ledger --install-completion / --show-completion
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # subcommands inherit it
)
console = render.OutputConsole()
err = render.OutputConsole(stderr=True)


def package_version() -> str:
    """The installed distribution's version (``entity-ledger``), or "unknown" when run from a bare checkout."""
    try:
        return metadata.version("entity-ledger")
    except metadata.PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ledger (entity-ledger) {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version of entity-ledger and exit.", is_eager=True, callback=_print_version
    ),
) -> None:
    """The options of ``ledger`` itself (the app's help text is the Typer's); only --version for now."""

DEFAULT_URL = "sqlite:///ledger.db"
DbOption = typer.Option(None, "--db", help="Store URL (default: $LEDGER_URL, else sqlite:///ledger.db).")
AnalyticsOption = typer.Option(
    None,
    "--analytics",
    help="DuckDB file that keeps the analytics tables between commands, or 'memory' "
    "(default: $LEDGER_ANALYTICS, else <store file>.analytics.duckdb beside a SQLite store; "
    "in memory for other stores).",
)
IN_MEMORY = ("memory", ":memory:")

F = TypeVar("F", bound=Callable[..., Any])


class Direction(str, Enum):
    up = "up"
    down = "down"
    both = "both"


class GraphFormat(str, Enum):
    mermaid = "mermaid"
    dot = "dot"
    json = "json"


class RowFormat(str, Enum):
    table = "table"
    tsv = "tsv"
    csv = "csv"
    json = "json"


class TextFormat(str, Enum):
    text = "text"
    json = "json"


def row_format_option(shape: str) -> Any:
    return typer.Option(
        RowFormat.table,
        "--format",
        "-f",
        help="table (in a terminal: wraps, never cuts; piped: tab-separated, one row per line), "
        f"tsv, csv, or json ({shape}).",
    )


def text_format_option(shape: str) -> Any:
    return typer.Option(TextFormat.text, "--format", "-f", help=f"text, or json (only JSON on stdout: {shape}).")


def print_json(value: Any) -> None:
    """Only JSON on stdout, uncoloured, whatever the terminal: ``| jq`` must work."""
    typer.echo(value if isinstance(value, str) else render.to_json(value))


def print_rows(fmt: RowFormat, table: render.Rows, json_value: Callable[[], Any]) -> None:
    """A table in the chosen format; JSON, CSV and TSV keep exact values."""
    if fmt is RowFormat.json:
        print_json(json_value())
    elif fmt is RowFormat.csv:
        typer.echo(render.rows_as_csv(table.columns, table.rows), nl=False)
    elif fmt is RowFormat.tsv:
        typer.echo(table.tsv(), nl=False)
    else:
        console.print(table)


def one_line_errors(fn: F) -> F:
    """Turn expected failures into a single line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _expected_errors() as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _expected_errors() -> tuple[type[Exception], ...]:
    """The failures a command reports in one line; DuckDB's error class only when the command
    loaded DuckDB (asked when an exception is raised: nothing else can raise one)."""
    duckdb = sys.modules.get("duckdb")
    return (LedgerError, OSError) if duckdb is None else (LedgerError, OSError, duckdb.Error)


def store_url(db: str | None) -> str:
    """The store the command names: ``--db``, else ``$LEDGER_URL``, else the default file."""
    return db or os.environ.get("LEDGER_URL") or DEFAULT_URL


def open_ledger(db: str | None, *, create: bool = False, analytics: str | None = None) -> Ledger:
    """Open an existing ledger; by default nothing is created or written in the store.

    A missing, empty or foreign store is a ``StoreNotFoundError`` and a record
    replay cannot decode a ``CorruptLogError``: one line each, like every
    ``LedgerError``. Only ``demo`` fills a store, and it opens its own.

    The analytics tables (``sql``, ``lineage``, ``export``, ``replay``) live
    where ``analytics_file`` says; the other commands never open them, so they
    create no file at all.
    """
    from ledger import Ledger

    url = store_url(db)
    path, fallback = analytics_file(url, analytics)
    return Ledger(url, create=create, analytics_path=path, analytics_fallback=fallback)


def analytics_file(url: str, choice: str | None) -> tuple[str | None, bool]:
    """Where a command keeps the analytics tables: (a DuckDB file, or None for memory; may it fall back to memory).

    ``--analytics`` or ``$LEDGER_ANALYTICS`` name a file (or ``memory``), which
    must then be usable: otherwise the command fails in one line. Without
    either, a SQLite store gets ``<file>.analytics.duckdb`` beside it, so the
    next command resumes instead of reading the whole log again; that default
    is a convenience, and when it cannot be used (another command holds it, the
    directory is read-only, the path is a symbolic link) the tables are built
    in memory with a one-line warning. Other stores keep them in memory.
    """
    from projections import cache_file  # DuckDB: only the commands that keep analytics tables

    named = choice or os.environ.get("LEDGER_ANALYTICS") or None
    if named is not None:
        return (None if named.strip().lower() in IN_MEMORY else named), False
    default = cache_file.beside_store(url)
    return (None if default is None else str(default)), True


def open_reader(db: str | None, *, analytics: str | None = None, with_analytics: bool = False) -> Any:
    """A reader for ``log``, ``show``, ``history``, ``as-of``, ``diff`` and, ``with_analytics``,
    ``sql``, ``lineage`` and ``export``, opened without writing to the store.

    Where the store's version index covers the log, it reads only the records a
    command shows (``projections.stored_reads``): a few queries whatever the log's
    length. Otherwise (an index that lags, a store written before it existed) it
    replays the log, as ``open_ledger`` does; the next writable open builds the index.
    """
    url = store_url(db)
    path, fallback = analytics_file(url, analytics) if with_analytics else (None, False)
    reader = StoredReader.open(url, analytics_path=path, analytics_fallback=fallback)
    if reader is not None:
        return reader
    from ledger import Ledger  # the fallback replays the log: the whole library

    return Ledger(url, create=False, analytics_path=path, analytics_fallback=fallback)


# ------------------------------------------------------------------ reading
@app.command()
@one_line_errors
def log(
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many events to show (newest last)."),
    type_: str | None = typer.Option(
        None, "--type", help="Only events of this type, or type prefix (entity.version, execution, execution.failed)."
    ),
    function: str | None = typer.Option(
        None, "--function", help="Only executions of functions matching this glob (school.compute_gpa, 'school.*')."
    ),
    since: str | None = typer.Option(None, "--since", help="Only events at or after this log position or ISO time."),
    until: str | None = typer.Option(None, "--until", help="Only events at or before this log position or ISO time."),
    entity: str | None = typer.Option(
        None, "--entity", help="Only this lineage's events and the executions that read or wrote it (an id or prefix)."
    ),
    fmt: RowFormat = row_format_option('[{"position", "event", "recorded_at", "id", "payload"}], the payload as stored'),
    db: str | None = DbOption,
) -> None:
    """The most recent events, oldest first, optionally filtered.

    Example: ledger log --limit 5 --type execution --function 'school.*' --since 2026-01-31T12:00
    """
    bounds = {"since": log_bound(since, "--since"), "until": log_bound(until, "--until")}
    with open_reader(db) as led:
        lineage_id = None
        if entity is not None:
            lineage_id = audit.lineage_of(led, entity, "--entity")
        entries = audit.recent_events(led, limit=limit, event_type=type_, function=function, lineage=lineage_id, **bounds)
    if not entries and fmt is RowFormat.table:
        err.print("no events match", highlight=False)
        return
    print_rows(fmt, render.log_table(entries), lambda: render.log_json(entries))


@app.command()
@one_line_errors
def show(
    address: str = typer.Argument(
        ..., help="@<id>[.path]: an ecs_id, lineage id or execution id (or 8+ leading hex digits of one), then a path."
    ),
    fmt: TextFormat = text_format_option(
        '{"version": {"entity_type", "ecs_id", "lineage_id", "version", "position", "recorded_at"}, "value"}; '
        'for an execution: {"execution_id", "function", "succeeded", "inputs", "outputs", "duration_ms", ...}'
    ),
    db: str | None = DbOption,
) -> None:
    """A stored entity (with its children), the value at an address, or an execution, as stored.

    Needs no entity classes: it shows the stored data. A lineage id shows its latest version;
    an execution id shows its function, inputs, outputs, and for a failure the error and traceback.

    Example: ledger show @3f0c2a9e.transcript.grades.0
    """
    with open_reader(db) as led:
        parsed = audit.resolve_address(led, address, "address")
        # an execution id is also the lineage of its FunctionExecution entity: the execution wins
        detail = audit.execution(led, parsed.uuid) if not parsed.path else None
        if detail is not None:
            if fmt is TextFormat.json:
                print_json(render.execution_json(detail))
            else:
                console.print(render.execution_detail(detail))
            return
        found = audit.show(led, parsed)
    if fmt is TextFormat.json:
        print_json(found)
        return
    rec = found.version
    console.print(
        f"[bold]{render.short_type(rec.entity_type)}[/bold] ecs_id {rec.ecs_id} lineage {rec.lineage_id} "
        f"version {rec.version} position {rec.position} "
        f"recorded {rec.recorded_at.isoformat(timespec='microseconds')}",
        highlight=False,
    )
    value, gone = render.split_erased(found.value)
    if gone:
        erased = found.erased
        where = f" at position {erased.position}" if erased is not None else ""
        why = f" ({erased.reason})" if erased is not None and erased.reason else ""
        console.print(f"personal data erased{where}{why}: {', '.join(gone)} (values gone)", highlight=False)
    console.print_json(render.to_json(value))


@app.command()
@one_line_errors
def history(
    lineage_id: str = typer.Argument(..., help="A lineage id or any ecs_id of it (or 8+ leading hex digits)."),
    fmt: RowFormat = row_format_option(
        '{"lineage_id", "entity_type", "versions": [{"version": {"ecs_id", "version", "position", "recorded_at", ...}, '
        '"changes": [{"path", "old", "new"}] or null for the first, "origin", "execution_id", "function", "parent", '
        '"branch"}], "erasure": {...} or null}'
    ),
    db: str | None = DbOption,
) -> None:
    """Every version of a lineage, oldest first, with what changed (needs no entity classes).

    Example: ledger history 3f0c2a9e-0d4b-4c38-9a51-2b8f0e6d7b1d --db sqlite:///audit.db
    """
    with open_reader(db) as led:
        rows = audit.history(led, lineage_id, argument="lineage_id")
        erased = audit.erasure(led, rows[0].version.lineage_id)
    print_rows(fmt, render.history_table(rows, erased), lambda: render.history_json(rows, erased))


@app.command("as-of")
@one_line_errors
def as_of(
    lineage_id: str = typer.Argument(..., help="A lineage id or any ecs_id of it (or 8+ leading hex digits)."),
    position: int | None = typer.Option(None, "--position", "-p", min=0, help="A log position (from `ledger log`)."),
    at: str | None = typer.Option(None, "--at", help="An ISO time; without a zone it is read as UTC."),
    fmt: TextFormat = text_format_option(
        '{"lineage_id", "asked": {"position"} or {"at"}, "version": {...} or null, "data", "versions", "first_position"}'
    ),
    db: str | None = DbOption,
) -> None:
    """The version of a lineage that was current at a log position or a time.

    Example: ledger as-of 3f0c2a9e-0d4b-4c38-9a51-2b8f0e6d7b1d --position 40
    """
    if (position is None) == (at is None):
        raise CLIError("as-of: give exactly one of --position or --at")
    when: datetime | None = None
    if at is not None:
        when = iso_time(at, "--at")
    with open_reader(db) as led:
        lineage = audit.lineage_of(led, lineage_id, "lineage_id")  # any ecs_id of it names it too
        found = audit.as_of(led, lineage, position=position, at=when, argument="lineage_id")
    uuid = found.lineage_id
    if fmt is TextFormat.json:
        print_json(render.as_of_json(found, position=position, at=when))
        return
    point = f"position {position}" if when is None else when.isoformat()
    rec = found.version
    if rec is None:
        console.print(f"lineage {uuid} did not exist yet at {point} (first recorded at position {found.first_position})")
        return
    console.print(
        f"as of {point}: version {rec.version} of {found.versions}, ecs_id {rec.ecs_id} (position {rec.position})",
        highlight=False,
    )
    console.print_json(render.to_json(found.data))


@app.command()
@one_line_errors
def diff(
    ecs_id_a: str = typer.Argument(..., help="The older version's ecs_id, or a lineage id for its latest version (or 8+ leading hex digits)."),
    ecs_id_b: str = typer.Argument(..., help="The newer version's ecs_id, or a lineage id for its latest version (or 8+ leading hex digits)."),
    fmt: RowFormat = row_format_option('{"old": {version}, "new": {version}, "changes": [{"path", "old", "new"}]}'),
    db: str | None = DbOption,
) -> None:
    """Field-level changes between two stored versions, children included.

    Example: ledger diff 0b1e...  9c4f...
    """
    with open_reader(db) as led:
        found = audit.diff(led, ecs_id_a, ecs_id_b)
    if fmt is RowFormat.table and console.is_terminal:  # piped, the output is only the rows
        console.print(f"{len(found.changes)} change(s) from {found.old.ecs_id} to {found.new.ecs_id}", highlight=False)
    print_rows(fmt, render.diff_table(found.changes), lambda: render.diff_json(found))


@app.command()
@one_line_errors
def lineage(
    ref: str = typer.Argument(..., help="An ecs_id, lineage id or execution id (or 8+ leading hex digits of one)."),
    fmt: GraphFormat = typer.Option(GraphFormat.mermaid, "--format", "-f", help="mermaid, dot or json."),
    direction: Direction = typer.Option(Direction.both, "--direction", help="up (what it came from), down (what came from it) or both."),
    depth: int | None = typer.Option(None, "--depth", min=0, help="At most this many edges away."),
    position: int | None = typer.Option(None, "--position", min=0, help="The graph as it was at this log position."),
    db: str | None = DbOption,
    analytics: str | None = AnalyticsOption,
) -> None:
    """The derivation graph around an entity: versions, executions, detach/attach.

    Example: ledger lineage 3f0c2a9e-0d4b-4c38-9a51-2b8f0e6d7b1d --format dot --direction up --depth 2
    """
    names = {Direction.up: "upstream", Direction.down: "downstream", Direction.both: "both"}
    with open_reader(db, analytics=analytics, with_analytics=True) as led:
        uuid = audit.resolve_id(led, ref, "ref")
        graph = led.lineage_graph(str(uuid), direction=names[direction], depth=depth, position=position)
    if fmt is GraphFormat.json:
        print_json(graph.to_json())
    else:
        text = graph.to_mermaid() if fmt is GraphFormat.mermaid else graph.to_dot()
        console.print(text, highlight=False, markup=False, soft_wrap=True)


def _sql_help() -> str:
    """``ledger sql --help``: the command, then every documented table with its columns (from ``projections.tables``)."""
    tables = "\n".join(
        f"{name}: {', '.join(f'{col} {kind}' for col, kind in cols)}" for name, cols in COLUMNS.items()
    )
    return (
        "Read-only SQL (DuckDB) over the analytics tables; prints the first --limit rows and how many there are.\n\n"
        "QUERY is one SELECT statement, or - to read it from stdin. Each --param fills the next ? "
        "placeholder, as a string (DuckDB casts it where the column is typed); --params-json gives "
        "all of them typed, as a JSON array. --limit applies to every --format, json and csv included.\n\n"
        "The tables are kept in a DuckDB file beside a SQLite store (see --analytics), so a second "
        "query only applies what was appended since the first. SHOW TABLES lists them:\n\n"
        f"{tables}\n\n"
        "Example: ledger sql \"select function_name, count(*), avg(duration_ms) from executions "
        "where function_name like ? group by 1\" --param 'school.%'"
    )


def _sql_params(param: list[str] | None, params_json: str | None) -> list[Any] | None:
    """The values for the query's ``?`` placeholders: --param strings, or --params-json's typed array."""
    if param and params_json is not None:
        raise CLIError("sql: give --param or --params-json, not both")
    if params_json is not None:
        try:
            values = json.loads(params_json)
        except ValueError as exc:
            raise CLIError(f"--params-json: not JSON ({exc})") from None
        if not isinstance(values, list):
            raise CLIError(f"--params-json: expected a JSON array of values, got {type(values).__name__}")
        return values
    return list(param) if param else None


@app.command(help=_sql_help())
@one_line_errors
def sql(
    query: str = typer.Argument(..., help="One read-only SELECT (DuckDB), or - to read it from stdin."),
    fmt: RowFormat = row_format_option("a list of row objects"),
    limit: int = typer.Option(
        100, "--limit", "-n", min=0, help="Print at most this many rows, in every format (0: all of them)."
    ),
    param: list[str] | None = typer.Option(
        None, "--param", "-p", help="A value for the next ? in the query, passed as a string (repeat for each ?)."
    ),
    params_json: str | None = typer.Option(
        None, "--params-json", help="All the ? values as a JSON array, typed (e.g. '[3, \"school.enroll\", true]')."
    ),
    db: str | None = DbOption,
    analytics: str | None = AnalyticsOption,
) -> None:
    """(The help text is ``_sql_help()``: it lists the tables from their definitions, so it cannot drift.)"""
    if query == "-":
        query = sys.stdin.read()
    import duckdb

    from projections.readonly import one_line

    values = _sql_params(param, params_json)
    with open_reader(db, analytics=analytics, with_analytics=True) as led:
        try:
            page = led.analytics.page(query, values, limit or None)
        except duckdb.Error as exc:  # DuckDB's hint ("Did you mean ...?") is on a later line: keep it
            raise CLIError(one_line(exc)) from None
    columns, rows = page.columns, page.rows
    print_rows(fmt, render.rows_table(columns, rows), lambda: render.rows_as_json(columns, rows))
    if page.total > len(rows):  # on stderr: stdout holds only the rows, in every format
        err.print(f"{len(rows):,} of {page.total:,} rows; --limit N or --limit 0 for all", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- integrity
@app.command()
@one_line_errors
def verify(
    db: str | None = DbOption,
    digest: Path | None = typer.Option(
        None, "--digest", help="A digest saved earlier by `ledger digest --out`: also detect a removed tail."
    ),
    fmt: TextFormat = text_format_option(
        '{"ok", "events_checked", "first_bad_position", "problems": [...], "digest_position"}; exit 1 unless ok'
    ),
    head: Path | None = typer.Option(
        None, "--head", help="A signed tree head saved earlier by `ledger head`: fail unless the log extends it (needs --verifier)."
    ),
    verifier: Path | None = typer.Option(None, "--verifier", help="The log's verifier key file (`ledger keygen` wrote it as PATH.pub)."),
) -> None:
    """Check every record's hash, its chain link and stream order; exit 1 on any problem.

    Example: ledger verify --db sqlite:///audit.db --digest head.json
    Example: ledger verify --head head.note --verifier audit.pub
    """
    from ledger import Digest

    saved = None
    if digest is not None:
        try:
            saved = Digest.from_json(digest.read_text())
        except OSError as exc:
            raise DigestError(f"digest: cannot read {str(digest)!r}: {exc.strerror}") from None
    kept = None
    if head is not None or verifier is not None:
        if head is None or verifier is None:
            raise ProofError("--head and --verifier go together: the head's signature is checked with the verifier key")
        from ledger.proofs import TreeHead, VerifierKey  # cryptography: only where a head is checked

        kept = TreeHead.from_note(read_text(head, "head"), VerifierKey.load(verifier))
    try:
        with open_ledger(db) as led:
            report = led.verify(saved, head=kept)
    except CorruptLogError as exc:
        if kept is not None:
            raise

        report = verify_unopenable(store_url(db), saved, exc)
    if fmt is TextFormat.json:
        print_json(render.verify_json(report, None if saved is None else saved.position))
        if not report.ok:
            raise typer.Exit(1)
        return
    if report.ok:
        against = f" against the digest of position {saved.position}" if saved is not None else ""
        against += f" and extending the signed head of {kept.size} records" if kept is not None else ""
        console.print(f"ok: {report.events_checked} events verified{against}")
        if report.checkpointed_to is not None:
            console.print(
                f"checkpoints chain the log up to position {report.checkpointed_to}; "
                f"{report.unchecked_tail} records after it rest on their stream chains (and a digest)"
            )
        return
    if kept is not None:  # a check against a kept head answers in one line (issue 24): the head's problem first
        about_head = [p for p in report.problems if "head kept earlier" in p or "the head is of log" in p]
        line = (about_head or report.problems)[0]
        more = len(report.problems) - 1
        err.print(f"FAILED: {line}" + (f" (and {more} more: ledger verify without --head lists them)" if more else ""), highlight=False)
        raise typer.Exit(1)
    for p in report.problems:
        err.print(p, highlight=False)
    if report.first_bad_position is None:  # only rows that name no position (the key table)
        err.print(f"FAILED: {len(report.problems)} problems", highlight=False)
    else:
        err.print(f"FAILED: first bad position {report.first_bad_position}", highlight=False)
    raise typer.Exit(1)


def verify_unopenable(url: str, saved: Digest | None, opening: CorruptLogError) -> VerifyReport:
    """Verify a store whose log cannot be replayed: the check needs no index, only records.

    When the walk finds nothing, the record that stopped replay becomes the
    problem: a store that cannot be opened never verifies as ok.
    """
    try:
        report = audit.verify_url(url, saved)
    except LedgerError:
        raise
    except Exception as exc:  # the integrity walk met a record it could not read either
        raise CorruptLogError(f"{opening}; verify could not read the log either ({type(exc).__name__}: {exc})") from None
    if report.ok:
        report.ok = False
        report.problems.append(str(opening))
        report.first_bad_position = opening.position
    return report


@app.command("digest")
@one_line_errors
def digest_command(
    db: str | None = DbOption,
    out: Path | None = typer.Option(None, "--out", help="Write the digest JSON to this file instead of stdout."),
) -> None:
    """Print the head position and chained hash of the whole log as JSON.

    Keep it where the store's writers cannot edit it; `ledger verify --digest FILE`
    later proves the log still holds everything up to that position, unchanged.

    Example: ledger digest --db sqlite:///audit.db --out head.json
    """
    with open_ledger(db) as led:
        digest = led.digest()
    if out is None:
        typer.echo(digest.to_json())
    else:
        out.write_text(digest.to_json() + "\n")
        console.print(f"digest of position {digest.position} written to {out}")


# ------------------------------------------------------------ signed tree heads and proofs
#: The environment variable ``ledger head`` and ``ledger cosign`` read a signing key from (its text).
SIGNING_KEY_ENV = "LEDGER_SIGNING_KEY"


def read_text(path: Path, argument: str) -> str:
    """A small file's text; an unreadable one is a ``ProofError`` naming the argument."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProofError(f"{argument}: cannot read {str(path)!r} ({type(exc).__name__})") from None


def signing_key(path: Path | None) -> SigningKey:
    """The key of ``--key FILE``, else of ``$LEDGER_SIGNING_KEY`` (the key's text)."""
    from ledger.proofs import SigningKey  # cryptography: only the commands that sign

    if path is not None:
        return SigningKey.load(path)
    text = os.environ.get(SIGNING_KEY_ENV)
    if not text:
        raise ProofError(f"key: give --key FILE or set {SIGNING_KEY_ENV} to the key's text (`ledger keygen` writes one)")
    return SigningKey.from_text(text)


@app.command()
@one_line_errors
def keygen(
    name: str = typer.Argument(..., help="The key's name, e.g. the log's host name: no spaces, no '+'."),
    out: Path = typer.Option(..., "--out", help="Writes PATH.key (signing, mode 0600) and PATH.pub (verifier)."),
) -> None:
    """Make an Ed25519 signing key for tree heads (C2SP signed-note format).

    Keep PATH.key away from the store's writers (or in a KMS); hand PATH.pub to whoever verifies.

    Example: ledger keygen audit.example --out audit
    """
    from ledger.proofs import SigningKey

    key = SigningKey.generate(name)
    key_path, pub_path = Path(f"{out}.key"), Path(f"{out}.pub")
    if pub_path.exists():
        raise ProofError(f"out: {str(pub_path)!r} exists; a key is never overwritten")
    key.save(key_path)
    key.verifier.save(pub_path)
    console.print(render.keygen_text(str(key.verifier), str(key_path), str(pub_path)), highlight=False, soft_wrap=True)


@app.command()
@one_line_errors
def head(
    db: str | None = DbOption,
    key: Path | None = typer.Option(None, "--key", help=f"Signing key file (default: the key text in ${SIGNING_KEY_ENV})."),
    out: Path | None = typer.Option(None, "--out", help="Write the signed note to this file instead of stdout."),
) -> None:
    """Print the log's current tree head as a signed note (C2SP checkpoint).

    Keep it outside the store; `ledger verify --head FILE --verifier PUB` later fails if the log
    no longer extends it.

    Example: ledger head --db sqlite:///audit.db --key audit.key --out head.note
    """
    signer = signing_key(key)
    with open_ledger(db) as led:
        note = led.tree_head().sign(signer)
    if out is None:
        typer.echo(note, nl=False)
    else:
        out.write_text(note)
        console.print(f"signed head written to {out}")


@app.command()
@one_line_errors
def prove(
    position: int | None = typer.Argument(None, help="The record's log position (an inclusion proof)."),
    db: str | None = DbOption,
    size: int | None = typer.Option(None, "--size", help="The tree size to prove against (default: the whole log)."),
    from_size: int | None = typer.Option(None, "--from-size", help="Instead: a consistency proof from this tree size to --size."),
    fmt: TextFormat = text_format_option('{"leaf_index", "leaf_hash", "path", "size", "position"} (hex); with --from-size {"old_size", "size", "path"}'),
) -> None:
    """Print a Merkle proof: a record's inclusion in the tree, or one tree's consistency with a later one.

    Example: ledger prove 42 --format json > record42.proof
    Example: ledger prove --from-size 1000 --format json > since1000.proof
    """
    if (position is None) == (from_size is None):
        raise ProofError("position: give a POSITION (inclusion proof) or --from-size N (consistency proof), not both")
    with open_ledger(db) as led:
        if position is not None:
            inclusion = led.prove_inclusion(position, size)
            text, lines = inclusion.to_json(), render.inclusion_lines(inclusion)
        else:
            assert from_size is not None
            consistency = led.prove_consistency(from_size, size)
            text, lines = consistency.to_json(), render.consistency_lines(consistency)
    if fmt is TextFormat.json:
        typer.echo(text)
    else:
        for line in lines:
            console.print(line, highlight=False, soft_wrap=True)


@app.command()
@one_line_errors
def cosign(
    note: Path = typer.Argument(..., help="The log's signed note to cosign (`ledger head --out`)."),
    key: Path | None = typer.Option(None, "--key", help=f"The witness's signing key file (default: ${SIGNING_KEY_ENV})."),
    state: Path = typer.Option(..., "--state", help="The witness's directory: the last head it cosigned, per origin."),
    verifier: Path = typer.Option(..., "--verifier", help="The log's verifier key: only heads the log signed are cosigned."),
    proof: Path | None = typer.Option(None, "--proof", help="The consistency proof from the last cosigned head (`ledger prove --from-size`); default: asked of --db."),
    db: str | None = DbOption,
) -> None:
    """Witness a head: cosign it only if it extends the last head this witness cosigned for its log.

    The first head of a log is cosigned as it is (trust on first use); every later one needs a
    consistency proof, from --proof FILE or, without it, from the ledger at --db / $LEDGER_URL.
    A fork (or a head older than the last one) is refused with exit 1. Prints the cosigned note.

    Example: ledger cosign head.note --key witness.key --verifier audit.pub --state witness/
    """
    from ledger.proofs import ConsistencyProof, TreeHead, VerifierKey, cosign_note, verify_consistency

    text = read_text(note, "note")
    new = TreeHead.from_note(text, VerifierKey.load(verifier))
    witness = signing_key(key)
    state.mkdir(parents=True, exist_ok=True)
    kept = state / f"{hashlib.sha256(new.origin.encode()).hexdigest()[:32]}.note"
    if kept.exists():
        old = TreeHead.from_note(read_text(kept, "state"), VerifierKey.load(verifier))
        if old.size > new.size:
            raise ProofError(f"note: the head has {new.size} records, fewer than the {old.size} this witness cosigned: refused")
        if proof is not None:
            found = ConsistencyProof.from_json(read_text(proof, "proof"))
        else:
            with open_ledger(db) as led:
                found = led.prove_consistency(old.size, new.size)
        verify_consistency(found, old, new)
    cosigned = cosign_note(text, witness)
    temporary = kept.with_suffix(".tmp")
    temporary.write_text(cosigned)
    os.replace(temporary, kept)
    typer.echo(cosigned, nl=False)


@app.command()
@one_line_errors
def erase(
    lineage_id: str = typer.Argument(..., help="The lineage whose personal data to erase (an id, any ecs_id of it, or 8+ hex digits)."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the entity.erased record: a request number, a policy)."),
    fmt: TextFormat = text_format_option('{"lineage_id", "position", "versions", "key_destroyed", "already_erased", "reason"}'),
    db: str | None = DbOption,
) -> None:
    """Erase a lineage's personal data for good: append entity.erased and destroy its key.

    Fields marked Personal read <erased> everywhere afterwards; the other fields stay.
    key_destroyed says whether no copy of the key is left in the store's files.

    Example: ledger erase 3f0c2a9e --reason "request 1234"
    """
    if not reason.strip():
        raise CLIError("--reason: say why the data is erased (it is kept in the log)")
    with open_ledger(db) as led:
        lineage = audit.lineage_of(led, lineage_id, "lineage_id")
        done = led.erase(lineage, reason=reason)
    if fmt is TextFormat.json:
        print_json(
            {
                "lineage_id": done.lineage_id,
                "position": done.position,
                "versions": done.versions,
                "key_destroyed": done.key_destroyed,
                "already_erased": done.already_erased,
                "reason": reason,
            }
        )
        return
    state = "already erased" if done.already_erased else f"erased at position {done.position}"
    key = "key destroyed" if done.key_destroyed else "key row gone, a copy may remain until the next writable open"
    console.print(f"lineage {done.lineage_id}: {state} ({done.versions} versions; {key})", highlight=False, soft_wrap=True)


# ------------------------------------------------------------ re-execution
def import_functions(names: list[str]) -> None:
    """Import the modules (``pkg.module``, or a ``path/to/file.py``) that register the functions to run.

    A registered function belongs to the process that registered it, so this command can
    run only what these imports register. The current directory is searched first, as
    ``python -m`` does. Entity classes are found by their import path, so they must be
    importable under the name they had when the execution was recorded (not ``__main__``).
    """
    import importlib
    import importlib.util

    if names and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            if name.endswith(".py"):
                path = Path(name)
                spec = importlib.util.spec_from_file_location(path.stem, path)
                if spec is None or spec.loader is None or not path.is_file():
                    raise CLIError(f"--import {name}: no such Python file")
                module = importlib.util.module_from_spec(spec)
                sys.modules[path.stem] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(name)
        except CLIError:
            raise
        except Exception as exc:  # the user's code: whatever it raised, one line
            raise CLIError(f"--import {name}: {type(exc).__name__}: {exc}") from None


@app.command()
@one_line_errors
def reexecute(
    execution_id: str = typer.Argument(..., help="The execution to run again (its id, or 8+ leading hex digits of it)."),
    imports: list[str] = typer.Option(
        [], "--import", "-i", help="A module (pkg.module) or file (path/to/file.py) that registers the function; repeatable."
    ),
    fmt: TextFormat = text_format_option('{"execution_id", "reexecution_id", "function", "matches", "position", "differences": [{"path", "recorded", "now"}]}'),
    db: str | None = DbOption,
) -> None:
    """Run a recorded execution again on exactly its recorded inputs and compare its outputs.

    The function is found where the run record says it lives (its module and qualname),
    or registered by the modules given with --import. A failed execution matches when it
    raises the same error again. Outputs are compared by domain value (floats exactly); one
    execution.reexecuted event records the verdict, no entity version is written.
    Exit status 0 when the outputs match, 1 with the differences.

    Example: ledger reexecute 3f0c2a9e --import school.pipeline --db sqlite:///audit.db
    """
    import_functions(imports)
    with open_ledger(db) as led:
        uuid = audit.resolve_id(led, execution_id, "execution_id")
        found = audit.execution_record(led, uuid)
        if found is not None:
            from ledger import CallableRegistry

            if "" not in sys.path and os.getcwd() not in sys.path:  # as `python -c` would: modules beside the caller
                sys.path.insert(0, os.getcwd())
            CallableRegistry.register_from_record(found[2])
        result = led.reexecute(uuid)
    if fmt is TextFormat.json:
        print_json(
            {
                "execution_id": result.execution_id,
                "reexecution_id": result.reexecution_id,
                "function": result.function_name,
                "matches": result.matches,
                "position": result.position,
                "error_type": result.error_type,
                "differences": [{"path": p, "recorded": r, "now": n} for p, (r, n) in result.differences.items()],
            }
        )
    elif result.matches:
        console.print(
            f"execution {result.execution_id} ({result.function_name}): outputs match "
            f"(re-execution {result.reexecution_id} at position {result.position})",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(render.reexecution_table(result))
        err.print(
            f"execution {result.execution_id} ({result.function_name}): outputs DIFFER "
            f"(re-execution {result.reexecution_id} at position {result.position})",
            highlight=False,
            soft_wrap=True,
        )
    if not result.matches:
        raise typer.Exit(1)


# -------------------------------------------------------------- projections
@app.command()
@one_line_errors
def replay(db: str | None = DbOption, analytics: str | None = AnalyticsOption) -> None:
    """Rebuild the analytics projections from the whole log, with a progress bar, then check
    the store's version index against the rows a rebuild from the log gives (exit 1 if they differ).

    Example: ledger replay --db sqlite:///audit.db
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with open_ledger(db, analytics=analytics) as led:
        projection = led.analytics
        columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=True) as bar:  # progress is not output
            task = bar.add_task("replay", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            start = time.perf_counter()
            count = projection.rebuild(progress=progress)
            seconds = time.perf_counter() - start
        check = audit.check_index(led)
    rate = count / seconds if seconds > 0 else float("inf")
    console.print(f"replayed {count} events in {render.duration(seconds * 1000)} ({rate:,.0f} events/s)")
    if check is None:
        return
    if not check.ok:
        for kind, rows in (("missing", check.missing), ("unexpected", check.extra)):
            for row in rows[:10]:
                where = f"version {row[1]} in the tree of {row[2]}" if row[0] == "tree" else (
                    f"at position {row[-1]}: {', '.join(map(str, row[1:-1]))}"
                )
                err.print(f"version index: {kind} {row[0]} row {where}", soft_wrap=True)
        err.print(
            f"error: the stored version index differs from a rebuild from the log "
            f"({len(check.missing)} missing, {len(check.extra)} unexpected rows)",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    console.print(
        f"version index: {check.rows} rows up to position {check.tracked} of {check.head}, equal to a rebuild from the log"
    )


@app.command()
@one_line_errors
def export(
    parquet: Path | None = typer.Option(None, "--parquet", help="Directory for the Parquet files (created if missing)."),
    openlineage: Path | None = typer.Option(
        None, "--openlineage", help="Write every execution as OpenLineage RunEvents (NDJSON, spec 2-0-2) to this file."
    ),
    since: str | None = typer.Option(
        None, "--since", help="With --openlineage: only executions recorded at or after this log position or ISO time."
    ),
    db: str | None = DbOption,
    analytics: str | None = AnalyticsOption,
) -> None:
    """Write every analytics table to DIR/<table>.parquet, or the executions as OpenLineage events.

    --openlineage FILE writes, per execution, a START and a COMPLETE or FAIL RunEvent, one JSON
    object per line; the last line printed says which --since continues the file's history.
    Post them to Marquez with: while read -r e; do curl -s -H 'Content-Type: application/json'
    -d "$e" http://localhost:5000/api/v1/lineage; done < FILE

    Example: ledger export --parquet ./audit-parquet

    Example: ledger export --openlineage runs.ndjson --since 120
    """
    if parquet is None and openlineage is None:
        raise CLIError("export: give --parquet DIR, --openlineage FILE, or both")
    if since is not None and openlineage is None:
        raise CLIError("export: --since applies to --openlineage")
    from projections.openlineage import export_openlineage

    bound = log_bound(since, "--since")
    with open_reader(db, analytics=analytics, with_analytics=True) as led:
        paths = led.analytics.export_parquet(parquet) if parquet is not None else []
        done = None
        if openlineage is not None:
            done = export_openlineage(led.analytics, store_url(db), openlineage, since=bound, open_payload=led.open_payload)
    for path in paths:
        console.print(str(path), highlight=False, soft_wrap=True)
    if done is not None:
        last = "" if done.last_position is None else f", up to position {done.last_position} (next: --since {done.last_position + 1})"
        console.print(
            f"{done.path}: {done.events} OpenLineage events for {done.executions} executions{last}",
            highlight=False,
            soft_wrap=True,
        )


# ----------------------------------------------------------------------- ui
@app.command()
@one_line_errors
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this machine only)."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port to listen on."),
    db: str | None = DbOption,
    analytics: str | None = AnalyticsOption,
) -> None:
    """A read-only web page over the store: the log, lineages with their graph drawn, executions,
    entities and SQL. Serves until interrupted (Ctrl-C); nothing it does writes to the store.

    Example: ledger demo && ledger ui   (then open http://127.0.0.1:8765/)
    """
    from ledger.cli.ui import serve  # starlette and uvicorn load only for this command

    with open_reader(db, analytics=analytics, with_analytics=True) as led:
        err.print("catching up the analytics tables (lineage graphs, sql)...", highlight=False)
        led.analytics.page("select count(*) from events", None, 1)  # the first page then answers at once
        shown = f"[{host}]" if ":" in host else host
        console.print(f"serving {store_url(db)} read-only on http://{shown}:{port}/ (Ctrl-C to stop)", highlight=False, soft_wrap=True)
        serve(led, host=host, port=port)


# --------------------------------------------------------------------- demo
@app.command()
@one_line_errors
def demo(db: str | None = DbOption) -> None:
    """Fill a new store with a school's grading pipeline; show history, lineage and SQL.

    The store is the one every command reads (--db, else $LEDGER_URL, else
    sqlite:///ledger.db), so `ledger log` right after shows the demo. A store that
    already holds events is refused, and nothing is written to it. The demo's ids
    are seeded: every fresh run prints the same ids (docs/cli.md uses them).

    Example: ledger demo --db sqlite:///demo.db
    """
    url = store_url(db)
    from ledger.cli.demo import build_demo

    result = build_demo(url)
    with result.ledger as led:
        console.rule(f"[bold]entity-ledger demo[/bold]: {url}")
        for step in result.steps:
            console.print(f"  {step}", highlight=False, markup=False, soft_wrap=True)
        console.print(render.history_table(audit.history(led, result.featured_lineage), plain_title=True))
        console.print("[bold]lineage of Alice (mermaid)[/bold]")
        graph = led.lineage_graph(result.featured_lineage, direction="both", depth=2)
        console.print(graph.to_mermaid(), highlight=False, markup=False, soft_wrap=True)
        rel = led.sql(  # no durations: docs/cli.md prints this table and compares it with a real run
            "select function_name, count(*) as calls, count(*) filter (where not succeeded) as failed, "
            "any_value(isolation) as isolation from executions group by 1 order by 1"
        )
        console.print(
            render.rows_table(list(rel.columns), rel.fetchall(), title="SQL: executions per function", plain_title=True)
        )
        report = led.verify()
    console.print(f"[bold]verify:[/bold] {'ok' if report.ok else 'FAILED'} ({report.events_checked} events)")
    again = f" --db {db}" if db else ""  # $LEDGER_URL and the default carry over to the next command
    console.print(f"try: ledger history {result.featured_lineage}{again}", highlight=False, soft_wrap=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
