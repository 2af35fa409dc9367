"""ledger/store/pg_keys.py: erasing on PostgreSQL reports ``key_destroyed`` only when no snapshot can
still see the key, and the next writable open finishes the shredding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ledger import ERASED, Ledger

from .clinic import _patient, _schema
from .conftest import PG_BASE


@contextmanager
def _pg_snapshot(url: str) -> Iterator[Any]:
    """Another PostgreSQL session holding a REPEATABLE READ snapshot (it has read something)."""
    import psycopg

    conn = psycopg.connect(PG_BASE.split("?")[0])
    try:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute(f'SELECT count(*) FROM "{_schema(url)}".stored_events').fetchall()
        yield conn
    finally:
        conn.close()


def _heap(url: str) -> bytes | None:
    """The raw heap pages of ledger_keys (pageinspect, superuser only); None when unavailable."""
    import psycopg

    try:
        with psycopg.connect(PG_BASE.split("?")[0], autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
            rel = f'"{_schema(url)}".ledger_keys'
            rows = conn.execute(
                "SELECT get_raw_page(%s, n::int) FROM generate_series(0, "
                "pg_relation_size(%s::regclass) / current_setting('block_size')::int - 1) AS n",
                (rel, rel),
            ).fetchall()
    except psycopg.Error:
        return None
    return b"".join(bytes(r[0]) for r in rows)


class TestPostgresShredding:
    def test_a_snapshot_makes_erase_report_the_key_is_not_yet_destroyed(self, pg_url: str) -> None:
        """While another session holds an older snapshot, key_destroyed is False (and the row is in the heap)."""
        with Ledger(pg_url) as led:
            p = _patient(led)
            key = led.store.keys.all_keys()[p.lineage_id]
            with _pg_snapshot(pg_url):
                result = led.erase(p.lineage_id, reason="request")
                assert result.key_destroyed is False
                heap = _heap(pg_url)
                if heap is not None:
                    assert key in heap
                assert led.registry.get_latest(p.lineage_id).name is ERASED
            again = led.erase(p.lineage_id, reason="request")
            assert again.key_destroyed is True and again.already_erased
            heap = _heap(pg_url)
            if heap is not None:
                assert key not in heap

    def test_the_next_writable_open_finishes_the_shredding(self, pg_url: str) -> None:
        """A shredding left pending by a snapshot completes when the store is opened again."""
        with Ledger(pg_url) as led:
            p = _patient(led)
            key = led.store.keys.all_keys()[p.lineage_id]
            with _pg_snapshot(pg_url):
                assert led.erase(p.lineage_id, reason="request").key_destroyed is False
        with Ledger(pg_url) as reopened:
            heap = _heap(pg_url)
            if heap is not None:
                assert key not in heap
            assert reopened.erase(p.lineage_id, reason="again").key_destroyed is True

    def test_the_newest_key_leaves_no_bytes_in_the_heap(self, pg_url: str) -> None:
        """A plain VACUUM leaves the newest row's bytes in the page's free space; erase must not."""
        with Ledger(pg_url) as led:
            patients = [_patient(led, name=f"person {i}") for i in range(4)]
            keys = led.store.keys.all_keys()
            assert led.erase(patients[-1].lineage_id, reason="request").key_destroyed
            heap = _heap(pg_url)
            if heap is None:
                pytest.skip("pageinspect is not available (needs a superuser)")
            assert keys[patients[-1].lineage_id] not in heap
            assert keys[patients[0].lineage_id] in heap
