"""Seal v2: each record's hash covers its topic, stream id, stream version, payload and
position, and every record links to the one before it in the log, so ``verify()`` alone
finds an edit of any of them, a record removed from the middle (a stream's last or only
event included), an inserted or copied record and two records swapped in position.
Tampering is done the way an attacker would: with SQL on the real SQLite file and the
real PostgreSQL table, bypassing the ledger.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger
from ledger import CallableRegistry, EntityRegistry, Ledger
from ledger.errors import CorruptLogError
from ledger.events import EXECUTION_COMPLETED, check_seal

from .models import Student


@CallableRegistry.register("seal_tests.bump")
def bump(student: Student, by: float) -> Student:
    student.gpa += by
    return student


def build_log(led: Ledger) -> dict[str, Any]:
    """A small log of two lineages and two executions; returns where things are."""
    ledger.set_default_ledger(led)
    try:
        alice = Student(name="Alice")
        alice.promote_to_root()
        bob = Student(name="Bob")
        bob.promote_to_root()
        CallableRegistry.execute("seal_tests.bump", student=alice, by=0.5)
        CallableRegistry.execute("seal_tests.bump", student=bob, by=0.25)
        alice.gpa = 3.0
        EntityRegistry.version_entity(alice)
    finally:
        ledger.set_default_ledger(None)
    # PostgreSQL: the whole-log chain of what was written is a checkpoint, as writers leave it
    # every second, every thousand positions and on close (the tail after the last checkpoint is
    # the digest's to cover: TestUncheckpointedTail in test_pg_concurrent.py)
    led.store.checkpoint()
    rows = raw_rows(led)
    completed = [p for p, (_, _, topic, _) in rows.items() if topic == EXECUTION_COMPLETED]
    return {"rows": rows, "completed": completed, "head": led.store.head()}


# ------------------------------------------------------------ raw SQL access
class Raw:
    """The events table of a real store, as an attacker with database access sees it."""

    def __init__(self, led: Ledger) -> None:
        self.kind = led.store.kind
        if self.kind == "sqlite":
            self.conn: Any = sqlite3.connect(led.store.spec.path)
            self.table, self.pos, self.ph = "stored_events", "rowid", "?"
        else:
            import psycopg

            base, _, query = led.url.partition("?")
            self.conn = psycopg.connect(base, autocommit=True)
            self.table = f'"{query.split("=", 1)[1]}".stored_events'
            self.pos, self.ph = "notification_id", "%s"

    def run(self, statement: str, params: tuple = ()) -> list[tuple]:
        cur = self.conn.execute(statement.replace("?", self.ph), params)
        rows = cur.fetchall() if cur.description else []
        if self.kind == "sqlite":
            self.conn.commit()
        return rows

    def stream_value(self, stream_id: uuid.UUID) -> Any:
        return stream_id.hex if self.kind == "sqlite" else stream_id

    def close(self) -> None:
        self.conn.close()


def raw_rows(led: Ledger) -> dict[int, tuple[str, int, str, bytes]]:
    page = led.store.read_columns(1, 10_000)
    return {
        p: (s, v, t, bytes(b))
        for p, s, v, t, b in zip(page.positions, page.stream_ids, page.versions, page.topics, page.states)
    }


@pytest.fixture
def sealed(durable_url: str):
    led = Ledger(durable_url)
    info = build_log(led)
    raw = Raw(led)
    assert led.verify().ok
    yield led, raw, info
    raw.close()
    led.close()


def assert_found(led: Ledger, position: int | None = None, text: str | None = None) -> None:
    report = led.verify()
    assert not report.ok, "verify() missed the tampering"
    if position is not None:
        assert report.first_bad_position == position, report.problems
    if text is not None:
        assert any(text in p for p in report.problems), report.problems


class TestSealCoversEverything:
    def test_an_edited_topic_is_found(self, sealed) -> None:
        """Renaming an entity.version record to execution.completed breaks its seal."""
        led, raw, _ = sealed
        raw.run(f"UPDATE {raw.table} SET topic = 'execution.completed' WHERE {raw.pos} = 2")
        assert_found(led, 2, "does not match its seal")

    def test_an_edited_stream_version_is_found(self, sealed) -> None:
        """Moving a record to another version of its stream breaks its seal."""
        led, raw, info = sealed
        p = info["completed"][0]
        raw.run(f"UPDATE {raw.table} SET originator_version = 7 WHERE {raw.pos} = ?", (p,))
        assert_found(led, p, "does not match its seal")

    def test_a_record_moved_to_another_stream_is_found(self, sealed) -> None:
        """Changing a record's stream id (to a new stream) breaks its seal."""
        led, raw, info = sealed
        p = info["completed"][0]
        raw.run(
            f"UPDATE {raw.table} SET originator_id = ? WHERE {raw.pos} = ?",
            (raw.stream_value(uuid.uuid4()), p),
        )
        assert_found(led, p, "does not match its seal")

    def test_a_record_copied_under_a_new_stream_id_is_found(self, sealed) -> None:
        """A copy of an execution record appended under another stream id is found."""
        led, raw, info = sealed
        p = info["completed"][0]
        _, _, topic, state = info["rows"][p]
        raw.run(
            f"INSERT INTO {raw.table} (originator_id, originator_version, topic, state, {raw.pos}) "
            "VALUES (?, 1, ?, ?, ?)",
            (raw.stream_value(uuid.uuid4()), topic, state, info["head"] + 1),
        )
        assert_found(led, info["head"] + 1)

    def test_two_records_of_different_streams_swapped_in_position_are_found(self, sealed) -> None:
        """Exchanging whole rows (stream, version, topic, payload) of two positions is found."""
        led, raw, _ = sealed
        rows = raw_rows(led)
        assert rows[1][0] != rows[2][0]
        for target, source in ((1, 2), (2, 1)):
            s, v, t, b = rows[source]
            raw.run(f"UPDATE {raw.table} SET originator_version = ? WHERE {raw.pos} = ?", (1000 + target, target))
        for target, source in ((1, 2), (2, 1)):
            s, v, t, b = rows[source]
            stream = raw.stream_value(uuid.UUID(s))
            raw.run(
                f"UPDATE {raw.table} SET originator_id = ?, originator_version = ?, topic = ?, state = ? "
                f"WHERE {raw.pos} = ?",
                (stream, v, t, b, target),
            )
        assert_found(led, 1, "sealed for position 2")

    def test_a_deleted_execution_record_is_found(self, sealed) -> None:
        """Deleting an execution.completed record (its stream's only event) from the middle is found."""
        led, raw, info = sealed
        p = info["completed"][0]
        assert p < info["head"]
        raw.run(f"DELETE FROM {raw.table} WHERE {raw.pos} = ?", (p,))
        if raw.kind == "postgresql":  # seal v3: the checkpoint names the missing position itself
            assert_found(led, p, "the record is missing")
        else:
            assert_found(led, p + 1, "does not chain to the record before it")

    def test_a_deleted_first_record_is_found(self, sealed) -> None:
        """Removing position 1 is named there: the version index still holds a row for the record at 1
        (and, on SQLite, the record now first no longer chains to the start of the log)."""
        led, raw, _ = sealed
        raw.run(f"DELETE FROM {raw.table} WHERE {raw.pos} = 1")
        assert_found(led, 1)

    def test_renumbering_positions_after_a_deletion_is_found(self, sealed) -> None:
        """Closing the gap left by a deleted record (renumbering the rest) is found."""
        led, raw, info = sealed
        p = info["completed"][0]
        raw.run(f"DELETE FROM {raw.table} WHERE {raw.pos} = ?", (p,))
        for q in range(p + 1, info["head"] + 1):
            raw.run(f"UPDATE {raw.table} SET {raw.pos} = ? WHERE {raw.pos} = ?", (q - 1, q))
        assert_found(led, p, "sealed for position")

    def test_a_record_inserted_in_the_middle_is_found(self, sealed) -> None:
        """Shifting the tail up by one and forging a record into the gap is found."""
        led, raw, info = sealed
        p = info["completed"][0]
        for q in range(info["head"], p - 1, -1):
            raw.run(f"UPDATE {raw.table} SET {raw.pos} = ? WHERE {raw.pos} = ?", (q + 1, q))
        s, v, t, b = info["rows"][p]
        raw.run(
            f"INSERT INTO {raw.table} (originator_id, originator_version, topic, state, {raw.pos}) "
            "VALUES (?, 1, ?, ?, ?)",
            (raw.stream_value(uuid.uuid4()), t, b, p),
        )
        assert_found(led, p)

    def test_a_truncated_tail_needs_the_digest(self, sealed) -> None:
        """Removing the newest record alone is found by verify() (the derived tables written with it,
        the version index, still name it), and with a digest, which names it as well."""
        led, raw, info = sealed
        digest = led.digest()
        if raw.kind == "postgresql":
            raw.run(f"DELETE FROM {raw.table.rsplit('.', 1)[0]}.ledger_checkpoints")  # the tail past any checkpoint
        raw.run(f"DELETE FROM {raw.table} WHERE {raw.pos} = ?", (info["head"],))
        alone = led.verify()
        assert not alone.ok and any(p.startswith(f"position {info['head']}: ") for p in alone.problems), alone.problems
        with_digest = led.verify(digest)
        assert not with_digest.ok and len(with_digest.problems) > len(alone.problems)

    def test_new_writes_after_a_reopen_chain_on(self, durable_url: str) -> None:
        """A second ledger on the same store seals its records after the first one's."""
        with Ledger(durable_url) as a:
            build_log(a)
        with Ledger(durable_url) as b:
            build_log(b)
            report = b.verify()
            assert report.ok and report.events_checked == b.store.head()


# ------------------------------------------------------------ old ledgers (seal v1)
def downgrade_to_v1(led: Ledger) -> None:
    """Rewrite every record as the library before seal v2 wrote it.

    v1: ``prev_hash`` chains a record to its stream's previous record and
    ``hash`` is the SHA-256 of the record's own bytes; nothing covers the topic,
    stream id, version or position.
    """
    raw = Raw(led)
    if raw.kind == "postgresql":  # a log written then had no checkpoints
        raw.run(f"DELETE FROM {raw.table.rsplit('.', 1)[0]}.ledger_checkpoints")
    heads: dict[str, str | None] = {}
    for position, (stream, _, _, state) in raw_rows(led).items():
        body = orjson.loads(state)
        for key in ("prev_hash", "log_prev", "position", "hash"):
            body.pop(key, None)
        body["prev_hash"] = heads.get(stream)
        encoded = orjson.dumps(body)
        digest = hashlib.sha256(encoded).hexdigest()
        heads[stream] = digest
        v1 = encoded[:-1] + b',"hash":"' + digest.encode() + b'"}'
        raw.run(f"UPDATE {raw.table} SET state = ? WHERE {raw.pos} = ?", (v1, position))
    raw.close()


class TestOldLedgers:
    def test_a_v1_log_verifies_and_new_records_chain_onto_it(self, durable_url: str) -> None:
        """A log written before seal v2 still verifies, reopens, and takes v2 records after it."""
        with Ledger(durable_url) as led:
            build_log(led)
            old_head = led.store.head()
            downgrade_to_v1(led)
        with Ledger(durable_url) as led:
            rows = raw_rows(led)
            assert all(check_seal(t, uuid.UUID(s), v, b).version == 1 for s, v, t, b in rows.values())
            assert led.verify().ok
            build_log(led)
            rows = raw_rows(led)
            new = 4 if led.store.kind == "postgresql" else 2  # PostgreSQL's concurrent writers seal v4
            assert {check_seal(t, uuid.UUID(s), v, b).version for p, (s, v, t, b) in rows.items() if p > old_head} == {new}
            assert led.verify().ok
            assert all(led.registry.get_latest(lineage) is not None for lineage in led.index.lineages)

    def test_v1_records_keep_their_stream_chain_protection(self, durable_url: str) -> None:
        """An edited payload of an old record is still found (its own hash no longer matches)."""
        with Ledger(durable_url) as led:
            build_log(led)
            downgrade_to_v1(led)
            raw = Raw(led)
            (state,) = raw.run(f"SELECT state FROM {raw.table} WHERE {raw.pos} = 1")[0]
            raw.run(f"UPDATE {raw.table} SET state = ? WHERE {raw.pos} = 1", (bytes(state).replace(b"Alice", b"Malic"),))
            raw.close()
            assert_found(led, 1, "was edited")

    def test_what_v1_records_are_not_protected_against(self, durable_url: str) -> None:
        """Documented limit: deleting an old stream's only record from the middle passes verify()."""
        with Ledger(durable_url) as led:
            info = build_log(led)
            downgrade_to_v1(led)
            raw = Raw(led)
            raw.run(f"DELETE FROM {raw.table} WHERE {raw.pos} = ?", (info["completed"][0],))
            raw.close()
            assert led.verify().ok  # the README's Guarantees section says so

    def test_a_v1_record_after_v2_records_is_found(self, durable_url: str) -> None:
        """Downgrading one new record to the old seal (to forge it more easily) is found."""
        with Ledger(durable_url) as led:
            info = build_log(led)
            raw = Raw(led)
            p = info["completed"][1]
            state = info["rows"][p][3]
            body = orjson.loads(state)
            for key in ("log_prev", "position", "hash"):
                body.pop(key, None)  # seal v3 (PostgreSQL) has no log_prev
            encoded = orjson.dumps(body)
            v1 = encoded[:-1] + b',"hash":"' + hashlib.sha256(encoded).hexdigest().encode() + b'"}'
            raw.run(f"UPDATE {raw.table} SET state = ? WHERE {raw.pos} = ?", (v1, p))
            raw.close()
            assert_found(led, p, "old (v1) seal")


# ------------------------------------------------------------ any single change is found
TAMPERS = ("byte", "topic", "stream", "version", "delete", "swap", "duplicate")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(TAMPERS), data=st.data())
def test_every_single_tampering_is_found(kind: str, data: st.DataObject) -> None:
    """Whatever one record-level change is made to a log (but removing its tail), verify() reports it."""
    led = Ledger("memory://")
    try:
        build_log(led)
        events = led.store.recorder._stored_events
        n = len(events)
        i = data.draw(st.integers(0, n - 1), label="record")
        ev = events[i]
        if kind == "byte":
            # Drawn independently of this run's record sizes (uuids and times vary), so replays agree.
            at = data.draw(st.integers(0, 2**20), label="offset") % len(ev.state)
            new = (ev.state[at] + data.draw(st.integers(1, 255), label="delta")) % 256
            events[i] = dataclasses.replace(ev, state=ev.state[:at] + bytes([new]) + ev.state[at + 1 :])
        elif kind == "topic":
            events[i] = dataclasses.replace(ev, topic=data.draw(st.text(min_size=1).filter(lambda t: t != ev.topic)))
        elif kind == "stream":
            events[i] = dataclasses.replace(ev, originator_id=uuid.uuid4())
        elif kind == "version":
            events[i] = dataclasses.replace(
                ev, originator_version=data.draw(st.integers(1, 50).filter(lambda v: v != ev.originator_version))
            )
        elif kind == "delete":
            i = data.draw(st.integers(0, n - 2), label="not the tail")
            events.pop(i)
        elif kind == "swap":
            j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i), label="other")
            events[i], events[j] = events[j], events[i]
        else:
            j = data.draw(st.integers(0, n), label="insert at")
            events.insert(j, dataclasses.replace(ev, originator_id=uuid.uuid4(), originator_version=1))
        assert not led.verify().ok
    finally:
        led.close()


# ------------------------------------------------------------ damage is reported, not raised
class TestVerifyReportsDamage:
    @pytest.mark.parametrize(
        "column, value",
        [
            ("state", None),
            ("state", b"not json at all"),
            ("state", b'{"truncated": '),
            ("state", b""),
            ("topic", None),
        ],
    )
    def test_an_undecodable_record_is_reported_at_its_position(self, sealed, column: str, value: Any) -> None:
        """A NULL, empty or non-JSON record is a problem at its position, never an exception."""
        led, raw, _ = sealed
        raw.run(f"UPDATE {raw.table} SET {column} = ? WHERE {raw.pos} = 3", (value,))
        report = led.verify()
        assert not report.ok and report.first_bad_position == 3, report.problems
        assert report.events_checked == led.store.head()

    @pytest.mark.parametrize("column, value", [("originator_id", "not-a-uuid"), ("originator_version", "seven")])
    def test_malformed_ids_in_sqlite_are_reported(self, tmp_path, column: str, value: str) -> None:
        """SQLite columns hold anything: a stream id that is no UUID or a version that is no integer is reported."""
        with Ledger(f"sqlite:///{tmp_path / 'l.db'}") as led:
            build_log(led)
            raw = Raw(led)
            raw.run(f"UPDATE {raw.table} SET {column} = ? WHERE {raw.pos} = 2", (value,))
            raw.close()
            report = led.verify()
            assert not report.ok and report.first_bad_position == 2, report.problems
            with pytest.raises(CorruptLogError) as caught:  # a digest is never taken over a damaged log
                led.digest()
            assert caught.value.position == 2

    def test_the_first_bad_position_is_the_lowest_of_all_problems(self, tmp_path) -> None:
        """A key row deleted for an early lineage (found after the walk) still sets the first bad position."""
        from .models import Patient

        with Ledger(f"sqlite:///{tmp_path / 'l.db'}") as led:
            patient = Patient(name="Ada")
            led.registry.register_entity(patient)
            info = build_log(led)
            raw = Raw(led)
            raw.run("DELETE FROM ledger_keys")
            raw.run(f"UPDATE {raw.table} SET topic = 'entity.erased' WHERE {raw.pos} = ?", (info["head"],))
            raw.close()
            report = led.verify()
            assert len(report.problems) >= 2 and report.first_bad_position == 1, report.problems
