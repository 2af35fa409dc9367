"""The ``ledger`` command, driven through typer's runner on one demo-filled SQLite file.

The demo database is built once per module (``build_demo``) and only read by
the tests; tests that change a store work on their own copy.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from uuid import UUID

import pytest
from typer.main import get_command
from typer.testing import CliRunner, Result

import ledger.cli.commands as cli
from ledger import Ledger
from ledger.cli import app
from ledger.cli.demo import build_demo
from ledger.cli.render import OutputConsole

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(autouse=True)
def piped_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output as when stdout is piped (tab-separated rows), whatever $FORCE_COLOR says;
    tests/test_cli_output.py covers the terminal layouts."""
    monkeypatch.setattr(cli, "console", OutputConsole(width=80, force_terminal=False))
    monkeypatch.setattr(cli, "err", OutputConsole(width=80, stderr=True, force_terminal=False))
    monkeypatch.delenv("LEDGER_URL", raising=False)


class Demo:
    """Facts about the module's demo database, read through the library."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        result = build_demo(self.url)
        led = result.ledger
        self.alice = result.featured_lineage
        self.alice_versions = [r.ecs_id for r in led.index.lineages[self.alice]]
        self.alice_positions = [r.position for r in led.index.lineages[self.alice]]
        self.head = led.store.head()
        self.failure = result.failure
        led.close()

    def run(self, *args: str) -> Result:
        return runner.invoke(app, [*args, "--db", self.url])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    return Demo(tmp_path_factory.mktemp("cli") / "demo.db")


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def data_rows(out: str) -> list[list[str]]:
    """The rows of piped table output (tab-separated, after the header line)."""
    lines = out.splitlines()
    assert lines and "\t" in lines[0], out
    return [line.split("\t") for line in lines[1:]]


def one_line_error(result: Result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert fragment in lines[0], lines[0]


class TestHelp:
    def test_every_command_has_help_with_an_example(self) -> None:
        """Each command documents itself with a runnable example line."""
        names = sorted(get_command(app).commands)  # type: ignore[attr-defined]
        expected = {"as-of", "demo", "diff", "export", "history", "lineage", "log", "replay", "show", "sql", "verify"}
        assert expected <= set(names)
        for name in names:
            out = ok(runner.invoke(app, [name, "--help"]))
            assert "Example:" in out and f"ledger {name}" in out, name


class TestStoreURL:
    @pytest.mark.parametrize("command", [["log"], ["verify"], ["history", "00000000-0000-0000-0000-000000000000"]])
    def test_unknown_scheme_is_one_line(self, command: list[str]) -> None:
        """A bad URL names itself; the command never prints a traceback."""
        one_line_error(runner.invoke(app, [*command, "--db", "bogus://x"]), "unknown scheme 'bogus'")

    def test_missing_sqlite_file_is_an_error_not_a_new_ledger(self, tmp_path: Path) -> None:
        """Reading commands refuse to create an empty database where the user mistyped a path."""
        path = tmp_path / "typo.db"
        one_line_error(runner.invoke(app, ["log", "--db", f"sqlite:///{path}"]), "no ledger database")
        assert not path.exists()

    def test_ledger_url_environment_variable_selects_the_store(self, demo: Demo) -> None:
        """Without --db the command reads $LEDGER_URL."""
        out = ok(runner.invoke(app, ["verify"], env={"LEDGER_URL": demo.url}))
        assert f"ok: {demo.head} events verified" in out


class TestLog:
    def test_recent_events_oldest_first(self, demo: Demo) -> None:
        """--limit N shows the last N positions, in order."""
        out = ok(demo.run("log", "--limit", "3"))
        shown = [int(row[0]) for row in data_rows(out)]
        assert shown == [demo.head - 2, demo.head - 1, demo.head]

    def test_filter_by_type_prefix(self, demo: Demo) -> None:
        """--type execution keeps completed and failed executions only."""
        out = ok(demo.run("log", "--type", "execution", "--limit", "100"))
        rows = ["\t".join(row) for row in data_rows(out)]
        assert rows and all("execution.completed" in r or "execution.failed" in r for r in rows)
        assert sum("execution.failed" in r for r in rows) == 1
        assert sum("execution.completed" in r for r in rows) == 13

    def test_filter_by_function(self, demo: Demo) -> None:
        """--function picks one registered function's executions, the failure with its message."""
        out = ok(demo.run("log", "--function", "school.enroll"))
        rows = ["\t".join(row) for row in data_rows(out)]
        assert len(rows) == 1 and "execution.failed" in rows[0] and "FAILED ValueError" in rows[0]
        assert "school.grade_points" in ok(demo.run("log", "--function", "school.grade_points"))


class TestShow:
    def test_entity_with_children_as_stored(self, demo: Demo) -> None:
        """A lineage id shows its latest version, children inlined."""
        out = ok(demo.run("show", f"@{demo.alice}"))
        header, body = out.split("\n", 1)
        assert f"Student ecs_id {demo.alice_versions[-1]}" in header and "version 4" in header
        data = json.loads(body)
        assert data["name"] == "Alice Liddell" and data["gpa"] == 2.75
        assert [g["score"] for g in data["transcript"]["grades"]] == [2.25, 2.75, 3.25]

    def test_value_at_a_path(self, demo: Demo) -> None:
        """A path walks children and list indexes down to a plain value."""
        out = ok(demo.run("show", f"@{demo.alice_versions[0]}.transcript.grades.1.score"))
        assert out.splitlines()[0].startswith("Grade ecs_id") and json.loads(out.split("\n", 1)[1]) == 2.5

    @pytest.mark.parametrize(
        "address, fragment",
        [
            ("@not-a-uuid", "does not start with a uuid"),
            ("@00000000-0000-0000-0000-000000000000", "no stored entity version or lineage"),
            ("@{alice}.transcript.nope", "has no field 'nope'"),
            ("@{alice}.transcript.grades.9", "not a valid index"),
        ],
    )
    def test_bad_address(self, demo: Demo, address: str, fragment: str) -> None:
        one_line_error(demo.run("show", address.format(alice=demo.alice)), fragment)


class TestHistoryAsOfDiff:
    def test_history_lists_every_version_with_its_changes(self, demo: Demo) -> None:
        """Four versions of Alice: created, gpa computed, curved, renamed."""
        out = ok(demo.run("history", str(demo.alice)))
        rows = data_rows(out)
        assert [r[3] for r in rows] == [str(v) for v in demo.alice_versions]
        assert rows[0][4] == "registered" and rows[0][5] == "created" and "gpa: 0.0 -> 2.5" in out
        assert "transcript.grades.0.score: 2.0 -> 2.25" in out and "name: 'Alice' -> 'Alice Liddell'" in out

    def test_history_accepts_any_version_id_of_the_lineage(self, demo: Demo) -> None:
        data = json.loads(ok(demo.run("history", str(demo.alice_versions[1]), "--format", "json")))
        assert data["lineage_id"] == str(demo.alice) and len(data["versions"]) == 4

    def test_history_bad_id(self, demo: Demo) -> None:
        one_line_error(demo.run("history", "not-a-uuid"), "lineage_id")
        one_line_error(demo.run("history", str(UUID(int=7))), "lineage_id")

    def test_as_of_position_and_time(self, demo: Demo) -> None:
        """The version current at a position; the same point named by its time."""
        pos = demo.alice_positions[1]
        out = ok(demo.run("as-of", str(demo.alice), "--position", str(pos + 1)))
        assert f"ecs_id {demo.alice_versions[1]}" in out and "version 2 of 4" in out
        with Ledger(demo.url) as led:
            at = led.index.records[demo.alice_versions[2]].recorded_at.isoformat()
        out = ok(demo.run("as-of", str(demo.alice), "--at", at))
        assert f"ecs_id {demo.alice_versions[2]}" in out and '"gpa": 2.75' in out

    def test_as_of_before_the_entity_existed(self, demo: Demo) -> None:
        out = ok(demo.run("as-of", str(demo.alice), "--position", "1"))
        assert "did not exist yet at position 1" in out

    @pytest.mark.parametrize(
        "args, fragment",
        [
            ([], "exactly one of --position or --at"),
            (["--position", "3", "--at", "2026-01-01"], "exactly one of"),
            (["--at", "yesterday"], "--at: 'yesterday' is not an ISO"),
        ],
    )
    def test_as_of_bad_options(self, demo: Demo, args: list[str], fragment: str) -> None:
        one_line_error(demo.run("as-of", str(demo.alice), *args), fragment)

    def test_diff_between_two_versions(self, demo: Demo) -> None:
        out = ok(demo.run("diff", str(demo.alice_versions[1]), str(demo.alice_versions[2])))
        assert "transcript.grades.1.score" in out and "2.5" in out and "2.75" in out
        assert "name" not in [row[0] for row in data_rows(out)]

    def test_diff_bad_id(self, demo: Demo) -> None:
        one_line_error(demo.run("diff", str(demo.alice_versions[0]), "zzz"), "ecs_id_b")


class TestWithoutClasses:
    def test_show_and_history_read_stored_data_when_classes_cannot_be_imported(self, tmp_path: Path) -> None:
        """A store written by a module this process cannot import is still readable."""
        module = tmp_path / "private_models_7f3a.py"
        module.write_text(
            textwrap.dedent(
                """
                from ledger import Entity, Ledger
                class Item(Entity):
                    label: str
                    qty: int = 0
                class Box(Entity):
                    items: list[Item] = []
                def fill(url):
                    with Ledger(url) as led:
                        box = Box(items=[Item(label="a", qty=1)])
                        led.registry.register_entity(box)
                        box.items[0].qty = 5
                        led.registry.version_entity(box)
                        print(box.lineage_id)
                """
            )
        )
        url = f"sqlite:///{tmp_path / 'private.db'}"
        code = f"import private_models_7f3a as m; m.fill({url!r})"
        env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
        lineage = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout.strip()
        with pytest.raises(ImportError):
            __import__("private_models_7f3a")
        out = ok(runner.invoke(app, ["show", f"@{lineage}.items.0", "--db", url]))
        assert json.loads(out.split("\n", 1)[1])["qty"] == 5
        out = ok(runner.invoke(app, ["history", lineage, "--db", url]))
        assert "items.0.qty: 1 -> 5" in out


class TestSQL:
    def test_table(self, demo: Demo) -> None:
        out = ok(demo.run("sql", "select count(*) as failed, min(function_name) as f from executions where not succeeded"))
        assert out.splitlines() == ["failed\tf", "1\tschool.enroll"]

    def test_csv(self, demo: Demo) -> None:
        out = ok(demo.run("sql", "select event_type, count(*) as n from events group by 1 order by 1", "--format", "csv"))
        rows = list(csv.reader(io.StringIO(out)))
        assert rows[0] == ["event_type", "n"]
        assert sum(int(n) for _, n in rows[1:]) == demo.head

    def test_json_is_a_list_of_row_objects(self, demo: Demo) -> None:
        out = ok(demo.run("sql", "select function_name, succeeded from executions where function_name = 'school.enroll'", "-f", "json"))
        assert json.loads(out) == [{"function_name": "school.enroll", "succeeded": False}]

    @pytest.mark.parametrize(
        "query, fragment", [("delete from events", "read-only"), ("selec 1", "syntax error"), ("select * from nope", "nope")]
    )
    def test_bad_query_is_one_line(self, demo: Demo, query: str, fragment: str) -> None:
        one_line_error(demo.run("sql", query), fragment)


class TestLineage:
    def test_mermaid_dot_and_json(self, demo: Demo) -> None:
        """The same graph in three notations, each naming Alice's versions."""
        first = str(demo.alice_versions[0])
        mermaid = ok(demo.run("lineage", str(demo.alice), "--format", "mermaid"))
        assert mermaid.lstrip().startswith(("graph", "flowchart"))
        dot = ok(demo.run("lineage", str(demo.alice), "--format", "dot"))
        assert dot.lstrip().startswith("digraph") and first in dot
        data = json.loads(ok(demo.run("lineage", str(demo.alice), "--format", "json")))
        assert first in json.dumps(data)

    def test_direction_and_depth_narrow_the_graph(self, demo: Demo) -> None:
        def size(*args: str) -> int:
            data = json.loads(ok(demo.run("lineage", str(demo.alice_versions[1]), "-f", "json", *args)))
            return len(data["nodes"])

        assert size("--direction", "up", "--depth", "1") < size("--direction", "both")

    def test_bad_id(self, demo: Demo) -> None:
        result = demo.run("lineage", "not-a-uuid")
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1


class TestVerifyReplayExport:
    def test_verify_ok(self, demo: Demo) -> None:
        assert f"ok: {demo.head} events verified" in ok(demo.run("verify"))

    def test_verify_names_the_first_edited_position(self, demo: Demo, tmp_path: Path) -> None:
        """An edited payload on a copy of the file: exit 1 and the bad position."""
        copy = tmp_path / "tampered.db"
        shutil.copy(demo.path, copy)
        conn = sqlite3.connect(copy)
        (state,) = conn.execute("SELECT state FROM stored_events WHERE rowid = 5").fetchone()
        conn.execute("UPDATE stored_events SET state = ? WHERE rowid = 5", (bytes(state).replace(b'"Alice"', b'"Eve"'),))
        conn.commit()
        conn.close()
        result = runner.invoke(app, ["verify", "--db", f"sqlite:///{copy}"])
        assert result.exit_code == 1 and "position 5" in result.output and "first bad position 5" in result.output

    def test_replay_reports_events_per_second(self, demo: Demo) -> None:
        out = ok(demo.run("replay"))
        assert f"replayed {demo.head} events" in out and "events/s" in out

    def test_projections_in_a_duckdb_file_resume_and_rebuild(
        self, demo: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        duck = tmp_path / "analytics.duckdb"
        monkeypatch.setenv("LEDGER_ANALYTICS", str(duck))
        first = ok(demo.run("sql", "select count(*) as n from events", "--format", "json"))
        assert duck.is_file() and f'"n": {demo.head}' in first
        with Ledger(demo.url, analytics_path=str(duck)) as led:
            assert led.analytics.position == demo.head  # resumed: nothing left to apply
            assert led.analytics.catch_up() == 0
        assert f"replayed {demo.head} events" in ok(demo.run("replay"))
        assert f'"n": {demo.head}' in ok(demo.run("sql", "select count(*) as n from events", "--format", "json"))

    def test_export_writes_one_parquet_file_per_table(self, demo: Demo, tmp_path: Path) -> None:
        import pyarrow.parquet as pq

        out = ok(demo.run("export", "--parquet", str(tmp_path / "pq")))
        files = {p.stem: p for p in (tmp_path / "pq").glob("*.parquet")}
        assert {"events", "entity_versions", "executions"} <= set(files)
        assert pq.read_table(files["events"]).num_rows == demo.head
        assert str(files["events"]) in out


class TestDemo:
    def test_console_script_runs_the_demo(self, tmp_path: Path) -> None:
        """The installed ``ledger`` script fills a new file and prints history, lineage and SQL."""
        script = Path(sys.executable).parent / "ledger"
        url = f"sqlite:///{tmp_path / 'demo.db'}"
        env = {**os.environ, "COLUMNS": "200"}
        proc = subprocess.run([str(script), "demo", "--db", url], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        assert "history of Student lineage" in out and "name: 'Alice' -> 'Alice Liddell'" in out
        assert "executions per function" in out and "school.enroll" in out
        assert "verify: ok" in out and "Traceback" not in proc.stderr
        assert "A7" in out and "B6" in out and "isolation=process" in out

    def test_demo_uses_every_pattern_and_records_the_failure(self, demo: Demo) -> None:
        """The demo's log holds 14 executions (one failed), three semantics and a config entity."""
        with Ledger(demo.url) as led:
            rows = dict(led.sql("select semantic, count(*) from execution_outputs group by 1").fetchall())
            failed = led.sql("select error_type from executions where not succeeded").fetchall()
        assert set(rows) == {"mutation", "creation", "detachment"}
        assert failed == [("ValueError",)] and demo.failure.startswith("seminar is full")
