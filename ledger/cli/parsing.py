"""Parsing of the values a reader types (log bounds, times), shared by the command and the web page.

``ledger log --since`` and the page's ``?since=`` take the same values and give the
same one-line errors, so both parse them here.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ledger.errors import LedgerError

__all__ = ["CLIError", "iso_time", "log_bound"]


class CLIError(LedgerError):
    """A command-line argument the library never sees was wrong (a missing file, clashing options)."""


def log_bound(value: str | None, option: str) -> int | datetime | None:
    """``--since``/``--until``: a log position (digits) or an ISO time (UTC when it names no zone)."""
    if value is None:
        return None
    if value.strip().isdigit():
        return int(value)
    return iso_time(value, option, "is neither a log position nor an ISO date/time")


def iso_time(value: str, option: str, problem: str = "is not an ISO date/time") -> datetime:
    """An ISO time; without a zone it is read as UTC."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CLIError(f"{option}: {value!r} {problem} (e.g. 2026-01-31T12:00:00Z)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
