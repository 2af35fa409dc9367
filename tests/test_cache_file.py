"""The analytics file is authenticated against the store: rows edited behind the ledger's back are never served."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

import ledger
from ledger import CallableRegistry, Ledger
from ledger.cli import app
from ledger.cli.commands import open_reader
from ledger.cli.ui import create_app
from projections import cache_file

from .models import Student

runner = CliRunner()
FORGED = "select count(*) as n from executions where function_name = 'forged'"


def cache_double(s: Student) -> Student:
    s.gpa *= 2
    return s


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A SQLite ledger with two executions, and its analytics file built by ``ledger sql``."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    CallableRegistry.register("cache_double")(cache_double)
    try:
        with ledger.connect(url) as led:
            s = Student(name="Ann", gpa=1.0)
            led.registry.register_entity(s)
            CallableRegistry.execute("cache_double", s=s)
            CallableRegistry.execute("cache_double", s=s)
    finally:
        CallableRegistry.unregister("cache_double")
        ledger.set_default_ledger(None)
    result = runner.invoke(app, ["sql", FORGED, "--format", "json", "--db", url])
    assert result.exit_code == 0 and json.loads(result.stdout) == [{"n": 0}], result.output
    return url


def cache_of(url: str) -> Path:
    return Path(url[len("sqlite:///"):] + cache_file.SUFFIX)


def forge(url: str) -> None:
    """Rename every execution in the cache with DuckDB itself, as an insider with the file would."""
    con = duckdb.connect(str(cache_of(url)))
    try:
        con.execute("UPDATE executions SET function_name = 'forged'")
        assert con.execute(FORGED).fetchall() == [(2,)]
    finally:
        con.close()


class TestEditedCache:
    def test_ledger_sql_rebuilds_an_edited_file_with_one_warning(self, store: str, caplog: pytest.LogCaptureFixture) -> None:
        """`ledger sql` answers from the log, not from the edited rows, and says why once."""
        forge(store)
        with caplog.at_level(logging.WARNING, logger="projections.analytics"):
            result = runner.invoke(app, ["sql", FORGED, "--format", "json", "--db", store])
        assert result.exit_code == 0 and json.loads(result.stdout) == [{"n": 0}], result.output
        warned = [r.getMessage() for r in caplog.records if "MAC" in r.getMessage()]
        assert len(warned) == 1 and "was changed since this ledger wrote it" in warned[0]
        result = runner.invoke(app, ["sql", "select count(*) as n from executions", "--format", "json", "--db", store])
        assert json.loads(result.stdout) == [{"n": 2}]

    def test_export_and_lineage_never_serve_edited_rows(self, store: str, tmp_path: Path) -> None:
        """`export --parquet` and `lineage` read the rebuilt tables."""
        forge(store)
        out = tmp_path / "pq"
        result = runner.invoke(app, ["export", "--parquet", str(out), "--db", store])
        assert result.exit_code == 0, result.output
        names = pq.read_table(out / "executions.parquet").column("function_name").to_pylist()
        assert names == ["cache_double", "cache_double"]
        forge(store)
        with Ledger(store, create=False, analytics_path=str(cache_of(store))) as led:
            some = led.sql("select ecs_id from entity_versions order by position limit 1").fetchall()[0][0]
            graph = led.lineage_graph(some).to_json()
        assert "forged" not in json.dumps(graph, default=str)

    def test_the_web_sql_page_never_serves_edited_rows(self, store: str) -> None:
        """/sql on `ledger ui` reads the rebuilt tables."""
        forge(store)
        with open_reader(store) as reader:
            client = TestClient(create_app(reader))
            answer = client.get("/sql", params={"q": FORGED, "format": "json"})
        assert answer.status_code == 200 and answer.json() == [{"n": 0}]

    def test_an_untouched_file_is_reused_without_a_rebuild(self, store: str, caplog: pytest.LogCaptureFixture) -> None:
        """The MAC check accepts the file the ledger wrote: no warning, nothing applied again."""
        with caplog.at_level(logging.WARNING, logger="projections.analytics"):
            with Ledger(store, create=False, analytics_path=str(cache_of(store))) as led:
                assert led.analytics.catch_up() == 0
                assert led.sql("select count(*) from executions").fetchall() == [(2,)]
        assert not caplog.records

    def test_a_copied_file_with_its_mac_is_checked_by_content(self, store: str, tmp_path: Path) -> None:
        """A file whose inode changed (a copy, a restore) is hashed whole: same bytes pass, and a MAC
        made under another store's key does not."""
        path = cache_of(store)
        key = b"k" * 32
        assert cache_file.unsealed(path, key) is not None  # sealed under the store's key, not this one
        copy = tmp_path / "copy.duckdb"
        copy.write_bytes(path.read_bytes())
        cache_file.seal(copy, key)
        moved = tmp_path / "moved.duckdb"
        moved.write_bytes(copy.read_bytes())
        Path(str(moved) + ".mac").write_bytes(Path(str(copy) + ".mac").read_bytes())
        assert cache_file.unsealed(moved, key) is None
        with moved.open("r+b") as f:
            f.seek(-1, 2)
            last = f.read(1)
            f.seek(-1, 2)
            f.write(bytes([last[0] ^ 1]))
        assert cache_file.unsealed(moved, key) == "was changed since this ledger wrote it (its MAC does not match)"
