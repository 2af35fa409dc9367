"""``ledger digest``: print (or save) the log's digest, to be kept outside the store.

A separate module so ``tools/cli.py`` can wire it in with one line::

    app.command("digest")(one_line_errors(digest_command))

Later, ``Ledger.verify(Digest.from_json(saved))`` proves the log still holds
everything up to the digest's position unchanged (a truncated tail is found).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ledger import Ledger

__all__ = ["digest_command"]

DEFAULT_URL = "sqlite:///ledger.db"


def digest_command(
    db: str | None = typer.Option(None, "--db", help="Store URL (default: $LEDGER_URL or sqlite:///ledger.db)."),
    out: Path | None = typer.Option(None, "--out", help="Write the digest JSON to this file instead of stdout."),
) -> None:
    """Print the head position and chained hash of the whole log as JSON.

    Keep the output somewhere the store's writers cannot edit; a later verify
    against it detects a removed tail. Example: ledger digest --db sqlite:///audit.db --out head.json
    """
    with Ledger(db or os.environ.get("LEDGER_URL") or DEFAULT_URL) as led:
        digest = led.digest()
    if out is None:
        typer.echo(digest.to_json())
    else:
        out.write_text(digest.to_json() + "\n")
        typer.echo(f"digest of position {digest.position} written to {out}")
