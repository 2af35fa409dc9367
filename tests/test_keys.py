"""ledger/store/keys.py: on a SQLite file a reader holding the key's bytes makes erase report
``key_destroyed=False`` promptly, and the shredding finishes later (a later erase or the next
writable open); ``key_destroyed=True`` means no bytes of the key anywhere in the store's files.

Issue 9, section 5; its PostgreSQL half is ``test_pg_keys.py``, the sealed failure text
``test_sealed_failure.py``, the key commitments ``test_key_audit.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ledger import ERASED, Ledger

from .clinic import OTHER, _files, _patient
from .models import Grade


@pytest.fixture
def sqlite_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "store"
    directory.mkdir()
    return directory


class _Reader:
    """Another SQLite connection inside a read transaction: its snapshot pins the WAL.

    ``end()`` ends the transaction but keeps the connection open, as a
    long-running process would (closing the last connection checkpoints).
    """

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        self.conn.execute("BEGIN")
        self.conn.execute("SELECT count(*) FROM ledger_keys").fetchall()

    def end(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")


@contextmanager
def _sqlite_reader(path: Path) -> Iterator[_Reader]:
    reader = _Reader(path)
    try:
        yield reader
    finally:
        reader.end()
        reader.conn.close()


# ============================================================ 1. key_destroyed
class TestSQLiteShredding:
    def test_a_reader_makes_erase_report_the_key_is_not_yet_destroyed(self, sqlite_dir: Path) -> None:
        """With a reader pinning the WAL, erase returns key_destroyed=False while the bytes are still on disk."""
        with Ledger(f"sqlite:///{sqlite_dir / 'k.db'}") as led:
            p = _patient(led)
            key = led.store.keys.all_keys()[p.lineage_id]
            with _sqlite_reader(sqlite_dir / "k.db"):
                result = led.erase(p.lineage_id, reason="request")
                assert key in _files(sqlite_dir)  # the reader's snapshot still needs those frames
                assert result.key_destroyed is False and not result.already_erased
                assert led.registry.get_latest(p.lineage_id).name is ERASED  # unreadable at once

    def test_a_later_erase_finishes_the_shredding(self, sqlite_dir: Path) -> None:
        """Once the reader is gone, erasing the lineage again removes the bytes and reports True."""
        with Ledger(f"sqlite:///{sqlite_dir / 'k.db'}") as led:
            p = _patient(led)
            kept = _patient(led, name=OTHER)
            keys = led.store.keys.all_keys()
            with _sqlite_reader(sqlite_dir / "k.db") as reader:
                first = led.erase(p.lineage_id, reason="request")
                reader.end()
                again = led.erase(p.lineage_id, reason="request")
                assert (first.key_destroyed, again.key_destroyed, again.already_erased) == (False, True, True)
                assert keys[p.lineage_id] not in _files(sqlite_dir)
            assert led.registry.get_latest(kept.lineage_id).name == OTHER

    def test_the_next_writable_open_finishes_the_shredding(self, sqlite_dir: Path) -> None:
        """A pending shredding is completed by opening the store again, before any erase."""
        url = f"sqlite:///{sqlite_dir / 'k.db'}"
        led = Ledger(url)
        p = _patient(led)
        key = led.store.keys.all_keys()[p.lineage_id]
        with _sqlite_reader(sqlite_dir / "k.db") as reader:
            try:
                assert led.erase(p.lineage_id, reason="request").key_destroyed is False
            finally:
                led.close()
            reader.end()
            assert key in _files(sqlite_dir)
            with Ledger(url) as reopened:
                assert key not in _files(sqlite_dir)
                assert reopened.erase(p.lineage_id, reason="again").key_destroyed is True

    def test_key_destroyed_true_means_no_bytes_anywhere(self, sqlite_dir: Path) -> None:
        """Across many keys (page splits and merges), every key reported destroyed is gone from the files."""
        with Ledger(f"sqlite:///{sqlite_dir / 'k.db'}") as led:
            patients = [_patient(led, name=f"person {i}") for i in range(300)]
            keys = led.store.keys.all_keys()
            erased = patients[::7]
            for p in erased:
                assert led.erase(p.lineage_id, reason="request").key_destroyed
            on_disk = _files(sqlite_dir)
            assert not [p for p in erased if keys[p.lineage_id] in on_disk]
            assert keys[patients[1].lineage_id] in on_disk

    def test_erasing_a_lineage_without_personal_fields_reports_no_key_left(self, tmp_path: Path) -> None:
        """A lineage that never had a key has none left: key_destroyed is True, nothing else changes."""
        with Ledger(f"sqlite:///{tmp_path / 'k.db'}") as led:
            g = Grade(course="bp", score=1.0)
            led.registry.register_entity(g)
            assert led.erase(g.lineage_id, reason="request").key_destroyed is True
