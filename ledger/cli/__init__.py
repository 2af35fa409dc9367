"""The ``ledger`` command: a thin typer/rich layer over the public library (``ledger.cli.commands``).

Part of the installed library, above the facade in the layering; nothing in
``ledger`` or ``projections`` imports it, so the library itself needs neither
typer nor rich at import time.
"""

from ledger.cli import provenance as _provenance  # noqa: F401  (registers `ledger blame`)
from ledger.cli.commands import app, main

__all__ = ["app", "main"]
