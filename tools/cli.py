"""The ``ledger`` command: a thin typer/rich layer over the library.

Each command parses options, makes one library call and renders the result; a
``LedgerError`` becomes a one-line message and exit status 1, never a traceback.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from ledger import Ledger
from ledger.errors import LedgerError

app = typer.Typer(
    help="Inspect and audit an entity-ledger store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

DEFAULT_URL = "sqlite:///ledger.db"
DbOption = typer.Option(None, "--db", help="Store URL (default: $LEDGER_URL or sqlite:///ledger.db).")

F = TypeVar("F", bound=Callable[..., Any])


def one_line_errors(fn: F) -> F:
    """Turn library errors into a single line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LedgerError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def open_ledger(db: str | None) -> Ledger:
    return Ledger(db or os.environ.get("LEDGER_URL") or DEFAULT_URL)


def history_table(led: Ledger, lineage_id: Any) -> Table:
    versions = led.registry.history(lineage_id)
    index = led.index
    table = Table(title=f"history of lineage {lineage_id}")
    for col in ("#", "position", "recorded_at", "ecs_id", "previous"):
        table.add_column(col)
    table.add_column("changes")
    prev = None
    for i, v in enumerate(versions, 1):
        rec = index.records[v.ecs_id]
        if prev is None:
            change = "created"
        else:
            diff = led.registry.diff(prev, v.ecs_id)
            change = ", ".join(f"{k}: {a!r} -> {b!r}" if not isinstance(b, dict) and not isinstance(a, dict) else f"{k}: {'added' if a is None else 'removed' if b is None else 'changed'}" for k, (a, b) in diff.items()) or "(moved: tree membership changed)"
        table.add_row(str(i), str(rec.position), rec.recorded_at.isoformat(timespec="milliseconds"), str(v.ecs_id)[:8], str(v.previous_ecs_id)[:8] if v.previous_ecs_id else "-", change)
        prev = v.ecs_id
    return table


def lineage_mermaid(led: Ledger, lineage_id: Any) -> str:
    """Versions of one lineage as a mermaid graph (version edges)."""
    lines = ["graph LR"]
    for rec in led.index.lineages[lineage_id]:
        label = f"{rec.topic.rpartition(':')[2]} v{rec.lineage_index + 1}"
        lines.append(f'  {str(rec.ecs_id)[:8]}["{label}"]')
        if rec.previous_ecs_id is not None:
            lines.append(f"  {str(rec.previous_ecs_id)[:8]} --> {str(rec.ecs_id)[:8]}")
    return "\n".join(lines)


@app.command()
@one_line_errors
def demo(db: str = typer.Option(None, "--db", help="Store URL for the demo (default: a new SQLite file in a temp dir).")) -> None:
    """Fill a fresh embedded ledger with a small school and show history, lineage and a query.

    Example: ledger demo
    """
    url = db or f"sqlite:///{Path(tempfile.mkdtemp(prefix='ledger-demo-')) / 'demo.db'}"
    from tools.demo import build_demo

    result = build_demo(url)
    led = result.ledger
    console.rule(f"[bold]entity-ledger demo[/bold] - {url}")
    for step in result.steps:
        console.print(f"  • {step}")
    console.print(history_table(led, result.featured_lineage))
    console.print("[bold]lineage (mermaid)[/bold]")
    console.print(lineage_mermaid(led, result.featured_lineage), highlight=False)
    report = led.verify()
    console.print(f"[bold]verify:[/bold] {'ok' if report.ok else 'FAILED'} ({report.events_checked} events, hash chains intact)")
    _demo_query(led)
    led.close()


def _demo_query(led: Ledger) -> None:
    rel = led.sql(
        "select split_part(entity_type, ':', 2) as entity_type, count(*) as versions, "
        "count(distinct lineage_id) as lineages from entity_versions group by 1 order by 2 desc"
    )
    table = Table(title="SQL: versions per entity type")
    for col in rel.columns:
        table.add_column(col)
    for row in rel.fetchall():
        table.add_row(*(str(v) for v in row))
    console.print(table)


@app.command()
@one_line_errors
def history(lineage_id: str = typer.Argument(..., help="A lineage id."), db: str | None = DbOption) -> None:
    """Every version of a lineage, oldest first, with what changed.

    Example: ledger history 3f0c...  --db sqlite:///audit.db
    """
    with open_ledger(db) as led:
        console.print(history_table(led, lineage_id.lstrip("@")))


@app.command()
@one_line_errors
def verify(db: str | None = DbOption) -> None:
    """Check every record's hash, its chain link and stream order.

    Example: ledger verify --db sqlite:///audit.db
    """
    with open_ledger(db) as led:
        report = led.verify()
    if report.ok:
        console.print(f"ok: {report.events_checked} events verified")
        return
    for p in report.problems:
        err.print(p, highlight=False)
    raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
