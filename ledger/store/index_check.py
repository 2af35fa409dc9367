"""The stored version index (versions, erasures, trees, memo keys) against a rebuild from the log.

The index is derived state kept beside the records (``version_index``); whoever can write the
store can edit it, and readers trust it for one keyed read (a memo row names the execution a
cached call reuses). ``ledger replay`` and ``verify`` rebuild it from the log alone and compare
row by row, so an edit of the index alone is named, at the position of the first row that
differs. The rebuild reads the log once more (see ``docs/guarantees-derived.md`` for its cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger.store.base import EventStore
    from ledger.store.version_index import IndexRows

__all__ = ["IndexCheck", "compare_index", "index_problems"]

#: Rows of each kind (missing / unexpected) ``verify`` names one by one before it counts the rest.
_NAMED_ROWS = 10

_KIND_NAMES = {"version": "version index", "erasure": "erasure index", "memo": "memo index", "tree": "tree index"}


@dataclass(frozen=True, slots=True)
class IndexCheck:
    """The store's version index against a rebuild of it from the log (``ledger replay``, ``verify``)."""

    tracked: int  # every record up to here is indexed
    head: int
    rows: int
    missing: list[tuple[Any, ...]]  # rows the log implies that the index lacks
    extra: list[tuple[Any, ...]]  # rows the index holds that the log does not imply

    @property
    def ok(self) -> bool:
        return not self.missing and not self.extra


def compare_index(store: EventStore, rebuilt: IndexRows | None = None, head: int | None = None) -> IndexCheck | None:
    """Compare the stored version index with the rows computed from the log alone, up to its
    tracked position; None for a store without one (``memory://``, or written before it).

    ``rebuilt``: the rows of the log's records up to ``head`` when the caller already computed
    them on its own pass over the log (``verify``: one read of the log, not two); otherwise the
    log is read again here (``EventStore.rebuilt_index``).
    """
    state = store.index_state()
    if state is None:
        return None
    if head is None:
        head = store.head()
    upto = min(store.index_covered() or 0, head)
    stored = store.stored_index()
    later = store.head()  # rows of appends committed while the index was read: neither missing nor extra
    have: set[tuple[Any, ...]] = (
        {("version", *r) for r in stored.versions}
        | {("erasure", *r) for r in stored.erasures}
        | {("memo", k.hex(), *r) for k, *r in stored.memos}
    )
    # every row up to the tracked position must be there; past it (appends while the index
    # lagged) rows may be missing, but none may differ from what the log implies
    if rebuilt is None:
        rebuilt = store.rebuilt_index(head)
    implied: set[tuple[Any, ...]] = (
        {("version", *r) for r in rebuilt.versions}
        | {("erasure", *r) for r in rebuilt.erasures}
        | {("memo", k.hex(), *r) for k, *r in rebuilt.memos}
    )
    required = {r for r in implied if r[-1] <= upto}
    missing = sorted(required - have, key=lambda r: r[-1])
    extra = sorted((r for r in have - implied if not head < r[-1] <= later), key=lambda r: r[-1])
    # tree rows name no position (a later root moves a version's row): compared whole once
    # the index covers the log
    tree_have: set[tuple[Any, ...]] = {("tree", *r) for r in stored.roots}
    if upto == head:
        # a later row for a member wins, as in the table (compared as sets: no need to sort)
        tree_implied: set[tuple[Any, ...]] = {("tree", *r) for r in dict(rebuilt.roots).items()}
        missing += sorted(tree_implied - tree_have, key=str)
        extra += sorted(tree_have - tree_implied, key=str)
    return IndexCheck(tracked=upto, head=head, rows=len(have) + len(tree_have), missing=missing, extra=extra)


def _row_text(row: tuple[Any, ...]) -> str:
    kind = row[0]
    if kind == "tree":
        return f"version {row[1]} in the tree of root {row[2]}"
    if kind == "memo":
        return f"memo key {row[1][:16]}… → execution {row[2]} at position {row[3]}"
    if kind == "erasure":
        return f"lineage {row[1]} erased at position {row[2]}"
    return f"version {row[1]} at position {row[2]}"


def index_problems(check: IndexCheck) -> list[tuple[int, str]]:
    """(position, text) for the rows of ``check`` that differ, the first few of each kind named."""
    found: list[tuple[int, str]] = []
    # A tree row has no position of its own: it is named at its root's (or member's) version row
    # when that differs too (a removed record takes both with it), else where the index stops.
    at = {row[1]: row[2] for row in (*check.extra, *check.missing) if row[0] == "version"}
    for what, rows in (("holds a row a rebuild from the log would not give", check.extra),
                       ("lacks the row a rebuild from the log gives", check.missing)):
        for n, row in enumerate(rows):
            position = row[-1] if row[0] != "tree" else at.get(row[2], at.get(row[1], check.tracked))
            if n == _NAMED_ROWS:
                found.append((position, f"{len(rows) - n} more index rows differ from a rebuild from the log"))
                break
            found.append((position, f"the {_KIND_NAMES[row[0]]} {what}: {_row_text(row)}"))
    return found
