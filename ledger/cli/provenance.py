"""``ledger blame``: where a value came from, registered on the app.

Kept apart from ``ledger.cli.commands``; the package imports this module, which
registers the command. It parses options, makes one library call and renders the
result (``ledger.cli.blame_tree``).
"""

from __future__ import annotations

import typer

from ledger.cli.blame_tree import BlameTree
from ledger.cli.commands import (
    DbOption,
    TextFormat,
    app,
    console,
    one_line_errors,
    open_reader,
    print_json,
    text_format_option,
)
from projections import audit
from projections.provenance import DEFAULT_DEPTH, blame

__all__ = ["blame_command"]


@app.command("blame")
@one_line_errors
def blame_command(
    address: str = typer.Argument(
        ..., help="@<id>.field.path: an ecs_id or lineage id (or 8+ leading hex digits of one), then a path."
    ),
    depth: int = typer.Option(
        DEFAULT_DEPTH, "--depth", "-d", min=0, help="Blame the inputs of the writing execution this many levels down."
    ),
    fmt: TextFormat = text_format_option(
        '{"address", "field", "value", "version", "current", "lineage_id", "entity_type", "position", '
        '"recorded_at", "origin", "execution_id", "function", "param", "truncated", "repeated", "sources": [...]}'
    ),
    db: str | None = DbOption,
) -> None:
    """Where a value came from: the version that first held it, the execution that wrote it
    (or "registered" / "edited by hand"), and the inputs that execution read, each blamed in turn.

    Reads only the versions and execution records it names (no analytics tables).

    Example: ledger blame @3f0c2a9e.transcript.grades.0.score --depth 3
    """
    with open_reader(db) as led:
        parsed = audit.resolve_address(led, address, "address")
        found = blame(led, parsed, depth=depth)
    if fmt is TextFormat.json:
        print_json(found.to_dict())
        return
    console.print(BlameTree(found))
