"""The append-only store: backends (memory, SQLite, PostgreSQL), the key table, and verify.

The store knows records, positions and seals, never entities: it sits under the projections
and the write side, and above the codec. ``base`` holds ``EventStore``, the URL and the
backend protocol; ``memory``, ``sqlite`` and ``postgres`` are the backends (whatever touches
eventsourcing internals stays in them); ``keys`` the per-lineage data keys; ``probe`` the
checks run before opening; ``integrity`` and ``key_audit`` verify.
"""

from ledger.store.base import EventStore, StoreURL, parse_store_url

__all__ = ["EventStore", "StoreURL", "parse_store_url"]
