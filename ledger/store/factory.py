"""Which backend opens a ``StoreURL``: one constructor per ``StoreURL.kind``.

``EventStore`` looks its backend up here; PostgreSQL's module is imported only when a
``postgresql://`` URL is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ledger.store.memory import MemoryBackend
from ledger.store.sqlite import SQLiteBackend
from ledger.store.urls import StoreURL

if TYPE_CHECKING:
    from ledger.store.protocol import StoreBackend

__all__: tuple[str, ...] = ()  # nothing public: EventStore looks its backend up in _BACKENDS


def _postgres(spec: StoreURL, create: bool) -> StoreBackend:
    # Imported on first use: psycopg takes ~80 ms to import, a third of a CLI command's
    # start-up, and only PostgreSQL URLs need it.
    from ledger.store.postgres import PostgresBackend

    return PostgresBackend(spec, create)


#: The backend for each ``StoreURL.kind``.
_BACKENDS: dict[str, Callable[[StoreURL, bool], StoreBackend]] = {
    "memory": MemoryBackend,
    "sqlite": SQLiteBackend,
    "postgresql": _postgres,
}
