"""The reading facade: what ``ledger log``, ``show``, ``history``, ``as-of``, ``diff`` and the UI read through.

Those commands need a handful of versions, not the whole log: where the store's version index
covers the log (``EventStore.index_caught_up``), ``StoredReader`` serves them from a
``StoredIndex``, the writer's own store-backed index (``projections.stored_inline``) opened
read-only, so the readers and the writer share one implementation of the version index
(``projections.index_protocol``). Opening one costs a few queries whatever the log's length;
the in-memory ``InlineIndex`` replays everything.

The record loaders (``load_version``, ``LazyVersions``, ...) live in ``projections.stored_records``
and are re-exported here under the names they always had.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ledger.store import EventStore
from projections.index_protocol import open_payload
from projections.stored_inline import StoredIndex
from projections.stored_records import (
    DEFAULT_CACHE,
    LRU,
    PREFETCH_LIMIT,
    LazyVersions,
    StoredErasures,
    checked_versions,
    load_version,
    load_versions,
    prefetch_children,
    previous_chain,
    read_checked,
)

__all__ = [
    "DEFAULT_CACHE",
    "LRU",
    "LazyVersions",
    "PREFETCH_LIMIT",
    "StoredErasures",
    "StoredIndex",
    "StoredReader",
    "load_version",
    "load_versions",
    "checked_versions",
    "prefetch_children",
    "previous_chain",
    "read_checked",
]


class StoredReader:
    """What the audit reads and the analytics need of a ledger, without replaying its log.

    ``store``, ``index`` and ``open_payload`` serve ``projections.audit``; ``analytics``
    and ``lineage_graph`` serve ``ledger sql``, ``lineage`` and ``export``: the DuckDB
    tables follow the log on their own (checking every record they read,
    ``decode.check_page``) and never needed the inline index.
    """

    def __init__(
        self,
        store: EventStore,
        cache_size: int = DEFAULT_CACHE,
        *,
        analytics_path: str | None = None,
        analytics_fallback: bool = False,
    ) -> None:
        self.store = store
        self.index = StoredIndex(store, cache_size)
        self.analytics_path = analytics_path
        self.analytics_fallback = analytics_fallback
        self._analytics: Any = None

    @classmethod
    def open(cls, url: str, *, analytics_path: str | None = None, analytics_fallback: bool = False) -> StoredReader | None:
        """A reader on an existing store whose version index covers its log; None otherwise
        (an index that lags, or a ``memory://`` store: replay then). Opens without writing."""
        store = EventStore(url, create=False)
        try:
            if store.index_caught_up():
                return cls(store, analytics_path=analytics_path, analytics_fallback=analytics_fallback)
        except BaseException:
            store.close()
            raise
        store.close()
        return None

    @property
    def analytics(self) -> Any:
        """The DuckDB projection of the log, opened on first use (as ``Ledger.analytics``)."""
        if self._analytics is None:
            # DuckDB and pyarrow load here, not at import: log, show and history never need them
            from projections.analytics import Analytics

            self._analytics = Analytics(self.store, self.analytics_path, fallback=self.analytics_fallback)
        return self._analytics

    def lineage_graph(
        self, ref: str | UUID, *, direction: str = "both", depth: int | None = None, position: int | None = None
    ) -> Any:
        """As ``Ledger.lineage_graph``."""
        from projections.lineage import lineage_graph

        return self.analytics.read(lambda con: lineage_graph(con, ref, direction=direction, depth=depth, position=position))

    def forget_changeable(self) -> None:
        """Drop the cached answers a later append can change, for a reader that lives long
        (``ledger ui``): "this lineage is not erased" may no longer hold. Decoded versions
        stay cached (a stored version never changes; personal values are opened with the
        key as the store holds it at each read)."""
        self.index.forget_erasures()

    def open_payload(self, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        """As ``Ledger.open_payload`` (the same function): sealed failure text opened while every key exists."""
        return open_payload(self.index, topic, payload)

    def close(self) -> None:
        if self._analytics is not None:
            self._analytics.close()
            self._analytics = None
        self.store.close()

    def __enter__(self) -> StoredReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
