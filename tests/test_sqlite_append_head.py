"""The SQLite append's head: read once, then taken from the backend's own last append while no
other connection has committed (``SQLiteBackend._head``, ``PRAGMA data_version``).

Each test interleaves appends of two backends (two connections, as two processes would be) on
one file and checks that every record still links to the one before it in the log (``verify``).
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import orjson
import pytest

import ledger
from ledger.events.seal import NewEvent, link_hash
from ledger.store.sqlite import SQLiteBackend


def note(n: int) -> NewEvent:
    return NewEvent(uuid.uuid4(), 1, "test.note", orjson.dumps({"n": n}), None)


def tail(led: ledger.Ledger) -> tuple[int, str, int] | None:
    """The backend's cached (head, link hash, data_version)."""
    backend = led.store._backend
    assert isinstance(backend, SQLiteBackend)
    return backend._tail


def last_link(path: Path) -> tuple[int, str]:
    con = sqlite3.connect(path)
    try:
        rowid, state = con.execute("SELECT rowid, state FROM stored_events ORDER BY rowid DESC LIMIT 1").fetchone()
    finally:
        con.close()
    return rowid, link_hash(state)


def test_appends_of_two_connections_taking_turns_chain_through_each_other(tmp_path: Path) -> None:
    """A's cached head is stale after B commits: A's next batch follows B's last record."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    a, b = ledger.connect(url), ledger.connect(url)
    try:
        for n in range(6):
            writer = a if n % 3 else b
            (position,) = writer.store.append([note(n)])
            cached = tail(writer)
            assert cached is not None and (position, cached[1]) == last_link(tmp_path / "log.db")
        a.store.append([note(10), note(11)])
        a.store.append([note(12)])  # the cached head: no other commit in between
        b.store.append([note(13)])
        assert a.store.append([note(14)]) == [a.store.head()]
        report = a.verify()
        assert report.ok, report
    finally:
        a.close()
        b.close()
        ledger.set_default_ledger(None)


def test_a_write_outside_the_ledger_is_noticed(tmp_path: Path) -> None:
    """Any other connection's commit (here a raw sqlite3 one, to a table of its own) moves
    ``data_version``: the next append reads the head again instead of trusting its cache."""
    path = tmp_path / "log.db"
    led = ledger.connect(f"sqlite:///{path}")
    try:
        led.store.append([note(1)])
        cached = tail(led)
        assert cached is not None
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE other (x)")
        con.commit()
        con.close()
        led.store.append([note(2)])
        after = tail(led)
        assert after is not None and after[2] != cached[2]
        assert led.verify().ok
    finally:
        led.close()
        ledger.set_default_ledger(None)


def test_a_failed_append_forgets_the_cached_head(tmp_path: Path) -> None:
    """A batch that did not commit leaves no cached head behind; the next append reads it."""
    led = ledger.connect(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        taken = note(1)
        led.store.append([taken])
        again = NewEvent(taken.stream_id, 1, "test.note", orjson.dumps({"n": 2}), None)
        with pytest.raises(Exception):
            led.store.append([note(3), again])
        assert tail(led) is None
        led.store.append([note(4)])
        assert led.verify().ok
    finally:
        led.close()
        ledger.set_default_ledger(None)
