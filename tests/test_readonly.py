"""projections/readonly.py (and ``Analytics.sql``): ``Ledger.sql`` / ``ledger.sql`` / ``ledger sql`` are strictly read-only, and the DuckDB file is only a cache.

Every form below was tried as a hostile auditor would (issue 9, section 1):
statements that write, hidden under EXPLAIN ANALYZE or inside a WITH; COPY
over the ledger's own SQLite file; file, network and scanner functions; setting
changes. Each must raise ``ReadOnlyError`` naming ``query`` and leave
everything as it was: the log (digest, ``verify``, and for SQLite the file's
bytes), the analytics tables and catalog, DuckDB's settings, and the files in
the directory (no COPY target appears).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import ledger
from ledger import EntityRegistry, Ledger, errors
from ledger.cli import app
from projections import readonly
from projections.analytics import Analytics, ProjectionMismatchError, ReadOnlySQLError
from projections.tables import TABLES
from tools.workload import Workload

from .conftest import fresh_pg_url
from .models import student

PASSWD = "/etc/passwd"
runner = CliRunner()

# (id, query). {db}: the ledger's SQLite file (for other stores a path that must stay
# absent); {out}: a path that must stay absent; {dir}: the test's directory;
# {csv}: a readable CSV file in it; {passwd}: /etc/passwd.
ATTACKS: list[tuple[str, str]] = [
    ("explain-analyze-delete", "EXPLAIN ANALYZE DELETE FROM events"),
    ("explain-analyze-insert", "EXPLAIN ANALYZE INSERT INTO events SELECT * FROM events"),
    ("explain-analyze-update", "EXPLAIN ANALYZE UPDATE executions SET succeeded = true"),
    ("explain-analyze-create-table", "EXPLAIN ANALYZE CREATE TABLE forged AS SELECT * FROM events"),
    ("explain-analyze-drop", "EXPLAIN ANALYZE DROP TABLE erasures"),
    ("explain-analyze-set", "EXPLAIN ANALYZE SET threads = 1"),
    ("explain-analyze-copy-over-the-log", "EXPLAIN ANALYZE COPY (SELECT 'x') TO '{db}'"),
    ("explain-analyze-checkpoint", "EXPLAIN ANALYZE CHECKPOINT"),
    ("explain-analyze-temp-view", "EXPLAIN ANALYZE CREATE TEMP VIEW events AS SELECT 1 AS forged"),
    ("explain-analyze-commit", "EXPLAIN ANALYZE COMMIT"),
    ("cte-delete", "WITH d AS (DELETE FROM events RETURNING 1) SELECT count(*) FROM d"),
    ("cte-update", "WITH d AS (UPDATE executions SET succeeded = true RETURNING 1) SELECT count(*) FROM d"),
    ("cte-insert", "WITH d AS (INSERT INTO erasures VALUES ('forged', 'forged', 0, now()) RETURNING 1) SELECT count(*) FROM d"),
    ("cte-copy", "WITH c AS (COPY (SELECT 'x') TO '{out}') SELECT * FROM c"),
    ("nested-cte-delete", "SELECT * FROM (WITH d AS (DELETE FROM events RETURNING 1) SELECT count(*) FROM d)"),
    ("delete", "DELETE FROM events"),
    ("insert", "INSERT INTO events SELECT * FROM events"),
    ("create-macro", "CREATE MACRO forged() AS 1"),
    ("create-sequence", "CREATE SEQUENCE forged"),
    ("create-view", "CREATE OR REPLACE VIEW executions_v AS SELECT 1"),
    ("two-statements", "SELECT 1; DELETE FROM events"),
    ("copy-over-the-log", "COPY (SELECT 'x') TO '{db}'"),
    ("copy-from-a-file", "COPY events FROM '{csv}'"),
    ("export-database", "EXPORT DATABASE '{out}'"),
    ("import-database", "IMPORT DATABASE '{dir}'"),
    ("attach", "ATTACH '{out}' AS forged"),
    ("detach", "DETACH DATABASE IF EXISTS forged"),
    ("use", "USE temp"),
    ("install", "INSTALL sqlite"),
    ("load", "LOAD sqlite"),
    ("set", "SET enable_external_access = true"),
    ("reset", "RESET threads"),
    ("pragma", "PRAGMA threads = 1"),
    ("call", "CALL checkpoint()"),
    ("checkpoint", "CHECKPOINT"),
    ("vacuum", "VACUUM"),
    ("read-text", "SELECT * FROM read_text('{passwd}')"),
    ("read-csv", "SELECT * FROM read_csv('{passwd}')"),
    ("read-blob", "SELECT * FROM read_blob('{passwd}')"),
    ("glob", "SELECT * FROM glob('/etc/*')"),
    ("sqlite-scan", "SELECT * FROM sqlite_scan('{db}', 'stored_events')"),
    ("postgres-scan", "SELECT * FROM postgres_scan('dbname=test', 'public', 'stored_events')"),
    ("replacement-scan", "SELECT * FROM '{csv}'"),
    ("http", "SELECT * FROM 'https://example.com/data.csv'"),
    ("read-in-scalar-subquery", "SELECT (SELECT content FROM read_text('{passwd}')) AS x"),
    ("read-in-lateral", "SELECT * FROM events, LATERAL (SELECT * FROM read_text('{passwd}'))"),
    ("read-through-query", "SELECT * FROM query('SELECT * FROM read_text(''{passwd}'')')"),
    ("checkpoint-function", "SELECT * FROM checkpoint()"),
    ("enable-logging", "SELECT * FROM enable_logging()"),
    ("nextval", "SELECT nextval('forged')"),
    ("setseed", "SELECT setseed(0.5)"),
]


def fill(query: str, *, db: Path, out: Path, directory: Path, csv: Path) -> str:
    return query.format(db=db, out=out, dir=directory, csv=csv, passwd=PASSWD)


def file_bytes(path: Path) -> dict[str, bytes]:
    """The SQLite database and its WAL (the -shm index is rewritten by readers and holds no data)."""
    return {p.name: p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()}


def catalog_and_counts(con: duckdb.DuckDBPyConnection, *, macros: bool = False) -> dict[str, Any]:
    """What a query could have changed in DuckDB: row counts, catalog objects, databases, settings.

    Listing macros builds DuckDB's whole function list (tens of ms), so only
    the checks on the persistent file ask for it.
    """
    state = {
        "counts": {name: con.execute(f"SELECT count(*) FROM main.{name}").fetchall()[0][0] for name in TABLES},
        "tables": sorted(con.execute("SELECT database_name, schema_name, table_name FROM duckdb_tables()").fetchall()),
        "views": sorted(con.execute("SELECT database_name, schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall()),
        "sequences": con.execute("SELECT count(*) FROM duckdb_sequences()").fetchall(),
        "databases": sorted(con.execute("SELECT database_name FROM duckdb_databases()").fetchall()),
        "settings": sorted(con.execute("SELECT name, value FROM duckdb_settings()").fetchall()),
    }
    if macros:
        state["macros"] = sorted(con.execute("SELECT schema_name, function_name FROM duckdb_functions() WHERE NOT internal").fetchall())
    return state


@dataclass
class Target:
    """A ledger with a workload in it, and what must not change."""

    led: Ledger
    kind: str
    directory: Path
    db: Path  # the SQLite file; for other stores a path that must stay absent
    csv: Path

    @property
    def out(self) -> Path:
        return self.directory / "out.csv"

    def query(self, template: str) -> str:
        return fill(template, db=self.db, out=self.out, directory=self.directory, csv=self.csv)

    def snapshot(self) -> dict[str, Any]:
        return {
            "digest": self.led.digest().to_json(),
            "files": sorted(p.name for p in self.directory.iterdir() if not p.name.endswith("-shm")),
            "sqlite": file_bytes(self.db) if self.kind == "sqlite" else None,
            "duckdb": catalog_and_counts(self.led.analytics.con),
        }

    def assert_unchanged(self, before: dict[str, Any]) -> None:
        after = self.snapshot()
        assert after["digest"] == before["digest"]
        assert after["files"] == before["files"]
        assert after["sqlite"] == before["sqlite"]  # byte for byte
        assert after["duckdb"] == before["duckdb"]
        assert self.led.verify().ok
        assert not self.out.exists()


def make_target(kind: str, directory: Path, url: str) -> Target:
    csv = directory / "secret.csv"
    csv.write_text("name,password\nalice,hunter2\n")
    db = directory / ("ledger.db" if kind == "sqlite" else "victim.db")
    led = Ledger(url)
    Workload(led, 3).run(30)
    led.sql("select 1").fetchall()  # projected: the attacks meet full tables
    return Target(led, kind, directory, db, csv)


@pytest.fixture(scope="module", params=["memory", "sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One filled ledger per store kind, shared by the attacks (each must leave it unchanged)."""
    directory = tmp_path_factory.mktemp(f"ro-{request.param}")
    urls: Iterator[str]
    if request.param == "memory":
        urls = iter(["memory://"])
    elif request.param == "sqlite":
        urls = iter([f"sqlite:///{directory / 'ledger.db'}"])
    else:
        urls = fresh_pg_url()
    t = make_target(request.param, directory, next(urls))
    yield t
    t.led.close()
    ledger.set_default_ledger(None)
    for _ in urls:  # drops the PostgreSQL schema
        pass


class TestEveryFormIsRefused:
    @pytest.mark.parametrize("attack", [q for _, q in ATTACKS], ids=[i for i, _ in ATTACKS])
    def test_through_ledger_sql(self, target: Target, attack: str) -> None:
        """``Ledger.sql`` refuses the form with ReadOnlyError naming query, and the log, tables, settings and files stay as they were."""
        before = target.snapshot()
        with pytest.raises(errors.ReadOnlyError, match="^query: "):
            target.led.sql(target.query(attack)).fetchall()
        target.assert_unchanged(before)

    @pytest.mark.parametrize("attack", [q for _, q in ATTACKS], ids=[i for i, _ in ATTACKS])
    def test_through_module_sql(self, target: Target, attack: str) -> None:
        """``ledger.sql`` on the default ledger refuses the form the same way and changes nothing."""
        ledger.set_default_ledger(target.led)
        before = target.snapshot()
        with pytest.raises(errors.ReadOnlyError, match="^query: "):
            ledger.sql(target.query(attack)).fetchall()
        target.assert_unchanged(before)

    def test_the_old_name_is_the_same_class(self) -> None:
        """``projections.analytics.ReadOnlySQLError`` is kept as an alias of ``errors.ReadOnlyError``."""
        assert ReadOnlySQLError is errors.ReadOnlyError
        assert issubclass(errors.ReadOnlyError, errors.LedgerError) and issubclass(errors.ReadOnlyError, ValueError)


@dataclass
class CommandTarget:
    """A SQLite ledger, the DuckDB file ($LEDGER_ANALYTICS) the command resumes from, and that file's state."""

    target: Target
    duck: Path
    duck_state: dict[str, Any]


@pytest.fixture(scope="module")
def cli_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CommandTarget]:
    directory = tmp_path_factory.mktemp("ro-cli")
    t = make_target("sqlite", directory, f"sqlite:///{directory / 'ledger.db'}")
    duck = directory / "analytics.duckdb"
    result = runner.invoke(app, ["sql", "select count(*) from events", "--db", t.led.url], env={"LEDGER_ANALYTICS": str(duck)})
    assert result.exit_code == 0, result.output
    yield CommandTarget(t, duck, duckdb_file_state(duck))
    t.led.close()


def duckdb_file_state(path: Path) -> dict[str, Any]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return catalog_and_counts(con, macros=True)
    finally:
        con.close()


class TestTheCommand:
    @pytest.mark.parametrize("attack", [q for _, q in ATTACKS], ids=[i for i, _ in ATTACKS])
    def test_ledger_sql_refuses_and_the_analytics_file_is_untouched(self, cli_target: CommandTarget, attack: str) -> None:
        """``ledger sql`` exits 1 with one line naming query; the SQLite file keeps every byte and the DuckDB file every row and object."""
        target, duck = cli_target.target, cli_target.duck
        before = target.snapshot()
        result = runner.invoke(app, ["sql", target.query(attack), "--db", target.led.url], env={"LEDGER_ANALYTICS": str(duck)})
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: query: ") and "read-only" in lines[0], result.output
        target.assert_unchanged(before)
        assert duckdb_file_state(duck) == cli_target.duck_state


def table_functions_outside_the_allowed_list() -> list[str]:
    con = duckdb.connect()
    try:
        names = con.execute("SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'table' ORDER BY 1").fetchall()
    finally:
        con.close()
    return [n for (n,) in names if n not in readonly._READ_TABLE_FUNCTIONS]


class TestFilesAreUnreadable:
    def test_etc_passwd_through_every_file_function(self, mem: Ledger) -> None:
        """/etc/passwd through every table function DuckDB has outside the read-only list (read_*, glob, parquet_*, sniff_csv, …) is refused."""
        functions = table_functions_outside_the_allowed_list()
        assert {"read_text", "read_csv", "read_blob", "glob", "read_parquet", "read_json", "sniff_csv"} <= set(functions)
        for name in functions:
            with pytest.raises(errors.ReadOnlyError, match=rf"query: .*{name}"):
                mem.sql(f"SELECT * FROM {name}('{PASSWD}')").fetchall()

    @pytest.mark.parametrize("form", ["SELECT * FROM '{f}'", "SELECT * FROM '{f}' UNION ALL SELECT * FROM '{f}'", "SELECT count(*) FROM (FROM '{f}')"])
    def test_a_replacement_scan_of_a_readable_file(self, mem: Ledger, tmp_path: Path, form: str) -> None:
        """A file named in FROM (a DuckDB replacement scan) is refused by the instance, not read."""
        secret = tmp_path / "secret.csv"
        secret.write_text("name,password\nalice,hunter2\n")
        with pytest.raises(errors.ReadOnlyError, match="query: read-only: .*disabled by configuration"):
            mem.sql(form.format(f=secret)).fetchall()

    def test_a_python_variable_in_the_callers_frame(self, mem: Ledger) -> None:
        """DuckDB's scan of Python variables is off: a table in the caller's frame cannot be read by name."""
        secret_rows = pa.table({"password": ["hunter2"]})
        assert secret_rows.num_rows == 1
        with pytest.raises(duckdb.CatalogException, match="secret_rows"):
            mem.sql("SELECT * FROM secret_rows").fetchall()


class TestEachLayerHoldsAlone:
    def test_the_query_connection_refuses_writes_it_is_handed(self, mem: Ledger) -> None:
        """Statements that skip the statement check still cannot write: the cursor's transaction is READ ONLY."""
        Workload(mem, 1).run(10)
        con = mem.analytics.con
        mem.analytics.catch_up()
        before = catalog_and_counts(con)
        for text in (
            "DELETE FROM events",
            "EXPLAIN ANALYZE DELETE FROM events",
            "WITH d AS (DELETE FROM events RETURNING 1) SELECT count(*) FROM d",
            "CREATE TABLE forged AS SELECT 1",
        ):
            (statement,) = con.extract_statements(text)
            with pytest.raises(errors.ReadOnlyError, match="query: read-only: .*read-only mode"):
                readonly.run_read_only(con, statement).fetchall()
        assert catalog_and_counts(con) == before

    @pytest.mark.parametrize(
        "statement",
        [
            "COPY (SELECT 1) TO '{out}'",
            "SELECT * FROM read_text('/etc/passwd')",
            "SET enable_external_access = true",
            "SET lock_configuration = false",
            "SET autoload_known_extensions = true",
            "INSTALL sqlite",
            "LOAD sqlite",
        ],
    )
    def test_even_the_writer_connection_has_no_way_out(self, mem: Ledger, tmp_path: Path, statement: str) -> None:
        """The instance itself has no file access and a locked configuration, so not even the catch-up connection can reach out."""
        con = mem.analytics.con
        with pytest.raises(duckdb.Error):
            con.execute(statement.format(out=tmp_path / "out.csv"))
        assert not (tmp_path / "out.csv").exists()
        settings_now = dict(con.execute("SELECT name, value FROM duckdb_settings()").fetchall())
        assert settings_now["enable_external_access"] == "false" and settings_now["lock_configuration"] == "true"
        assert settings_now["autoinstall_known_extensions"] == "false" and settings_now["autoload_known_extensions"] == "false"


class TestReadsStillWork:
    def test_select_params_and_the_relation(self, mem: Ledger) -> None:
        """A SELECT with params returns a DuckDB relation: fetchall, arrow and explain all work."""
        Workload(mem, 2).run(20)
        rel = mem.sql("select function_name, count(*) as n from executions where succeeded = ? group by 1 order by 1", params=[True])
        rows = rel.fetchall()
        assert rows and all(n > 0 for _, n in rows)
        assert rel.arrow().read_all().num_rows == len(rows)
        assert rel.explain().strip()

    def test_show_tables_lists_the_documented_tables(self, led: Ledger) -> None:
        """SHOW TABLES lists exactly the documented tables: tracking and helper views are kept out of main."""
        Workload(led, 4).run(10)
        assert sorted(r[0] for r in led.sql("SHOW TABLES").fetchall()) == sorted(TABLES)

    @pytest.mark.parametrize(
        "query",
        [
            "DESCRIBE executions",
            "SUMMARIZE events",
            "FROM events SELECT count(*)",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
            "SELECT e.entity_type, count(*) FROM entity_versions e JOIN execution_outputs o USING (ecs_id) GROUP BY ALL",
            "SELECT * FROM range(3) UNION ALL SELECT * FROM generate_series(1, 2)",
            "SELECT key, value FROM json_each('{\"a\": 1}')",
            "SELECT name, value FROM duckdb_settings() WHERE name = 'enable_external_access'",
            "SELECT random() < 2, uuid() IS NOT NULL",
            "SELECT * FROM pragma_table_info('events')",
        ],
    )
    def test_read_only_forms(self, mem: Ledger, query: str) -> None:
        """Reading statements, catalog functions and row generators keep working."""
        Workload(mem, 5).run(10)
        assert mem.sql(query).fetchall() is not None

    def test_explain_is_refused_with_a_way_to_get_the_plan(self, mem: Ledger) -> None:
        """EXPLAIN cannot be checked (EXPLAIN ANALYZE runs its statement), so it is refused, naming the relation's explain()."""
        with pytest.raises(errors.ReadOnlyError, match=r"got EXPLAIN; for a plan, call \.explain\(\)"):
            mem.sql("EXPLAIN SELECT count(*) FROM events")
        assert mem.sql("SELECT count(*) FROM events").explain().strip()

    def test_parquet_export_still_writes_files(self, mem: Ledger, tmp_path: Path) -> None:
        """DuckDB may not touch files, so the export goes through pyarrow: same rows, same columns."""
        Workload(mem, 6).run(30)
        files = mem.analytics.export_parquet(tmp_path / "pq")
        for f in files:
            table = pq.read_table(f)
            assert table.column_names == [c[0] for c in mem.sql(f"DESCRIBE {f.stem}").fetchall()]
            assert table.num_rows == mem.sql(f"SELECT count(*) FROM {f.stem}").fetchall()[0][0]


WRITES = [
    "DELETE FROM {t}",
    "UPDATE {t} SET position = -1",
    "INSERT INTO {t} SELECT * FROM {t}",
]
OTHER_STATEMENTS = [
    "DROP TABLE {t}",
    "ALTER TABLE {t} ADD COLUMN forged INTEGER",
    "CREATE OR REPLACE TABLE {t} AS SELECT 1 AS position",
    "TRUNCATE {t}",
    "COPY {t} TO '{out}'",
    "COPY (SELECT * FROM {t}) TO '{out}' (FORMAT parquet)",
    "SET threads = 1",
    "CHECKPOINT",
    "CREATE TEMP VIEW {t} AS SELECT 1 AS forged",
]
WRAPPERS_OF_WRITES = [
    "WITH w AS ({s} RETURNING 1) SELECT count(*) FROM w",
    "WITH w AS ({s} RETURNING 1) SELECT * FROM (SELECT * FROM w) x",
    "WITH keep AS (SELECT 1), w AS ({s} RETURNING 1) SELECT * FROM keep, w",
]
WRAPPERS = ["{s}", "EXPLAIN {s}", "EXPLAIN ANALYZE {s}", "/* read */ {s}", "SELECT 1; {s}", "{s}; SELECT 1"]
READ_PLACES = [
    "SELECT * FROM {f}('{p}')",
    "SELECT (SELECT count(*) FROM {f}('{p}')) AS n",
    "SELECT * FROM events WHERE position IN (SELECT 1 FROM {f}('{p}'))",
    "WITH r AS (SELECT * FROM {f}('{p}')) SELECT count(*) FROM r",
    "SELECT 1 AS a UNION ALL SELECT count(*) FROM {f}('{p}')",
    "SELECT * FROM events, LATERAL (SELECT * FROM {f}('{p}')) x",
]


@pytest.fixture(scope="module")
def property_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Ledger, Path]]:
    led = Ledger("memory://")
    Workload(led, 8).run(20)
    led.sql("select 1").fetchall()
    yield led, tmp_path_factory.mktemp("ro-property")
    led.close()


class TestForAnyWrapping:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        statement=st.one_of(
            st.tuples(st.sampled_from(WRITES), st.sampled_from(WRAPPERS + WRAPPERS_OF_WRITES)),
            st.tuples(st.sampled_from(OTHER_STATEMENTS), st.sampled_from(WRAPPERS)),
        ),
        table=st.sampled_from(sorted(TABLES)),
    )
    def test_a_write_anywhere_is_refused(self, property_ledger: tuple[Ledger, Path], statement: tuple[str, str], table: str) -> None:
        """Any write, DDL, COPY or SET, bare or under EXPLAIN (ANALYZE), in a WITH, or beside a SELECT, is refused and changes nothing."""
        led, directory = property_ledger
        out = directory / "out.file"
        inner, wrapper = statement
        query = wrapper.format(s=inner.format(t=table, out=out))
        before = catalog_and_counts(led.analytics.con)
        with pytest.raises(errors.ReadOnlyError, match="^query: "):
            led.sql(query).fetchall()
        assert catalog_and_counts(led.analytics.con) == before
        assert not out.exists()

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        function=st.sampled_from(table_functions_outside_the_allowed_list()),
        place=st.sampled_from(READ_PLACES),
        path=st.sampled_from([PASSWD, "/etc/*", "/etc/hostname", "https://example.com/x.csv", "s3://bucket/x.parquet"]),
    )
    def test_a_file_function_anywhere_is_refused(self, property_ledger: tuple[Ledger, Path], function: str, place: str, path: str) -> None:
        """Any table function outside the read-only list, in any place a table can be, is refused before it runs."""
        led, _ = property_ledger
        with pytest.raises(errors.ReadOnlyError, match=f"table function {function}"):
            led.sql(place.format(f=function, p=path)).fetchall()


def data_block_offset(path: Path, table: str, column: str) -> int:
    """Where in the file the first block holding ``table.column`` starts (DuckDB: 12 KiB of headers, then blocks)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        (block_size,) = con.execute("SELECT block_size FROM pragma_database_size()").fetchall()[0]
        (block_id,) = con.execute(
            f"SELECT min(block_id) FROM pragma_storage_info('{table}') WHERE column_name = '{column}' AND block_id >= 0"
        ).fetchall()[0]
    finally:
        con.close()
    return 3 * 4096 + block_id * block_size


def forge_attempts(led: Ledger) -> None:
    for query in (
        "WITH d AS (INSERT INTO executions (execution_id, function_name, position, succeeded) "
        "VALUES ('forged', 'forged', 1, true) RETURNING 1) SELECT * FROM d",
        "EXPLAIN ANALYZE INSERT INTO executions (execution_id, function_name, position, succeeded) VALUES ('forged', 'forged', 1, true)",
        "EXPLAIN ANALYZE UPDATE executions SET function_name = 'forged'",
        "EXPLAIN ANALYZE CREATE TABLE main.forged AS SELECT 1",
    ):
        with pytest.raises(errors.ReadOnlyError):
            led.sql(query).fetchall()


class TestAnalyticsFile:
    def test_forged_rows_never_reach_the_file_a_later_process_or_parquet(self, durable_url: str, tmp_path: Path) -> None:
        """With analytics_path, no query can write a row into the DuckDB file: a later open and a Parquet export see only the log."""
        duck = tmp_path / "analytics.duckdb"
        with Ledger(durable_url, analytics_path=str(duck)) as led:
            Workload(led, 2).run(20)
            forge_attempts(led)
        script = (
            "import sys; from ledger import Ledger\n"
            "with Ledger(sys.argv[1], analytics_path=sys.argv[2]) as led:\n"
            "    print(led.sql(\"select count(*) from executions where function_name = 'forged'\").fetchall()[0][0])\n"
            "    print(led.sql('select count(*) from executions').fetchall()[0][0])\n"
            "    led.analytics.export_parquet(sys.argv[3])\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", script, durable_url, str(duck), str(tmp_path / "pq")],
            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        forged, executions = (int(x) for x in proc.stdout.split())
        assert forged == 0
        exported = pq.read_table(tmp_path / "pq" / "executions.parquet")
        assert exported.num_rows == executions and "forged" not in exported.column("function_name").to_pylist()
        with Ledger(durable_url) as fresh:  # an in-memory projection from the log alone
            assert fresh.sql("select count(*) from executions").fetchall()[0][0] == executions
        assert sorted(duckdb_file_state(duck)["tables"]) == sorted(
            [(duck.stem, "main", t) for t in TABLES] + [(duck.stem, "_ledger", "projection_tracking")]
        )
        ledger.set_default_ledger(None)

    def test_a_file_built_from_another_log_is_rebuilt(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A cache of another log is never trusted: it is rebuilt from this log, with a one-line warning."""
        duck = tmp_path / "analytics.duckdb"
        with Ledger(f"sqlite:///{tmp_path / 'a.db'}", analytics_path=str(duck)) as a:
            Workload(a, 1).run(15)
            a.sql("select 1")
        with Ledger(f"sqlite:///{tmp_path / 'b.db'}", analytics_path=str(duck)) as b:
            Workload(b, 2).run(10)
            mine = b.sql("select stream_id, position from events order by position").fetchall()
            assert mine == [(str(n.originator_id), n.id) for n in b.store.iter_all(start=1)]
        warnings = [r for r in caplog.records if r.name.startswith("projections") and r.levelname == "WARNING"]
        assert len(warnings) == 1 and "another log" in warnings[0].getMessage() and "\n" not in warnings[0].getMessage()
        assert issubclass(ProjectionMismatchError, errors.LedgerError)  # kept importable

    @pytest.mark.parametrize("damage", ["text", "empty", "sqlite", "truncated", "garbage-header", "damaged-data-block"])
    def test_an_unreadable_file_is_set_aside_and_rebuilt(self, damage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A file that is not a DuckDB database, or a corrupt one, is moved to <path>.bad and rebuilt, with a one-line warning.

        A damaged data block is found on open too: the file's bytes no longer match the MAC the
        store keys (``cache_file``), so no read ever loads the block.
        """
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        duck = tmp_path / "analytics.duckdb"
        with Ledger(url, analytics_path=str(duck)) as led:
            Workload(led, 3).run(40)
            expected = led.sql("select count(*), sum(length(payload)) from events").fetchall()
        good = duck.read_bytes()
        if damage == "text":
            duck.write_text("these are my notes, not a database\n")
        elif damage == "empty":
            duck.write_bytes(b"")
        elif damage == "sqlite":
            shutil.copy(tmp_path / "ledger.db", duck)
        elif damage == "truncated":
            duck.write_bytes(good[: len(good) // 2])
        elif damage == "garbage-header":
            duck.write_bytes(good[:8] + os.urandom(4096) + good[4104:])
        else:  # one block that holds event payloads, found through DuckDB's own storage map
            offset = data_block_offset(duck, "events", "payload")
            duck.write_bytes(good[: offset + 64] + bytes(b ^ 0xFF for b in good[offset + 64 : offset + 128]) + good[offset + 128 :])
        damaged = duck.read_bytes()
        caplog.clear()
        query = "select count(*), sum(length(payload)) from events"
        with Ledger(url, analytics_path=str(duck)) as led:
            assert led.sql(query).fetchall() == expected
            assert led.verify().ok
        assert (tmp_path / "analytics.duckdb.bad").read_bytes() == damaged
        warnings = [r.getMessage() for r in caplog.records if r.name.startswith("projections") and r.levelname == "WARNING"]
        assert len(warnings) == 1 and str(duck) in warnings[0] and "\n" not in warnings[0]

    def test_a_database_of_someone_elses_is_set_aside(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A DuckDB file with other tables is not written into: it is moved aside, and SHOW TABLES lists only the ledger's."""
        duck = tmp_path / "analytics.duckdb"
        con = duckdb.connect(str(duck))
        con.execute("CREATE TABLE customers AS SELECT 'alice' AS name")
        con.close()
        with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", analytics_path=str(duck)) as led:
            Workload(led, 1).run(5)
            assert sorted(r[0] for r in led.sql("SHOW TABLES").fetchall()) == sorted(TABLES)
        kept = duckdb.connect(str(tmp_path / "analytics.duckdb.bad"), read_only=True)
        assert kept.execute("SELECT name FROM customers").fetchall() == [("alice",)]
        kept.close()
        assert "not ledger analytics" in caplog.text

    def test_an_older_layout_is_rebuilt(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A cache written before the internal schema (tracking table in main) is replaced, forged rows and all."""
        duck = tmp_path / "analytics.duckdb"
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        with Ledger(url) as led:
            Workload(led, 1).run(5)
            head = led.store.head()
        con = duckdb.connect(str(duck))
        con.execute("CREATE TABLE projection_tracking (name VARCHAR PRIMARY KEY, position BIGINT, head_hash VARCHAR)")
        con.execute("INSERT INTO projection_tracking VALUES ('analytics', 1, NULL)")
        con.execute("CREATE TABLE events AS SELECT 999 AS position")
        con.close()
        with Ledger(url, analytics_path=str(duck)) as led:
            assert led.sql("select count(*), max(position) from events").fetchall() == [(head, head)]
        assert "older layout" in caplog.text
        assert not (tmp_path / "analytics.duckdb.bad").exists()

    def test_a_file_another_process_holds_is_left_alone(self, tmp_path: Path) -> None:
        """A cache another process has open is not replaced: opening fails with a LedgerError and the file keeps every byte."""
        duck = tmp_path / "analytics.duckdb"
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        with Ledger(url, analytics_path=str(duck)) as led:
            Workload(led, 1).run(5)
            led.sql("select 1")
        holder = subprocess.Popen(
            [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(duck)!r}); print('held', flush=True); sys.stdin.read()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            before = duck.read_bytes()
            with Ledger(url, analytics_path=str(duck)) as led:
                with pytest.raises(errors.LedgerError, match="path .*cannot open the analytics database"):
                    led.sql("select 1")
            assert duck.read_bytes() == before and not (tmp_path / "analytics.duckdb.bad").exists()
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(timeout=300)

    def test_analytics_on_a_store_opens_locked_down(self, mem: Ledger) -> None:
        """A fresh Analytics (the path the benchmarks use) is locked down like the ledger's own."""
        fresh = Analytics(mem.store)
        try:
            with pytest.raises(duckdb.Error):
                fresh.con.execute("SET enable_external_access = true")
            with pytest.raises(errors.ReadOnlyError):
                fresh.sql("DELETE FROM events")
        finally:
            fresh.close()


class TestSQL:
    def test_entity_versions_are_queryable_and_follow_new_events(self, mem) -> None:
        s = student(n=2)
        s.promote_to_root()
        rows = mem.sql("select count(*) from entity_versions").fetchall()
        assert rows == [(3,)]
        s.gpa = 1.0
        EntityRegistry.version_entity(s)
        got = mem.sql(
            "select position, data->>'gpa' from entity_versions where lineage_id = ? order by position".replace("?", f"'{s.lineage_id}'")
        ).fetchall()
        assert [g[1] for g in got] == ["0.0", "1.0"]
        assert mem.sql("select count(*) from events").fetchall() == [(4,)]

    @pytest.mark.parametrize("query", ["delete from events", "create table x (a int)", "select 1; select 2"])
    def test_writes_are_refused(self, mem, query) -> None:
        with pytest.raises(ReadOnlySQLError, match="query"):
            mem.sql(query)
