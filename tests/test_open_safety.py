"""Reading never writes, and corruption is reported, never raised (issue 9, parts 3 and 4).

Stores are damaged the way an auditor (or a disk) would: real SQLite files
edited with ``sqlite3``, truncated or overwritten, and real PostgreSQL schemas
edited with psycopg. After every open and every command the user's files are
compared byte for byte (sha256, and no ``-wal``/``-shm``/``-journal`` left
behind) and PostgreSQL schemas object by object.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote
from uuid import UUID

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from ledger import Ledger, connect, get_ledger, set_default_ledger
from ledger.cli import app
from ledger.errors import (
    CorruptLogError,
    StoreNotFoundError,
    StoreURLError,
)
from ledger.store import EventStore, parse_store_url
from ledger.store.integrity import verify_store

from .conftest import PG_BASE, PG_SKIP_REASON, drop_pg_schema, requires_pg
from .models import Course, Student

runner = CliRunner()
SIDECARS = ("-wal", "-shm", "-journal")
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what SQLite and orjson can hold


# --------------------------------------------------------------------- helpers
class Base:
    """A small real ledger: Alice in three versions (positions 1-3), then a Course (4)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with Ledger(f"sqlite:///{path}") as led:
            alice = Student(name="Alice")
            led.registry.register_entity(alice)
            for gpa in (1.0, 2.0):
                alice.gpa = gpa
                led.registry.version_entity(alice)
            led.registry.register_entity(Course(title="math"))
            self.lineage = str(alice.lineage_id)
            self.versions = [str(r.ecs_id) for r in led.index.lineages[alice.lineage_id]]
            self.head = led.store.head()
        assert self.head == 4 and not any(Path(f"{path}{s}").exists() for s in SIDECARS)

    def copy(self, to: Path) -> Path:
        shutil.copy(self.path, to)
        return to


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    return Base(tmp_path_factory.mktemp("base") / "ledger.db")


@pytest.fixture(autouse=True)
def no_default_ledger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("LEDGER_URL", raising=False)
    monkeypatch.delenv("LEDGER_ANALYTICS", raising=False)
    yield
    set_default_ledger(None)


def fingerprint(path: Path) -> tuple[str | None, tuple[str, ...]]:
    """The file's sha256 (None when absent) and which SQLite side files exist beside it."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
    return digest, tuple(s for s in SIDECARS if Path(f"{path}{s}").exists())


def sql_edit(path: Path, statement: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(path)
    conn.execute(statement, params)
    conn.commit()
    conn.close()


def state_at(path: Path, position: int) -> bytes:
    conn = sqlite3.connect(path)
    (state,) = conn.execute("SELECT state FROM stored_events WHERE rowid = ?", (position,)).fetchone()
    conn.close()
    return bytes(state)


def commands(base: Any, tmp: Path) -> list[list[str]]:
    """Every reading command, with arguments that would be valid on the base ledger."""
    lid, (v1, v2, _) = base.lineage, base.versions
    return [
        ["log"],
        ["show", f"@{lid}"],
        ["history", lid],
        ["as-of", lid, "--position", "2"],
        ["diff", v1, v2],
        ["lineage", lid],
        ["sql", "select count(*) from events"],
        ["digest"],
        ["export", "--parquet", str(tmp / "parquet")],
        ["replay"],
    ]


#: Commands that open a stored reader instead of replaying when the store's version index
#: covers the log (``projections.stored_reads``): log, show, history, as-of and diff read only
#: the records they show; sql, lineage and export read every record through the analytics
#: catch-up, which checks each one. The others replay.
FAST_READS = {"log", "show", "history", "as-of", "diff", "sql", "lineage", "export"}


def assert_reader_contract(result: Result, undamaged: Result, *positions: int) -> None:
    """A fast read on a damaged log: one error line naming the damaged record, or, when the
    command never needed that record, exactly what it prints on the undamaged log.
    Never a traceback and never other output."""
    if result.exit_code == 0:
        assert undamaged.exit_code == 0 and result.stdout == undamaged.stdout, (result.stdout, undamaged.stdout)
        return
    line = assert_one_line(result)
    assert any(f"position {p}" in line for p in positions), line


def run(url: str, args: list[str]) -> Result:
    return runner.invoke(app, [*args, "--db", url])


def assert_one_line(result: Result, *fragments: str) -> str:
    """Exit status 1, nothing on stdout, exactly one ``error:`` line on stderr, no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == "", result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------- the damages
# Each edits one record of a copy of the base ledger; the value is the position
# replay must name.
def _not_json(p: Path) -> int:
    sql_edit(p, "UPDATE stored_events SET state = ? WHERE rowid = 2", (b"not json at all",))
    return 2


def _null_state(p: Path) -> int:
    sql_edit(p, "UPDATE stored_events SET state = NULL WHERE rowid = 2")
    return 2


def _json_array(p: Path) -> int:
    sql_edit(p, "UPDATE stored_events SET state = ? WHERE rowid = 2", (b"[1, 2, 3]",))
    return 2


def _bad_stream_id(p: Path) -> int:
    sql_edit(p, "UPDATE stored_events SET originator_id = 'not-a-uuid' WHERE rowid = 2")
    return 2


def _text_version(p: Path) -> int:
    sql_edit(p, "UPDATE stored_events SET originator_version = 'two' WHERE rowid = 2")
    return 2


def _topic_changed(p: Path) -> int:
    sql_edit(p, "UPDATE stored_events SET topic = 'execution.completed' WHERE rowid = 2")
    return 2


def _topic_null(p: Path) -> int:
    sql_edit(p, "UPDATE stored_events SET topic = NULL WHERE rowid = 2")
    return 2


def _bad_timestamp(p: Path) -> int:
    state = state_at(p, 2).replace(b'"created_at":"', b'"created_at":"yesterday ')
    sql_edit(p, "UPDATE stored_events SET state = ? WHERE rowid = 2", (state,))
    return 2


def _middle_deleted(p: Path) -> int:
    sql_edit(p, "DELETE FROM stored_events WHERE rowid = 2")
    return 3  # where Alice's stream jumps from v1 to v3 (replay stops there)


RECORD_DAMAGES: dict[str, Callable[[Path], int]] = {
    "payload not JSON": _not_json,
    "NULL state": _null_state,
    "payload a JSON array": _json_array,
    "stream id not a UUID": _bad_stream_id,
    "version not an integer": _text_version,
    "topic changed": _topic_changed,
    "topic NULL": _topic_null,
    "timestamp not a time": _bad_timestamp,
    "middle record deleted": _middle_deleted,
}
#: Where ``verify`` names a damage before replay would meet it: a deleted record at its own
#: position, since the version index still holds a row for it.
VERIFY_NAMES = {"middle record deleted": 2}


def _garbage(p: Path) -> None:
    p.write_bytes(b"this is not a database\n" * 200)


def _csv_over_the_log(p: Path) -> None:
    p.write_bytes(b"'x'\nx\n")  # what `COPY (SELECT 'x') TO '<the ledger file>'` leaves


def _truncated_mid_page(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:3000])


def _truncated_to_first_page(p: Path) -> None:
    data = p.read_bytes()
    page = int.from_bytes(data[16:18], "big")
    assert len(data) > 2 * page
    p.write_bytes(data[:page])


def _truncated_header(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:40])


def _damaged_pages(p: Path) -> None:
    """Every page but the first overwritten: the header and schema read fine, the log does not."""
    data = bytearray(p.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = b"\xab" * (len(data) - page)
    p.write_bytes(bytes(data))


FILE_DAMAGES: dict[str, Callable[[Path], None]] = {
    "garbage": _garbage,
    "CSV over the log": _csv_over_the_log,
    "truncated mid-page": _truncated_mid_page,
    "truncated to one page": _truncated_to_first_page,
    "truncated inside the header": _truncated_header,
    "pages overwritten": _damaged_pages,
}


def _foreign(p: Path) -> None:
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('my own data')")
    conn.commit()
    conn.close()


def _foreign_wal(p: Path) -> None:
    conn = sqlite3.connect(p)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()


def _foreign_stored_events(p: Path) -> None:
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE stored_events (id INTEGER PRIMARY KEY, what TEXT)")
    conn.commit()
    conn.close()


def _empty(p: Path) -> None:
    p.write_bytes(b"")


NOT_LEDGERS: dict[str, Callable[[Path], None] | None] = {
    "missing file": None,
    "empty file": _empty,
    "foreign database": _foreign,
    "foreign database in WAL mode": _foreign_wal,
    "foreign stored_events table": _foreign_stored_events,
}


def not_a_ledger(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "user.db"
    make = NOT_LEDGERS[kind]
    if make is not None:
        make(path)
    return path


# ------------------------------------------------------------- reading never writes
class TestCreateFalseSQLite:
    @pytest.mark.parametrize("kind", list(NOT_LEDGERS))
    def test_not_a_ledger_raises_store_not_found_and_writes_nothing(self, tmp_path: Path, kind: str) -> None:
        """A missing, empty or foreign file is StoreNotFoundError naming the url; its bytes and side files stay as they were."""
        path = not_a_ledger(tmp_path, kind)
        before = fingerprint(path)
        url = f"sqlite:///{path}"
        for opener in (lambda: Ledger(url, create=False), lambda: EventStore(url, create=False), lambda: connect(url, create=False)):
            with pytest.raises(StoreNotFoundError) as caught:
                opener()
            assert url in str(caught.value) and "\n" not in str(caught.value)
            assert fingerprint(path) == before
        assert not path.exists() or kind != "missing file"

    @pytest.mark.parametrize("kind", list(NOT_LEDGERS))
    def test_every_reading_command_refuses_in_one_line_and_writes_nothing(self, tmp_path: Path, base: Base, kind: str) -> None:
        """log, show, history, as-of, diff, lineage, sql, digest, export, replay and verify: exit 1, one line, the file untouched."""
        path = not_a_ledger(tmp_path, kind)
        before = fingerprint(path)
        for args in [*commands(base, tmp_path), ["verify"]]:
            assert_one_line(run(f"sqlite:///{path}", args), str(path))
            assert fingerprint(path) == before, args
        assert not (tmp_path / "parquet").exists()

    def test_a_real_ledger_opens_and_reading_changes_no_byte(self, tmp_path: Path, base: Base) -> None:
        """create=False opens an existing ledger; reading commands leave its file as it was."""
        path = base.copy(tmp_path / "ledger.db")
        before = fingerprint(path)
        with Ledger(f"sqlite:///{path}", create=False) as led:
            assert led.store.head() == base.head and led.verify().ok
        for args in [["log"], ["history", base.lineage], ["verify"], ["digest"]]:
            assert run(f"sqlite:///{path}", args).exit_code == 0, args
        assert fingerprint(path) == before

    def test_a_rollback_journal_ledger_keeps_its_journal_mode(self, tmp_path: Path, base: Base) -> None:
        """The eventsourcing pool switches files to WAL on connect; with create=False it must not."""
        path = base.copy(tmp_path / "ledger.db")
        sql_edit(path, "PRAGMA journal_mode=DELETE")
        before = fingerprint(path)
        with Ledger(f"sqlite:///{path}", create=False) as led:
            assert led.store.head() == base.head
        assert fingerprint(path) == before
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        conn.close()

    def test_a_ledger_opened_with_create_false_can_still_be_written(self, tmp_path: Path, base: Base) -> None:
        """create=False is about opening only: the ledger it opens is not read-only."""
        url = f"sqlite:///{base.copy(tmp_path / 'ledger.db')}"
        with Ledger(url, create=False) as led:
            led.registry.register_entity(Course(title="art"))
        with Ledger(url, create=False) as led:
            assert led.store.head() == base.head + 1 and led.verify().ok

    def test_create_true_still_creates(self, tmp_path: Path) -> None:
        """The default keeps today's behaviour: a new file becomes an empty ledger."""
        path = tmp_path / "new.db"
        with Ledger(f"sqlite:///{path}") as led:
            assert led.store.head() == 0
        with Ledger(f"sqlite:///{path}", create=False) as led:
            assert led.store.head() == 0

    def test_a_failed_connect_keeps_the_previous_default(self, tmp_path: Path) -> None:
        """connect(create=False) on no ledger raises before replacing the process's default ledger."""
        first = connect("memory://")
        with pytest.raises(StoreNotFoundError):
            connect(f"sqlite:///{tmp_path / 'none.db'}", create=False)
        assert get_ledger() is first
        first.close()


class TestCreateFalseMemory:
    def test_memory_never_holds_an_existing_ledger(self) -> None:
        """memory:// lives and dies with its store object, so create=False has nothing to open."""
        for opener in (lambda: Ledger("memory://", create=False), lambda: EventStore("memory://", create=False)):
            with pytest.raises(StoreNotFoundError, match="memory://"):
                opener()

    def test_reading_commands_on_memory_are_one_line(self, tmp_path: Path, base: Base) -> None:
        """ledger log --db memory:// is an error, not an empty ledger that looks fine."""
        for args in [["log"], ["verify"], ["sql", "select 1"]]:
            assert_one_line(run("memory://", args), "memory://")


# ------------------------------------------------------------- corruption is reported
class TestCorruptRecords:
    @pytest.mark.parametrize("damage", list(RECORD_DAMAGES))
    def test_opening_raises_corrupt_log_error_at_the_position(self, tmp_path: Path, base: Base, damage: str) -> None:
        """Ledger(url, replay=True), with or without create, raises one CorruptLogError naming the bad record's position."""
        path = base.copy(tmp_path / "ledger.db")
        position = RECORD_DAMAGES[damage](path)
        before = fingerprint(path)
        for create in (True, False):
            with pytest.raises(CorruptLogError) as caught:
                Ledger(f"sqlite:///{path}", create=create, replay=True)
            assert caught.value.position == position
            message = str(caught.value)
            assert f"position {position}" in message and "\n" not in message
        assert fingerprint(path) == before

    @pytest.mark.parametrize("damage", list(RECORD_DAMAGES))
    def test_an_indexed_open_refuses_the_record_when_it_is_read(self, tmp_path: Path, base: Base, damage: str) -> None:
        """Ledger(url) on an indexed log opens without reading records (constant time); the damaged
        version is refused the moment something reads it, naming it (or the hole it leaves in the
        lineage's stream), and the store is left as it was."""
        path = base.copy(tmp_path / "ledger.db")
        RECORD_DAMAGES[damage](path)
        before = fingerprint(path)
        for create in (True, False):
            with Ledger(f"sqlite:///{path}", create=create) as led:
                assert type(led.index).__name__ == "StoredInlineIndex"
                with pytest.raises(CorruptLogError) as caught:
                    led.registry.history(UUID(base.lineage))
                assert caught.value.position in (2, 3), caught.value
                assert "\n" not in str(caught.value)
                assert not led.verify().ok
        assert fingerprint(path) == before

    @pytest.mark.parametrize("damage", list(RECORD_DAMAGES))
    def test_every_reading_command_is_one_line_and_writes_nothing(self, tmp_path: Path, base: Base, damage: str) -> None:
        """log, show, history, as-of, diff, lineage, sql, digest, export and replay: exit 1, one line naming the position."""
        path = base.copy(tmp_path / "ledger.db")
        position = RECORD_DAMAGES[damage](path)
        before = fingerprint(path)
        # a reader that reads only what it shows names the damaged record, or the next record of
        # the lineage's stream when the damage takes it out of the stream (a deleted record, an
        # edited stream id or version): both positions point at the hole
        named = (2, 3)
        for args in commands(base, tmp_path):
            result = run(f"sqlite:///{path}", args)
            if args[0] in FAST_READS:
                assert_reader_contract(result, run(f"sqlite:///{base.path}", args), *named)
            else:  # digest and replay read every record: they fail, naming it or the hole
                line = assert_one_line(result)
                assert any(f"position {p}" in line for p in {position, *named}), line
            assert fingerprint(path) == before, args

    @pytest.mark.parametrize("damage", list(RECORD_DAMAGES))
    def test_verify_still_runs_and_names_the_first_bad_position(self, tmp_path: Path, base: Base, damage: str) -> None:
        """ledger verify on a store that cannot be replayed falls back to the integrity walk: exit 1, the bad position."""
        path = base.copy(tmp_path / "ledger.db")
        position = RECORD_DAMAGES[damage](path)
        before = fingerprint(path)
        result = run(f"sqlite:///{path}", ["verify"])
        assert result.exit_code == 1 and "Traceback" not in result.output
        position = VERIFY_NAMES.get(damage, position)
        assert f"FAILED: first bad position {position}" in result.stderr, result.output
        assert fingerprint(path) == before

    @pytest.mark.parametrize("damage", list(RECORD_DAMAGES))
    def test_verify_command_never_prints_a_traceback(self, tmp_path: Path, base: Base, damage: str) -> None:
        """Whatever the integrity walk makes of the record, verify exits 1 without a traceback."""
        path = base.copy(tmp_path / "ledger.db")
        RECORD_DAMAGES[damage](path)
        result = run(f"sqlite:///{path}", ["verify"])
        assert result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit)), result.exception
        assert "Traceback" not in result.output and result.stdout == ""

    @pytest.mark.parametrize("damage", list(RECORD_DAMAGES))
    def test_verify_store_reports_what_replay_refused(self, tmp_path: Path, base: Base, damage: str) -> None:
        """verify_store(EventStore(url, create=False)) runs where Ledger(url) cannot and reports the position."""
        path = base.copy(tmp_path / "ledger.db")
        position = RECORD_DAMAGES[damage](path)
        store = EventStore(f"sqlite:///{path}", create=False)
        try:
            report = verify_store(store)
        finally:
            store.close()
        assert not report.ok and report.first_bad_position == VERIFY_NAMES.get(damage, position)

    def test_everything_before_the_bad_record_stays_applied(self, tmp_path: Path, base: Base) -> None:
        """A live ledger that meets a bad record in refresh keeps its index up to the record before it."""
        url = f"sqlite:///{base.copy(tmp_path / 'ledger.db')}"
        with Ledger(url, replay=True) as led:
            with Ledger(url) as other:
                other.registry.register_entity(Course(title="art"))
                other.registry.register_entity(Course(title="music"))
            sql_edit(tmp_path / "ledger.db", "UPDATE stored_events SET state = NULL WHERE rowid = 6")
            with pytest.raises(CorruptLogError) as caught:
                led.refresh()
            assert caught.value.position == 6 and led.index.caught_up == 5


class TestDamagedFiles:
    @pytest.mark.parametrize("damage", list(FILE_DAMAGES))
    def test_opening_raises_one_corrupt_log_error(self, tmp_path: Path, base: Base, damage: str) -> None:
        """Garbage, truncated and overwritten files: CorruptLogError (a damaged ledger, not a missing one), file untouched."""
        path = base.copy(tmp_path / "ledger.db")
        FILE_DAMAGES[damage](path)
        before = fingerprint(path)
        for create in (False, True):
            with pytest.raises(CorruptLogError) as caught:
                Ledger(f"sqlite:///{path}", create=create)
            assert str(path) in str(caught.value) and "\n" not in str(caught.value)
            assert fingerprint(path) == before, create

    @pytest.mark.parametrize("damage", list(FILE_DAMAGES))
    def test_every_command_is_one_line_and_writes_nothing(self, tmp_path: Path, base: Base, damage: str) -> None:
        """Every reading command and verify: exit 1, one line naming the file, no byte changed."""
        path = base.copy(tmp_path / "ledger.db")
        FILE_DAMAGES[damage](path)
        before = fingerprint(path)
        for args in [*commands(base, tmp_path), ["verify"]]:
            assert_one_line(run(f"sqlite:///{path}", args), str(path))
            assert fingerprint(path) == before, args


@st.composite
def column_edits(draw: st.DrawFn) -> tuple[str, object]:
    """A column of one stored record and any value a database could hand back for it."""
    column = draw(st.sampled_from(["originator_id", "originator_version", "topic", "state"]))
    json_values = st.recursive(
        st.none() | st.booleans() | INT64 | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
        max_leaves=10,
    )
    value = draw(
        st.none()
        | INT64
        | st.floats(allow_nan=False)
        | st.text(max_size=40)
        | st.binary(max_size=60)
        | json_values.map(orjson.dumps)
    )
    return column, value


@st.composite
def payload_edits(draw: st.DrawFn) -> tuple[str | None, object]:
    """Drop one field of a real entity.version payload (None) or set it to any JSON value."""
    field = draw(
        st.sampled_from(
            ["ecs_id", "lineage_id", "previous_ecs_id", "entity_type", "schema_version", "is_root", "tree_root",
             "values", "children", "meta", "created_at", "forked_at", "recorded_at", "personal", "hash"]
        )
    )
    leaf = st.none() | st.booleans() | INT64 | st.text(max_size=12) | st.just(str(uuid.uuid4()))
    value = draw(
        st.just(None)
        | st.recursive(leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["$e", "$t", "$i", "$d", "x"]), inner, max_size=2), max_leaves=6).map(lambda v: ("set", v))
    )
    return field, value


class TestAnyEditOpensOrIsReported:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(edit=column_edits())
    def test_any_column_value_opens_or_is_a_corrupt_log_error(self, tmp_path_factory, base: Base, edit) -> None:
        """Whatever value one column of record 2 holds, opening gives a ledger or a one-line CorruptLogError at or after it."""
        column, value = edit
        path = base.copy(tmp_path_factory.mktemp("edit") / "ledger.db")
        try:
            sql_edit(path, f"UPDATE stored_events SET {column} = ? WHERE rowid = 2", (value,))
        except sqlite3.IntegrityError:
            assume(False)  # collides with another record's (stream, version) key
        self._opens_or_names_a_position(path)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(edit=payload_edits())
    def test_any_payload_field_edit_opens_or_is_a_corrupt_log_error(self, tmp_path_factory, base: Base, edit) -> None:
        """Dropping or retyping any field of an entity.version payload never escapes as another exception."""
        field, change = edit
        path = base.copy(tmp_path_factory.mktemp("edit") / "ledger.db")
        payload = orjson.loads(state_at(path, 2))
        if change is None:
            payload.pop(field, None)
        else:
            payload[field] = change[1]
        sql_edit(path, "UPDATE stored_events SET state = ? WHERE rowid = 2", (orjson.dumps(payload),))
        self._opens_or_names_a_position(path)

    @staticmethod
    def _opens_or_names_a_position(path: Path) -> None:
        before = fingerprint(path)
        try:
            Ledger(f"sqlite:///{path}", create=False).close()
        except CorruptLogError as exc:
            assert exc.position is not None and exc.position >= 2
            assert f"position {exc.position}" in str(exc) and "\n" not in str(exc)
        assert fingerprint(path) == before


# ------------------------------------------------------------- PostgreSQL
class TestSchemaNames:
    @pytest.mark.parametrize("schema", ['a"b', "A", "Audit", "1abc", "a-b", "a b", "a;drop", "x" * 64, "é"])
    def test_a_schema_that_is_not_a_plain_identifier_is_refused(self, schema: str) -> None:
        """parse_store_url refuses it with StoreURLError naming the schema, before any connection."""
        url = f"{PG_BASE}?schema={quote(schema)}"
        with pytest.raises(StoreURLError) as caught:
            parse_store_url(url)
        assert repr(schema) in str(caught.value)

    @settings(max_examples=200, deadline=None)
    @given(schema=st.text(min_size=1, max_size=70))
    def test_any_schema_is_refused_or_plain(self, schema: str) -> None:
        """For every text, the url is refused with StoreURLError or names a lower-case plain identifier."""
        try:
            spec = parse_store_url(f"postgresql://u@h:5432/db?schema={quote(schema)}")
        except StoreURLError:
            return
        name = spec.options["schema"]
        assert name == schema and len(name) <= 63
        assert name[0] in "abcdefghijklmnopqrstuvwxyz_" and all(c.isascii() and (c.islower() or c.isdigit() or c == "_") for c in name)

    @requires_pg
    def test_quote_in_schema_is_one_line_for_every_command_and_creates_nothing(self, tmp_path: Path, base: Base) -> None:
        """?schema=a"b: every command exits 1 with one line; no schema of that name appears."""
        schema = f'a"b{uuid.uuid4().hex[:8]}'
        url = f"{PG_BASE}?schema={quote(schema)}"
        try:
            for args in [*commands(base, tmp_path), ["verify"]]:
                assert_one_line(run(url, args), "not a plain identifier")
            with pytest.raises(StoreURLError):
                Ledger(url)
            assert schema not in pg_schemas()
        finally:
            pg_exec(f'DROP SCHEMA IF EXISTS "{schema.replace(chr(34), chr(34) * 2)}" CASCADE')


def pg_schemas() -> set[str]:
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace").fetchall()}


def pg_objects(schema: str) -> set[tuple[str, str]]:
    """Every table, index, sequence, type and function in a schema."""
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT 'class', relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = %s "
            "UNION ALL SELECT 'type', typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE nspname = %s "
            "UNION ALL SELECT 'proc', proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname = %s",
            (schema, schema, schema),
        ).fetchall()
    return {(r[0], r[1]) for r in rows}


def pg_exec(statement: str, params: tuple = ()) -> None:
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(statement, params)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema name, dropped afterwards (not created here)."""
    if PG_SKIP_REASON is not None:
        pytest.skip(PG_SKIP_REASON)
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    drop_pg_schema(name)


def pg_ledger(schema: str) -> tuple[str, str]:
    """A real PostgreSQL ledger like the SQLite base: Alice in three versions, then a Course."""
    url = f"{PG_BASE}?schema={schema}"
    with Ledger(url) as led:
        alice = Student(name="Alice")
        led.registry.register_entity(alice)
        for gpa in (1.0, 2.0):
            alice.gpa = gpa
            led.registry.version_entity(alice)
        led.registry.register_entity(Course(title="math"))
    return url, str(alice.lineage_id)


PG_RECORD_DAMAGES: dict[str, tuple[str, int]] = {
    "payload not JSON": ("UPDATE {t} SET state = 'not json'::bytea WHERE notification_id = 2", 2),
    "NULL state": ("UPDATE {t} SET state = NULL WHERE notification_id = 2", 2),
    "topic changed": ("UPDATE {t} SET topic = 'execution.completed' WHERE notification_id = 2", 2),
    "topic NULL": ("UPDATE {t} SET topic = NULL WHERE notification_id = 2", 2),
    # seal v3: the checkpoint the closing writer made names the missing record itself
    "middle record deleted": ("DELETE FROM {t} WHERE notification_id = 2", 2),
}


@requires_pg
class TestCreateFalsePostgres:
    def test_a_missing_schema_is_store_not_found_and_not_created(self, pg_schema: str, tmp_path: Path, base: Base) -> None:
        """Ledger(create=False) and every reading command refuse a schema that does not exist, and do not create it."""
        url = f"{PG_BASE}?schema={pg_schema}"
        with pytest.raises(StoreNotFoundError, match=pg_schema):
            Ledger(url, create=False)
        for args in [*commands(base, tmp_path), ["verify"]]:
            assert_one_line(run(url, args), "does not exist")
        assert pg_schema not in pg_schemas()

    def test_a_foreign_schema_gets_no_table_type_or_function(self, pg_schema: str, tmp_path: Path, base: Base) -> None:
        """An existing schema without the ledger's table is StoreNotFoundError; nothing is added to it."""
        pg_exec(f"CREATE SCHEMA {pg_schema}")
        pg_exec(f"CREATE TABLE {pg_schema}.notes (body text)")
        before = pg_objects(pg_schema)
        url = f"{PG_BASE}?schema={pg_schema}"
        with pytest.raises(StoreNotFoundError, match="holds no ledger"):
            Ledger(url, create=False)
        for args in [*commands(base, tmp_path), ["verify"]]:
            assert_one_line(run(url, args), "holds no ledger")
        assert pg_objects(pg_schema) == before

    def test_a_real_ledger_opens_and_reading_adds_nothing(self, pg_schema: str) -> None:
        """create=False opens an existing PostgreSQL ledger, reads it, and can still write to it."""
        url, lineage = pg_ledger(pg_schema)
        before = pg_objects(pg_schema)
        with Ledger(url, create=False) as led:
            assert led.store.head() == 4 and led.verify().ok
            led.registry.register_entity(Course(title="art"))
        assert run(url, ["history", lineage]).exit_code == 0
        assert pg_objects(pg_schema) == before

    @pytest.mark.parametrize("damage", list(PG_RECORD_DAMAGES))
    def test_corrupt_records_raise_at_their_position_and_commands_are_one_line(
        self, pg_schema: str, tmp_path: Path, base: Base, damage: str
    ) -> None:
        """psycopg edits of one record: Ledger(url) raises CorruptLogError at its position; every reading command is one line."""
        url, lineage = pg_ledger(pg_schema)
        with Ledger(url, create=False) as led:  # this ledger's own ids, and its output undamaged
            ids = SimpleNamespace(lineage=lineage, versions=[str(r.ecs_id) for r in led.index.lineages[UUID(lineage)]])
        undamaged = {tuple(args): run(url, args) for args in commands(ids, tmp_path) if args[0] in FAST_READS}
        statement, position = PG_RECORD_DAMAGES[damage]
        pg_exec(statement.format(t=f"{pg_schema}.stored_events"))
        with pytest.raises(CorruptLogError) as caught:
            Ledger(url, replay=True)
        assert caught.value.position == position and f"position {position}" in str(caught.value)
        named = (2, 3) if damage == "middle record deleted" else (position,)
        for args in commands(ids, tmp_path):
            if args[0] in FAST_READS:
                assert_reader_contract(run(url, args), undamaged[tuple(args)], *named)
            else:
                line = assert_one_line(run(url, args))
                assert any(f"position {p}" in line for p in {position, *named}), line
        result = run(url, ["verify"])
        assert result.exit_code == 1 and "Traceback" not in result.output
