"""The append-only store: backends (memory, SQLite, PostgreSQL), the key table, and verify.

The store knows records, positions and seals, never entities: it sits under the projections
and the write side, and above the codec.
"""

from ledger.store.base import EventStore, StoreURL, parse_store_url

__all__ = ["EventStore", "StoreURL", "parse_store_url"]
