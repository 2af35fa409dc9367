"""The event store on every backend: atomic batches, concurrency, replay, tamper evidence."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

import ledger
from ledger import EntityRegistry, Ledger
from ledger.write.batch import Batch
from ledger.errors import ConcurrencyError, StoreError, StoreURLError
from ledger.events import ENTITY_VERSION

from .models import Grade, Student, student

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ tampering
def _rows(url: str):
    """Direct access to the raw table, bypassing the ledger (what an attacker would do)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        return conn, "stored_events", "rowid"
    import psycopg

    base, _, query = url.partition("?")
    schema = query.split("=", 1)[1]
    conn = psycopg.connect(base, autocommit=True)
    return conn, f'"{schema}".stored_events', "notification_id"


def edit_payload(led: Ledger, position: int) -> None:
    if led.store.kind == "memory":
        rec = led.store.recorder
        i = position - 1
        ev = rec._stored_events[i]
        rec._stored_events[i] = dataclasses.replace(ev, state=ev.state.replace(b'"Alice"', b'"Mallory"'))
        return
    conn, table, pos = _rows(led.url)
    (state,) = conn.execute(f"SELECT state FROM {table} WHERE {pos}={position}").fetchone()
    state = bytes(state).replace(b'"Alice"', b'"Mallory"')
    conn.execute(f"UPDATE {table} SET state=%s WHERE {pos}={position}".replace("%s", "?" if led.store.kind == "sqlite" else "%s"), (state,))
    conn.commit() if led.store.kind == "sqlite" else None
    conn.close()


def delete_event(led: Ledger, position: int) -> None:
    if led.store.kind == "memory":
        led.store.recorder._stored_events.pop(position - 1)
        return
    conn, table, pos = _rows(led.url)
    conn.execute(f"DELETE FROM {table} WHERE {pos}={position}")
    conn.commit() if led.store.kind == "sqlite" else None
    conn.close()


def swap_states(led: Ledger, p1: int, p2: int) -> None:
    """Exchange two records of one stream (a reordering of that stream's history)."""
    if led.store.kind == "memory":
        rec = led.store.recorder
        a, b = rec._stored_events[p1 - 1], rec._stored_events[p2 - 1]
        rec._stored_events[p1 - 1] = dataclasses.replace(a, state=b.state)
        rec._stored_events[p2 - 1] = dataclasses.replace(b, state=a.state)
        return
    conn, table, pos = _rows(led.url)
    ph = "?" if led.store.kind == "sqlite" else "%s"
    (s1,) = conn.execute(f"SELECT state FROM {table} WHERE {pos}={p1}").fetchone()
    (s2,) = conn.execute(f"SELECT state FROM {table} WHERE {pos}={p2}").fetchone()
    conn.execute(f"UPDATE {table} SET state={ph} WHERE {pos}={p1}", (bytes(s2),))
    conn.execute(f"UPDATE {table} SET state={ph} WHERE {pos}={p2}", (bytes(s1),))
    conn.commit() if led.store.kind == "sqlite" else None
    conn.close()


def three_versions(led: Ledger) -> Student:
    s = Student(name="Alice")
    s.promote_to_root()
    for gpa in (1.0, 2.0):
        s.gpa = gpa
        EntityRegistry.version_entity(s)
    return s


def _strip_live(data):
    if isinstance(data, dict):
        return {k: _strip_live(v) for k, v in data.items() if k not in ("live_id", "root_live_id")}
    if isinstance(data, list):
        return [_strip_live(v) for v in data]
    return data


def stored_dump(led: Ledger, root_ecs_id) -> dict:
    """A stored tree as JSON data, without the per-copy live ids."""
    return _strip_live(led.registry.get_stored_tree(root_ecs_id).root.model_dump(mode="json"))


class TestTamperEvidence:
    def test_untouched_log_verifies(self, led) -> None:
        three_versions(led)
        report = led.verify()
        assert report.ok and report.problems == [] and report.events_checked == 3

    def test_edited_payload_is_found_at_its_position(self, led) -> None:
        three_versions(led)
        edit_payload(led, 2)
        report = led.verify()
        assert not report.ok and report.first_bad_position == 2
        assert "edited" in report.problems[0]

    def test_deleted_event_is_found(self, led) -> None:
        three_versions(led)
        delete_event(led, 2)
        report = led.verify()
        # named at its own position: memory renumbers its list, so the record now at 2 no longer chains;
        # SQLite and PostgreSQL keep a version-index row for the record that was at 2
        assert not report.ok and report.first_bad_position == 2
        assert any("v1 to v3" in p for p in report.problems), report.problems

    def test_reordered_events_are_found(self, led) -> None:
        three_versions(led)
        swap_states(led, 2, 3)
        report = led.verify()
        assert not report.ok and report.first_bad_position == 2


class TestAtomicBatches:
    def test_a_conflicting_batch_writes_nothing(self, led) -> None:
        """A batch whose last event collides with an existing stream version is refused whole."""
        s = student(n=1)
        s.promote_to_root()
        head = led.store.head()
        batch = Batch(led.index)
        batch.add(uuid.uuid4(), ENTITY_VERSION, {"x": 1})
        batch.add(s.lineage_id, ENTITY_VERSION, {"x": 2})
        events = batch.seal()
        events[1].version = 1  # already taken: another writer got there first
        with pytest.raises(ConcurrencyError, match=str(s.lineage_id)):
            led.store.append(events)
        # nothing was written: PostgreSQL's concurrent writers leave a hole where the refused batch's
        # positions were (the head passes it), the others give the positions to the next batch
        assert led.store.records_between(0, led.store.head()) == len(list(led.store.iter_all())) == head
        assert led.verify().ok

    def test_two_ledgers_racing_on_one_lineage(self, durable_url) -> None:
        """The second writer of the same lineage version loses with ConcurrencyError, then succeeds after refresh."""
        a = Ledger(durable_url)
        s = student(n=0)
        a.registry.register_entity(s)
        b = Ledger(durable_url)
        copy_b = b.registry.get_stored_tree(s.ecs_id).root
        s.gpa = 1.0
        a.registry.version_entity(s)
        copy_b.gpa = 2.0
        with pytest.raises(ConcurrencyError):
            b.registry.version_entity(copy_b)
        assert copy_b.ecs_id == s.previous_ecs_id  # the loser's object is untouched
        assert b.registry.version_entity(copy_b) is True  # retried on fresh state
        assert [v.gpa for v in b.registry.history(s.lineage_id)] == [0.0, 1.0, 2.0]
        assert a.refresh() == 1 and a.verify().ok
        a.close()
        b.close()


class TestReplay:
    def test_reopening_rebuilds_exactly_the_same_state(self, durable_url) -> None:
        a = ledger.connect(durable_url)
        s = student(n=3)
        s.promote_to_root()
        s.grades[0].score = 9
        EntityRegistry.version_entity(s)
        s.grades[1].detach()
        snap = a.index.snapshot()
        trees = {r: stored_dump(a, r) for r, rec in a.index.records.items() if rec.is_root}
        a.close()
        ledger.set_default_ledger(None)
        b = Ledger(durable_url)
        assert b.index.snapshot() == snap
        assert {r: stored_dump(b, r) for r in trees} == trees
        b.close()

    def test_a_new_process_replays_to_the_same_state(self, durable_url) -> None:
        """Replay in a separate interpreter gives the same index snapshot and stored values."""
        a = Ledger(durable_url)
        s = student(n=2)
        a.registry.register_entity(s)
        s.gpa = 3.5
        a.registry.version_entity(s)
        expected = orjson.dumps(a.index.snapshot())
        tree = stored_dump(a, s.ecs_id)
        a.close()
        code = (
            "import sys, orjson; from ledger import Ledger; import tests.models; from uuid import UUID\n"
            "from tests.test_store import stored_dump\n"
            f"b = Ledger({durable_url!r})\n"
            "sys.stdout.buffer.write(orjson.dumps(b.index.snapshot()) + b'\\n')\n"
            f"sys.stdout.buffer.write(orjson.dumps(stored_dump(b, UUID('{s.ecs_id}'))))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=True).stdout
        snap_line, tree_line = out.split(b"\n", 1)
        assert snap_line == expected
        assert orjson.loads(tree_line) == tree

    def test_replay_needs_no_entity_classes(self, tmp_path) -> None:
        """A process that cannot import the classes still replays (values stay as stored JSON)."""
        url = f"sqlite:///{tmp_path / 'x.db'}"
        a = Ledger(url)
        a.registry.register_entity(student(n=1))
        a.close()
        code = f"from ledger import Ledger\nb = Ledger({url!r})\nprint(len(b.index.records))\n"
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "2"


class TestURLs:
    @pytest.mark.parametrize(
        "url, fragment",
        [
            ("nope", "not a store URL"),
            ("mysql://x/y", "unknown scheme 'mysql'"),
            ("sqlite://relative.db", "expected sqlite:///"),
            ("sqlite:///x.db?synchronous=SOMETIMES", "synchronous must be"),
            ("sqlite:///x.db?journal=1", "unknown option"),
            ("postgresql://localhost", "expected postgresql://user@host:port/dbname"),
            ("postgresql://u@h:notaport/db", "port is not a number"),
            ("sqlite:////no/such/dir/x.db", "does not exist"),
        ],
    )
    def test_bad_urls_raise_store_url_error_naming_the_url(self, url, fragment) -> None:
        with pytest.raises(StoreURLError, match=fragment) as info:
            Ledger(url)
        assert repr(url) in str(info.value) and isinstance(info.value, ValueError)

    def test_unreachable_postgres_is_a_store_error(self) -> None:
        with pytest.raises(StoreError, match="cannot connect"):
            Ledger("postgresql://postgres@127.0.0.1:1/test")

    def test_closed_ledger_refuses_work(self, tmp_path) -> None:
        from ledger.errors import LedgerClosedError

        lg = Ledger(f"sqlite:///{tmp_path / 'c.db'}")
        lg.close()
        with pytest.raises(LedgerClosedError):
            lg.registry.register_entity(Grade(course="x", score=1))
