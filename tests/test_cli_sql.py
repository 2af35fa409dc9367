"""``ledger sql`` (row limit, stdin, parameters, DuckDB's hints, the documented tables),
the ``ledger`` app's own options (--version, -h, completion), and ``Ledger.sql`` in a notebook.

Driven through typer's runner at 80 columns, output not a TTY, and through the
installed console script; the demo database is built once and only read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from rich.console import Console
from typer.main import get_command
from typer.testing import CliRunner, Result

import ledger.cli.commands as cli
from ledger import Ledger
from ledger.cli import app
from ledger.cli.demo import build_demo
from ledger.errors import LedgerError
from projections.tables import COLUMNS, TABLES

runner = CliRunner()
SCRIPT = Path(sys.executable).with_name("ledger")


@pytest.fixture(autouse=True)
def narrow_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """80 columns, not a terminal: what a pipe gets."""
    monkeypatch.setattr(cli, "console", Console(width=80, force_terminal=False))
    monkeypatch.setattr(cli, "err", Console(width=80, stderr=True, force_terminal=False))
    monkeypatch.delenv("LEDGER_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "80")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli-sql') / 'demo.db'}"
    build_demo(url).ledger.close()
    return url


@pytest.fixture(scope="module")
def head(url: str) -> int:
    with Ledger(url, create=False) as led:
        return led.store.head()


def run(url: str, *args: str, input: str | None = None) -> Result:
    return runner.invoke(app, ["sql", *args, "--db", url], input=input)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


class TestLimit:
    def test_json_and_csv_honour_the_limit_and_the_total_goes_to_stderr(self, url: str, head: int) -> None:
        """stdout holds only the rows asked for; the note on stderr says how many there are."""
        result = run(url, "select position from events order by position desc", "--limit", "5", "-f", "json")
        assert [r["position"] for r in json.loads(ok(result))] == [head - i for i in range(5)]
        assert result.stderr.strip() == f"5 of {head:,} rows; --limit N or --limit 0 for all"
        result = run(url, "select position from events order by position", "-n", "3", "-f", "csv")
        assert ok(result).splitlines() == ["position", "1", "2", "3"]
        assert f"3 of {head:,} rows" in result.stderr

    def test_limit_zero_prints_every_row_without_a_note(self, url: str, head: int) -> None:
        result = run(url, "select position from events", "--limit", "0", "-f", "json")
        assert len(json.loads(ok(result))) == head and result.stderr == ""

    def test_the_default_limit_is_100(self, url: str, head: int) -> None:
        assert head < 100  # the demo: everything fits, so no note
        result = run(url, "select position from events", "-f", "json")
        assert len(json.loads(ok(result))) == head and result.stderr == ""
        query = "select * from range(250)"
        result = run(url, query, "-f", "json")
        assert len(json.loads(ok(result))) == 100
        assert "100 of 250 rows" in result.stderr

    def test_table_format_notes_the_total(self, url: str, head: int) -> None:
        result = run(url, "select position, event_type from events", "--limit", "2")
        assert "entity.version" in ok(result)
        assert f"2 of {head:,} rows" in result.stderr

    def test_negative_limit_is_refused(self, url: str) -> None:
        assert run(url, "select 1", "--limit", "-1").exit_code == 2

    def test_page_counts_in_duckdb_and_keeps_the_order(self, url: str, head: int) -> None:
        """The library call behind the command: first rows in the query's order, and the total."""
        with Ledger(url, create=False) as led:
            page = led.analytics.page("select position from events order by position desc", limit=2)
            assert (page.columns, page.rows, page.total) == (["position"], [(head,), (head - 1,)], head)
            assert led.analytics.page("select 1 where false", limit=2).total == 0
            assert led.analytics.page("select position from events", limit=None).total == head


class TestQueryInput:
    def test_query_from_stdin_with_params(self, url: str, head: int) -> None:
        query = "select count(*) as n from events\nwhere position > ? and event_type like ?"
        result = run(url, "-", "--param", "10", "--param", "%", "-f", "json", input=query)
        assert json.loads(ok(result)) == [{"n": head - 10}]

    def test_params_are_strings_and_params_json_types_them(self, url: str) -> None:
        out = ok(run(url, "select ? as a, typeof(?) as t", "-p", "7", "-p", "x", "-f", "json"))
        assert json.loads(out) == [{"a": "7", "t": "VARCHAR"}]
        out = ok(run(url, "select ? + 1 as a, ? as b, ? as c", "--params-json", '[41, true, null]', "-f", "json"))
        assert json.loads(out) == [{"a": 42, "b": True, "c": None}]

    @pytest.mark.parametrize(
        "args, fragment",
        [
            (["select ?", "--param", "1", "--params-json", "[1]"], "not both"),
            (["select ?", "--params-json", "[1,"], "--params-json: not JSON"),
            (["select ?", "--params-json", '{"a": 1}'], "JSON array"),
        ],
    )
    def test_bad_params_are_one_line(self, url: str, args: list[str], fragment: str) -> None:
        assert fragment in one_line_error(run(url, *args))

    def test_missing_param_is_one_line(self, url: str) -> None:
        assert "error:" in one_line_error(run(url, "select ? as a, ? as b", "--param", "1"))


class TestErrors:
    @pytest.mark.parametrize(
        "query, hint",
        [
            ("select * from executionz", 'Did you mean "executions"?'),
            ("select function_nam from executions", 'Candidate bindings: "function_name"'),
            ("select lenght('a')", 'Did you mean "length"?'),
        ],
    )
    def test_duckdb_hint_is_kept_on_the_one_line(self, url: str, query: str, hint: str) -> None:
        line = one_line_error(run(url, query))
        assert hint in line and " — " in line and "LINE 1" not in line

    def test_read_only_refusal_is_unchanged(self, url: str) -> None:
        assert "read-only" in one_line_error(run(url, "delete from events"))
        assert "exactly one statement" in one_line_error(run(url, "show all tables; delete from events"))


class TestDocumentedTables:
    @pytest.mark.parametrize("analytics", ["memory", None])
    @pytest.mark.parametrize("query", ["SHOW TABLES", "show tables;", "SHOW ALL TABLES", " show  all tables ; "])
    def test_show_tables_lists_only_the_documented_tables(self, url: str, query: str, analytics: str | None) -> None:
        extra = ["--analytics", analytics] if analytics else []
        rows = json.loads(ok(run(url, query, "-f", "json", *extra)))
        assert sorted(r["name"] for r in rows) == sorted(TABLES)

    def test_show_all_tables_keeps_its_columns(self, url: str) -> None:
        rows = json.loads(ok(run(url, "show all tables", "-f", "json")))
        events = next(r for r in rows if r["name"] == "events")
        assert events["schema"] == "main" and events["column_names"] == [c for c, _ in COLUMNS["events"]]

    def test_help_lists_every_table_and_column(self) -> None:
        for flag in ("--help", "-h"):
            result = runner.invoke(app, ["sql", flag])
            words = ok(result).replace(",", " ").split()
            for table, columns in COLUMNS.items():
                assert f"{table}:" in words, table
                assert all(col in words for col, _ in columns), table
            assert "--limit" in result.stdout and "--param" in result.stdout and "stdin" in result.stdout

    def test_columns_match_the_tables_duckdb_makes(self, url: str) -> None:
        """The help's listing is the tables' definition: what DuckDB reports for each table."""
        with Ledger(url, create=False) as led:
            for table, columns in COLUMNS.items():
                described = led.sql(f"select column_name from (describe {table})").fetchall()
                assert [c for (c,) in described] == [c for c, _ in columns], table


class TestAppOptions:
    def test_version(self) -> None:
        result = runner.invoke(app, ["--version"])
        assert ok(result).strip() == f"ledger (entity-ledger) {metadata.version('entity-ledger')}"

    def test_dash_h_on_every_command(self) -> None:
        assert "Usage:" in ok(runner.invoke(app, ["-h"]))
        for name in get_command(app).commands:  # type: ignore[attr-defined]
            assert f"ledger {name}" in ok(runner.invoke(app, [name, "-h"])), name

    def test_completion_options_are_offered(self) -> None:
        out = ok(runner.invoke(app, ["--help"]))
        assert "--install-completion" in out and "--show-completion" in out


@pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is not installed beside this Python")
class TestConsoleScript:
    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "LEDGER_URL"}
        return {**env, "COLUMNS": "80", **extra}

    def test_sql_from_stdin_piped(self, url: str, head: int) -> None:
        proc = subprocess.run(
            [str(SCRIPT), "sql", "-", "--param", "3", "--limit", "2", "-f", "json", "--db", url],
            input="select position from events where position > ? order by position",
            capture_output=True, text=True, env=self.env(), timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == [{"position": 4}, {"position": 5}]
        assert proc.stderr.strip() == f"2 of {head - 3:,} rows; --limit N or --limit 0 for all"

    def test_hint_and_version(self, url: str) -> None:
        proc = subprocess.run(
            [str(SCRIPT), "sql", "select * from executionz", "--db", url],
            capture_output=True, text=True, env=self.env(), timeout=300,
        )
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.strip().splitlines() == [
            'error: Catalog Error: Table with name executionz does not exist! — Did you mean "executions"?'
        ]
        proc = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, env=self.env(), timeout=300)
        assert proc.returncode == 0 and proc.stdout.strip().endswith(metadata.version("entity-ledger"))

    def test_completion_completes_and_installs(self, tmp_path: Path) -> None:
        """bash completion answers for the real script; --install-completion writes into $HOME (a temp dir here)."""
        env = self.env(_LEDGER_COMPLETE="complete_bash", COMP_WORDS="ledger sq", COMP_CWORD="1")
        proc = subprocess.run([str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300)
        assert proc.stdout.split() == ["sql"], proc.stderr
        env = self.env(_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1", HOME=str(tmp_path))
        proc = subprocess.run([str(SCRIPT), "--show-completion", "bash"], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0 and "_ledger_completion" in proc.stdout
        proc = subprocess.run([str(SCRIPT), "--install-completion", "bash"], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "_LEDGER_COMPLETE" in (tmp_path / ".bashrc").read_text() + "".join(
            p.read_text() for p in tmp_path.rglob("*") if p.is_file()
        )


class TestNotebook:
    def test_arrow_readers_leave_the_ledger_usable(self, url: str, head: int) -> None:
        with Ledger(url, create=False) as led:
            first = led.sql("select * from events").arrow()
            second = led.sql("select * from executions").arrow()
            assert led.sql("select count(*) from events").fetchall() == [(head,)]
            rel = led.sql("select position from events order by position")
            reader = rel.arrow()  # not read yet
            assert rel.fetchall()[:2] == [(1,), (2,)]
            assert rel.to_arrow_reader().read_all().num_rows == head
            assert first.read_all().num_rows == head and second.read_all().num_rows > 0
            assert reader.read_all().column("position").to_pylist()[:2] == [1, 2]

    def test_df_works_or_names_the_extra(self, url: str) -> None:
        with Ledger(url, create=False) as led:
            rel = led.sql("select position from events order by position limit 3")
            try:
                import pandas  # noqa: F401
            except ImportError:
                with pytest.raises(LedgerError, match=r"pip install -e '\.\[notebook\]'"):
                    rel.df()
            else:
                assert rel.df()["position"].tolist() == [1, 2, 3]
            assert rel.fetchall() == [(1,), (2,), (3,)]
