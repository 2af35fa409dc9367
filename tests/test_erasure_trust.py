"""Erasure keeps its word: key_destroyed is the truth, failure text is sealed, keys are committed to.

Issue 9, section 5. On SQLite files and PostgreSQL (and memory where it applies): a
reader holding the key's bytes makes erase report ``key_destroyed=False`` promptly and
the shredding finish later; the message and traceback of a failed execution that read
personal data are sealed with the input lineages' keys; and a deleted, swapped or
malformed key row is an integrity problem that ``verify()`` reports, not an erasure.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import ledger
from ledger import ERASED, CallableRegistry, Ledger, errors
from ledger.events import ENTITY_VERSION, EXECUTION_FAILED, ExecutionFailed
from ledger.model.personal import new_key
from tests.conftest import PG_BASE
from tests.models import Clinic, Grade, Patient

SECRET = "Yolanda Uniquely-Private"
OTHER = "Xavier Also-Private"


@CallableRegistry.register("trust_admit")
def admit(patient: Patient) -> Patient:
    raise ValueError("cannot admit " + patient.name)


@CallableRegistry.register("trust_pair")
def pair(first: Patient, second: Patient) -> int:
    raise ValueError(f"cannot pair {first.name} with {second.name}")


@CallableRegistry.register("trust_clinic")
def clinic_fails(clinic: Clinic) -> int:
    raise RuntimeError("first patient: " + clinic.patients[0].name)


@CallableRegistry.register("trust_by_name")
def by_name(name: str) -> int:
    raise KeyError("no record for " + name)


@CallableRegistry.register("trust_plain")
def plain_fails(grade: Grade) -> int:
    raise ValueError(f"bad course {grade.course}")


@CallableRegistry.register("trust_forked", isolation="process")
def forked_fails(patient: Patient) -> int:
    raise ValueError("forked cannot admit " + patient.name)


# ------------------------------------------------------------------ helpers
def _patient(led: Ledger, name: str = SECRET) -> Patient:
    p = Patient(name=name, email="someone@example.invalid", ward="north")
    led.registry.register_entity(p)
    return p


def _raw_states(led: Ledger) -> bytes:
    return b"".join(bytes(n.state) for n in led.store.iter_all())


def _payloads(led: Ledger, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(n.state) for n in led.store.iter_all() if n.topic == topic]


def _files(directory: Path) -> bytes:
    """Every byte of every file the SQLite store has (database, -wal, -shm)."""
    return b"".join(f.read_bytes() for f in directory.iterdir() if f.is_file())


def _fail(led: Ledger, function: str, /, **kwargs: Any) -> BaseException:
    ledger.set_default_ledger(led)
    try:
        with pytest.raises(Exception) as caught:
            CallableRegistry.execute(function, **kwargs)
        return caught.value
    finally:
        ledger.set_default_ledger(None)


def _schema(url: str) -> str:
    return url.rpartition("schema=")[2]


@pytest.fixture
def lg(store_url: str) -> Iterator[Ledger]:
    led = Ledger(store_url)
    yield led
    led.close()


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


# ======================================================= 2. sealed failure text
class TestSealedFailureText:
    def test_the_log_never_holds_the_personal_value_in_clear(self, lg: Ledger) -> None:
        """The message and traceback are ciphertext in the event; the caller's error is unchanged."""
        p = _patient(lg)
        error = _fail(lg, "trust_admit", patient=p)
        assert type(error) is ValueError and str(error) == "cannot admit " + SECRET
        assert SECRET.encode() not in _raw_states(lg)
        (failed,) = _payloads(lg, EXECUTION_FAILED)
        event = ExecutionFailed.model_validate(failed)
        assert event.error_type == "ValueError"  # the type stays readable
        assert event.sealed_with == [p.lineage_id] and len(event.key_shares) == 1

    def test_readable_through_the_library_until_erased(self, lg: Ledger) -> None:
        """open_payload gives the text while the key exists and ERASED for message and traceback after."""
        p = _patient(lg)
        _fail(lg, "trust_admit", patient=p)
        (failed,) = _payloads(lg, EXECUTION_FAILED)
        opened = lg.open_payload(EXECUTION_FAILED, failed)
        assert opened["error_message"] == "cannot admit " + SECRET
        assert "raise ValueError" in opened["traceback"] and SECRET in opened["traceback"]
        lg.erase(p.lineage_id, reason="request")
        erased = lg.open_payload(EXECUTION_FAILED, failed)
        assert erased["error_message"] is ERASED and erased["traceback"] is ERASED
        assert erased["error_type"] == "ValueError"

    def test_analytics_and_parquet_show_erased(self, lg: Ledger, tmp_path: Path) -> None:
        """executions.error_message is the text before erasure, '<erased>' after; Parquet the same."""
        p = _patient(lg)
        _fail(lg, "trust_admit", patient=p)
        query = "select error_type, error_message from executions where not succeeded"
        assert lg.sql(query).fetchall() == [("ValueError", "cannot admit " + SECRET)]
        lg.erase(p.lineage_id, reason="request")
        assert lg.sql(query).fetchall() == [("ValueError", "<erased>")]
        lg.analytics.export_parquet(tmp_path / "pq")
        exported = pq.read_table(tmp_path / "pq" / "executions.parquet").to_pylist()
        assert [r["error_message"] for r in exported] == ["<erased>"]
        assert not [f for f in (tmp_path / "pq").iterdir() if SECRET.encode() in f.read_bytes()]

    def test_a_rebuilt_projection_agrees(self, durable_url: str) -> None:
        """A fresh ledger's analytics, built after the erasure, also read '<erased>'."""
        with Ledger(durable_url) as a:
            p = _patient(a)
            _fail(a, "trust_admit", patient=p)
            a.erase(p.lineage_id, reason="request")
        with Ledger(durable_url) as b:
            assert b.sql("select error_message from executions").fetchall() == [("<erased>",)]

    def test_several_lineages_need_every_key(self, lg: Ledger) -> None:
        """A failure that read two personal lineages turns unreadable when either one is erased."""
        first, second = _patient(lg), _patient(lg, name=OTHER)
        _fail(lg, "trust_pair", first=first, second=second)
        (failed,) = _payloads(lg, EXECUTION_FAILED)
        assert sorted(failed["sealed_with"]) == sorted([str(first.lineage_id), str(second.lineage_id)])
        assert lg.open_payload(EXECUTION_FAILED, failed)["error_message"] == f"cannot pair {SECRET} with {OTHER}"
        lg.erase(second.lineage_id, reason="request")
        assert lg.open_payload(EXECUTION_FAILED, failed)["error_message"] is ERASED
        assert lg.registry.get_latest(first.lineage_id).name == SECRET

    def test_children_of_an_input_tree_count(self, lg: Ledger) -> None:
        """A failure of a function given a Clinic is sealed with its patients' keys too."""
        clinic = Clinic(title="East", patients=[Patient(name=SECRET), Patient(name=OTHER)])
        lg.registry.register_entity(clinic)
        _fail(lg, "trust_clinic", clinic=clinic)
        assert SECRET.encode() not in _raw_states(lg)
        (failed,) = _payloads(lg, EXECUTION_FAILED)
        assert set(failed["sealed_with"]) == {str(x.lineage_id) for x in clinic.patients}
        lg.erase(clinic.patients[0].lineage_id, reason="request")
        assert lg.open_payload(EXECUTION_FAILED, failed)["error_message"] is ERASED

    def test_a_child_erased_before_the_call_does_not_hide_the_text(self, lg: Ledger) -> None:
        """An input tree member erased earlier gave the function only tombstones; the others' keys seal it."""
        clinic = Clinic(title="East", patients=[Patient(name=OTHER), Patient(name=SECRET)])
        lg.registry.register_entity(clinic)
        gone, kept = clinic.patients
        lg.erase(gone.lineage_id, reason="request")
        stored = lg.registry.get_latest(clinic.lineage_id)
        stored.patients = [stored.patients[1], stored.patients[0]]  # the kept patient first
        lg.registry.version_entity(stored)
        _fail(lg, "trust_clinic", clinic=stored)
        assert SECRET.encode() not in _raw_states(lg)
        (failed,) = _payloads(lg, EXECUTION_FAILED)
        assert failed["sealed_with"] == [str(kept.lineage_id)]
        assert lg.open_payload(EXECUTION_FAILED, failed)["error_message"] == "first patient: " + SECRET

    def test_a_reference_to_a_personal_field_counts(self, lg: Ledger) -> None:
        """A failure of a function given "@<uuid>.name" is sealed with that entity's key."""
        p = _patient(lg)
        error = _fail(lg, "trust_by_name", name=f"@{p.ecs_id}.name")
        assert SECRET in str(error)
        assert SECRET.encode() not in _raw_states(lg)
        (failed,) = _payloads(lg, EXECUTION_FAILED)
        assert failed["sealed_with"] == [str(p.lineage_id)]

    def test_a_failure_in_a_forked_child_is_sealed(self, tmp_path: Path) -> None:
        """Process isolation: the child's message and traceback are sealed the same way."""
        with Ledger(f"sqlite:///{tmp_path / 'f.db'}") as led:
            p = _patient(led)
            error = _fail(led, "trust_forked", patient=p)
            assert str(error) == "forked cannot admit " + SECRET
            assert SECRET.encode() not in _raw_states(led)
            (failed,) = _payloads(led, EXECUTION_FAILED)
            assert led.open_payload(EXECUTION_FAILED, failed)["error_message"] == "forked cannot admit " + SECRET

    def test_failures_without_personal_inputs_stay_in_clear(self, lg: Ledger) -> None:
        """No personal lineage among the inputs: the text is stored as it was."""
        g = Grade(course="astronomy", score=1.0)
        lg.registry.register_entity(g)
        _fail(lg, "trust_plain", grade=g)
        (failed,) = _payloads(lg, EXECUTION_FAILED)
        assert failed["error_message"] == "bad course astronomy" and "sealed_with" not in failed
        assert lg.sql("select error_message from executions").fetchall() == [("bad course astronomy",)]

    def test_the_cli_log_shows_the_text_then_erased(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """`ledger log` prints the failure text while the key exists and never after erasure."""
        from rich.console import Console

        from ledger.cli import commands as cli

        monkeypatch.setattr(cli, "console", Console(width=250))
        url = f"sqlite:///{tmp_path / 'c.db'}"
        with Ledger(url) as led:
            p = _patient(led)
            _fail(led, "trust_admit", patient=p)
        out = CliRunner().invoke(cli.app, ["log", "--db", url])
        assert out.exit_code == 0, out.output
        assert "cannot admit " + SECRET in out.output
        with Ledger(url) as led:
            led.erase(p.lineage_id, reason="request")
        out = CliRunner().invoke(cli.app, ["log", "--db", url, "--type", "execution"])
        assert out.exit_code == 0, out.output
        assert SECRET not in out.output and "FAILED ValueError: <erased>" in out.output


class TestSealingRule:
    @settings(max_examples=60, deadline=None)
    @given(
        text=st.text(max_size=200),
        count=st.integers(min_value=1, max_value=5),
        gone=st.sets(st.integers(min_value=0, max_value=4)),
    )
    def test_the_text_opens_exactly_while_every_key_exists(self, text: str, count: int, gone: set[int]) -> None:
        """For any text and lineages, the sealed text opens iff no involved key is missing."""
        from ledger.events.sealed_failure import open_failure, seal_failure

        lineages = [uuid4() for _ in range(count)]
        keys = {lineage: new_key() for lineage in lineages}
        execution_id = uuid4()
        sealed = seal_failure(execution_id, {"error_message": text, "traceback": text}, keys)
        payload = orjson.loads(orjson.dumps({"execution_id": execution_id, **sealed}))
        missing = {lineages[i] for i in gone if i < count}
        opened = open_failure(payload, lambda lineage: None if lineage in missing else keys[lineage])
        if missing:
            assert opened["error_message"] is ERASED and opened["traceback"] is ERASED
        else:
            assert opened["error_message"] == text and opened["traceback"] == text

    def test_a_wrong_key_does_not_open_it(self) -> None:
        """Another lineage's key in place of the right one gives ERASED, never garbage."""
        from ledger.events.sealed_failure import open_failure, seal_failure

        a, b = uuid4(), uuid4()
        keys = {a: new_key(), b: new_key()}
        sealed = seal_failure(uuid4(), {"error_message": "x"}, keys)
        swapped = {a: keys[b], b: keys[a]}
        assert open_failure(sealed, swapped.get)["error_message"] is ERASED


# ============================================================ 3. key commitments
def _delete_key_row(led: Ledger, lineage: UUID) -> None:
    _set_key_row(led, lineage, None)


def _set_key_row(led: Ledger, lineage: UUID, value: Any) -> None:
    """Tamper with ledger_keys behind the library's back (None deletes the row)."""
    kind = led.store.kind
    if kind == "memory":
        table = led.store.keys._table._keys  # type: ignore[attr-defined]
        if value is None:
            table.pop(lineage, None)
        else:
            table[lineage] = value
    elif kind == "sqlite":
        conn = sqlite3.connect(led.store.spec.path, isolation_level=None)
        if value is None:
            conn.execute("DELETE FROM ledger_keys WHERE lineage_id = ?", (str(lineage),))
        else:
            conn.execute("UPDATE ledger_keys SET key = ? WHERE lineage_id = ?", (value, str(lineage)))
        conn.close()
    else:
        import psycopg

        with psycopg.connect(PG_BASE.split("?")[0], autocommit=True) as conn:
            table = f'"{_schema(led.url)}".ledger_keys'
            if value is None:
                conn.execute(f"DELETE FROM {table} WHERE lineage_id = %s", (lineage,))
            else:
                conn.execute(f"UPDATE {table} SET key = %s WHERE lineage_id = %s", (value, lineage))
    led.store.keys.forget(lineage)


def _drop_decoded(led: Ledger, lineage: UUID) -> None:
    """Forget the values this ledger decoded when it wrote them, as a fresh process would have none."""
    for rec in led.index.lineages[lineage]:
        rec.forget_values()


def _first_position(led: Ledger, lineage: UUID) -> int:
    return led.index.lineage_positions[lineage][0]


class TestKeyCommitments:
    def test_the_first_personal_version_commits_to_its_key(self, lg: Ledger) -> None:
        """Only a lineage's first personal event carries key_check, the HMAC of its key."""
        from ledger.store.keys import key_check

        p = _patient(lg)
        p.ward = "south"
        lg.registry.version_entity(p)
        bodies = [b for b in _payloads(lg, ENTITY_VERSION) if b["lineage_id"] == str(p.lineage_id)]
        key = lg.store.keys.all_keys()[p.lineage_id]
        assert [b.get("key_check") for b in bodies] == [key_check(key, p.lineage_id), None]
        g = Grade(course="x", score=1.0)
        lg.registry.register_entity(g)
        assert "key_check" not in _payloads(lg, ENTITY_VERSION)[-1]
        assert lg.verify().ok

    def test_a_deleted_key_row_is_reported(self, lg: Ledger) -> None:
        """A key row gone without an entity.erased event is a problem at the commitment's position."""
        p = _patient(lg)
        kept = _patient(lg, name=OTHER)
        _delete_key_row(lg, p.lineage_id)
        report = lg.verify()
        assert not report.ok
        assert report.first_bad_position == _first_position(lg, p.lineage_id)
        assert any(str(p.lineage_id) in x and "missing" in x for x in report.problems)
        assert not any(str(kept.lineage_id) in x for x in report.problems)

    def test_swapped_key_rows_are_reported(self, lg: Ledger) -> None:
        """Two lineages holding each other's keys are both reported, naming the owner of the key."""
        a, b = _patient(lg), _patient(lg, name=OTHER)
        keys = lg.store.keys.all_keys()
        _set_key_row(lg, a.lineage_id, keys[b.lineage_id])
        _set_key_row(lg, b.lineage_id, keys[a.lineage_id])
        report = lg.verify()
        assert not report.ok and len(report.problems) == 2
        assert any(str(a.lineage_id) in x and f"lineage {b.lineage_id}'s key" in x for x in report.problems)

    def test_a_malformed_key_is_reported_and_reads_as_an_integrity_error(self, lg: Ledger) -> None:
        """A key of the wrong length is a verify problem; reading raises KeyIntegrityError, not ERASED."""
        p = _patient(lg)
        _set_key_row(lg, p.lineage_id, b"too short")
        report = lg.verify()
        assert not report.ok and "malformed" in report.problems[0]
        _drop_decoded(lg, p.lineage_id)
        with pytest.raises(errors.KeyIntegrityError, match=str(p.lineage_id)):
            lg.registry.get_latest(p.lineage_id)

    def test_a_text_value_in_the_key_column_is_reported(self, tmp_path: Path) -> None:
        """SQLite stores any type: a TEXT key is malformed, reported, and reads as an integrity error."""
        with Ledger(f"sqlite:///{tmp_path / 'k.db'}") as led:
            p = _patient(led)
            _set_key_row(led, p.lineage_id, "not a key at all")
            report = led.verify()
            assert not report.ok and "malformed" in report.problems[0]
        with Ledger(f"sqlite:///{tmp_path / 'k.db'}") as fresh, pytest.raises(errors.KeyIntegrityError):
            fresh.registry.get_latest(p.lineage_id)

    def test_an_erased_lineage_is_no_problem(self, lg: Ledger) -> None:
        """A missing key with an entity.erased event is a legitimate erasure."""
        p = _patient(lg)
        lg.erase(p.lineage_id, reason="request")
        assert lg.verify().ok

    def test_a_key_that_outlived_its_erasure_is_reported(self, lg: Ledger) -> None:
        """An erased lineage whose key row is back (restored from a backup) is a problem."""
        p = _patient(lg)
        key = lg.store.keys.all_keys()[p.lineage_id]
        lg.erase(p.lineage_id, reason="request")
        if lg.store.kind == "memory":
            lg.store.keys._table._keys[p.lineage_id] = key  # type: ignore[attr-defined]
        else:
            lg.store.keys._table.insert_if_absent(p.lineage_id, key)  # type: ignore[attr-defined]
        report = lg.verify()
        assert not report.ok and "still in" in report.problems[0]

    def test_old_ledgers_without_commitments_are_not_checked(self, lg: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
        """Events written before key_check existed: a missing key is not reported (nothing to check against)."""
        from ledger.write import planning

        monkeypatch.setattr(planning, "key_check", lambda key, lineage: None)
        p = _patient(lg)
        assert "key_check" not in _payloads(lg, ENTITY_VERSION)[-1]
        _delete_key_row(lg, p.lineage_id)
        assert lg.verify().ok

    def test_the_cli_verify_reports_a_deleted_key_in_one_line_each(self, tmp_path: Path) -> None:
        """`ledger verify` exits 1 and names the lineage whose key row is missing."""
        from ledger.cli import app

        url = f"sqlite:///{tmp_path / 'k.db'}"
        with Ledger(url) as led:
            p = _patient(led)
            _delete_key_row(led, p.lineage_id)
        out = CliRunner().invoke(app, ["verify", "--db", url])
        assert out.exit_code == 1 and str(p.lineage_id) in out.output
        assert "Traceback" not in out.output

