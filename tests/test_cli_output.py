"""The ``ledger`` command never hides data (issue 13): no column dropped, no value cut.

Piped (stdout not a terminal) every table is tab-separated text, a header line
then one line per row; in a terminal (``TTY_COMPATIBLE=1``, as rich reads it) at
80 and 200 columns long cells wrap, ids stay whole, and a table that cannot fit
becomes one record per row; ``--format json`` prints only JSON. Driven through
typer's runner on one demo-filled SQLite file, and through the installed console
script for the piped case.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner, Result

import ledger.cli.commands as cli
from ledger import Ledger
from ledger.cli import app, render
from ledger.cli.demo import build_demo

runner = CliRunner()
SCRIPT = Path(sys.executable).parent / "ledger"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
WIDTHS = (80, 200)


@pytest.fixture(autouse=True)
def fresh_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's own kind of console, built without a fixed width, so each
    invocation's $COLUMNS and $TTY_COMPATIBLE decide its width and layout."""
    for name in ("COLUMNS", "TTY_COMPATIBLE", "FORCE_COLOR", "NO_COLOR", "LEDGER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "console", render.OutputConsole())
    monkeypatch.setattr(cli, "err", render.OutputConsole(stderr=True))


class Store:
    """A demo-filled store and what the library says is in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        result = build_demo(self.url)
        led = result.ledger
        self.alice = result.featured_lineage
        self.versions = [str(r.ecs_id) for r in led.index.lineages[self.alice]]
        self.head = led.store.head()
        self.exec_columns = [c for c, *_ in led.sql("describe executions").fetchall()]
        self.executions = led.sql("select execution_id, function_name from executions order by position").fetchall()
        self.failed = led.sql("select execution_id from executions where not succeeded").fetchall()[0][0]
        led.close()

    def run(self, *args: str, columns: int | None = None, terminal: bool = False, **env: str) -> Result:
        environment = dict(env)
        if columns is not None:
            environment["COLUMNS"] = str(columns)
        if terminal:
            environment["TTY_COMPATIBLE"] = "1"
        return runner.invoke(app, [*args, "--db", self.url], env=environment)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("cli-output") / "d.db")


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def piped_rows(out: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of piped table output; every line has the header's number of fields."""
    lines = out.splitlines()
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(row) == len(header) for row in rows), out
    return header, rows


def assert_whole_in_terminal(out: str, width: int, ids: list[str], words: list[str] = ()) -> None:
    """Nothing cut: no ellipsis, no line wider than the terminal, every id whole on one line, every word there."""
    text = ANSI.sub("", out)
    assert "…" not in text, text
    assert max(cell_len(line) for line in text.splitlines()) <= width, text
    found = set(UUID.findall(text))
    missing = [i for i in ids if i not in found]
    assert not missing, (missing, text)
    for word in words:
        assert word in text, (word, text)


# ------------------------------------------------------------------- piped
class TestPiped:
    @pytest.mark.parametrize("columns", WIDTHS)
    def test_sql_select_star_keeps_every_column_and_row(self, store: Store, columns: int) -> None:
        """The issue's ``ledger sql 'select * from executions' > out.txt`` lost 5 of 11 columns."""
        header, rows = piped_rows(ok(store.run("sql", "select * from executions order by position", columns=columns)))
        assert header == store.exec_columns
        assert [(r[0], r[1]) for r in rows] == [(str(x), f) for x, f in store.executions]

    @pytest.mark.parametrize("columns", WIDTHS)
    def test_log_one_line_per_event_with_whole_ids(self, store: Store, columns: int) -> None:
        header, rows = piped_rows(ok(store.run("log", "--limit", str(store.head), columns=columns)))
        assert header == ["position", "recorded_at", "event", "id", "summary"]
        assert [int(r[0]) for r in rows] == list(range(1, store.head + 1))
        ids = {r[3] for r in rows}
        assert {str(x) for x, _ in store.executions} <= ids and set(store.versions) <= ids
        failed = next(r for r in rows if r[3] == str(store.failed))
        assert failed[4].startswith("school.enroll ") and "FAILED ValueError: seminar is full" in failed[4]

    @pytest.mark.parametrize("columns", WIDTHS)
    def test_history_rows_keep_every_change(self, store: Store, columns: int) -> None:
        """Several changes of one version share its one line, ``; ``-separated."""
        header, rows = piped_rows(ok(store.run("history", str(store.alice), columns=columns)))
        assert header[-1] == "what changed" and [r[3] for r in rows] == store.versions
        curve = next(r[-1] for r in rows if "gpa: 2.5 -> 2.75" in r[-1])
        assert "transcript.grades.0.score: 2.0 -> 2.25; transcript.grades.1.score" in curve

    def test_diff_is_only_the_rows(self, store: Store) -> None:
        header, rows = piped_rows(ok(store.run("diff", store.versions[1], store.versions[2], columns=80)))
        assert header == ["path", "old", "new"] and ["gpa", "2.5", "2.75"] in rows

    def test_values_with_tabs_and_newlines_stay_on_one_line(self, store: Store) -> None:
        out = ok(store.run("sql", "select 'a' || chr(9) || 'b' || chr(10) || 'c' as s, 2 as n"))
        assert out.splitlines() == ["s\tn", "a\\tb\\nc\t2"]

    def test_tsv_and_csv_keep_exact_floats(self, store: Store) -> None:
        query = "select 0.03308999998807849::double as d"
        assert ok(store.run("sql", query, "--format", "tsv")).splitlines() == ["d", "0.03308999998807849"]
        assert list(csv.reader(io.StringIO(ok(store.run("sql", query, "--format", "csv"))))) == [["d"], ["0.03308999998807849"]]

    def test_console_script_piped_at_80_columns(self, store: Store) -> None:
        """The installed script, stdout a pipe: whole rows, and JSON that parses."""
        env = {**os.environ, "COLUMNS": "80", "LEDGER_URL": store.url}
        for name in ("TTY_COMPATIBLE", "FORCE_COLOR"):
            env.pop(name, None)

        def script(*args: str) -> str:
            proc = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)
            assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
            return proc.stdout

        header, rows = piped_rows(script("sql", "select * from executions order by position"))
        assert header == store.exec_columns and len(rows) == len(store.executions)
        assert all(UUID.fullmatch(r[0]) for r in rows)
        _, rows = piped_rows(script("history", str(store.alice)))
        assert [r[3] for r in rows] == store.versions
        assert json.loads(script("show", f"@{store.alice}", "--format", "json"))["version"]["lineage_id"] == str(store.alice)


# ---------------------------------------------------------------- terminal
class TestTerminal:
    @pytest.mark.parametrize("columns", WIDTHS)
    def test_log_never_cuts_an_id(self, store: Store, columns: int) -> None:
        out = ok(store.run("log", "--limit", str(store.head), columns=columns, terminal=True))
        summary_words = ["school.enroll", "FAILED", "ValueError:", "seminar", "enrolled"]
        assert_whole_in_terminal(out, columns, [str(x) for x, _ in store.executions] + store.versions, summary_words)
        for name in ("position", "recorded_at", "event", "id", "summary"):
            assert name in ANSI.sub("", out)

    @pytest.mark.parametrize("columns", WIDTHS)
    def test_history_shows_what_changed(self, store: Store, columns: int) -> None:
        """The issue saw a zero-width "what changed" column at 80 columns."""
        out = ok(store.run("history", str(store.alice), columns=columns, terminal=True))
        words = ["created", "gpa:", "2.75", "transcript.grades.2.score:", "3.25", "'Alice", "Liddell'"]
        assert_whole_in_terminal(out, columns, [*store.versions, str(store.alice)], words)

    @pytest.mark.parametrize("columns", WIDTHS)
    def test_sql_select_star_shows_every_column(self, store: Store, columns: int) -> None:
        out = ok(store.run("sql", "select * from executions", columns=columns, terminal=True))
        assert_whole_in_terminal(out, columns, [str(x) for x, _ in store.executions], store.exec_columns)

    @pytest.mark.parametrize("columns", WIDTHS)
    def test_diff_in_a_terminal(self, store: Store, columns: int) -> None:
        out = ok(store.run("diff", store.versions[1], store.versions[2], columns=columns, terminal=True))
        assert_whole_in_terminal(out, columns, store.versions[1:3], ["4 change(s)", "transcript.grades.1.score", "2.75"])

    def test_narrow_table_wraps_long_cells_and_keeps_ids_whole(self, store: Store) -> None:
        """A table that fits stays a table: the long cell wraps, the id column does not."""
        some_id = store.versions[0]
        query = f"select '{some_id}' as id, repeat('word ', 60) as long_text"
        out = ANSI.sub("", ok(store.run("sql", query, columns=80, terminal=True)))
        assert "┃ id" in out and out.count("word") == 60
        assert_whole_in_terminal(out, 80, [some_id])
        assert sum(some_id in line for line in out.splitlines()) == 1

    def test_floats_are_rounded_for_reading(self, store: Store) -> None:
        out = ANSI.sub("", ok(store.run("sql", "select 0.03308999998807849::double as d", columns=80, terminal=True)))
        assert "0.03309" in out and "0.033089999" not in out

    def test_values_are_not_read_as_markup(self, store: Store) -> None:
        query = """select '[bold]x[/bold] [/nope]' as "[c]", 1 as n"""
        for layout in ({"columns": 80, "terminal": True}, {"columns": 30, "terminal": True}, {}):
            out = ANSI.sub("", ok(store.run("sql", query, **layout)))
            assert "[bold]x[/bold] [/nope]" in out and "[c]" in out, out

    def test_empty_result_shows_the_columns(self, store: Store) -> None:
        out = ANSI.sub("", ok(store.run("sql", "select 1 as one where false", columns=80, terminal=True)))
        assert "one" in out


# -------------------------------------------------------------------- json
class TestJSON:
    def commands(self, store: Store) -> dict[str, list[str]]:
        return {
            "log": ["log", "--limit", "5"],
            "show": ["show", f"@{store.alice}"],
            "history": ["history", str(store.alice)],
            "as-of": ["as-of", str(store.alice), "--position", str(store.head)],
            "diff": ["diff", store.versions[0], store.versions[-1]],
            "lineage": ["lineage", str(store.alice), "--depth", "1"],
            "sql": ["sql", "select function_name, duration_ms from executions"],
            "verify": ["verify"],
        }

    @pytest.mark.parametrize("terminal", [False, True])
    def test_every_command_prints_only_json(self, store: Store, terminal: bool) -> None:
        """Parsable as a whole, uncoloured even where colour is forced (``| jq`` works)."""
        for name, args in self.commands(store).items():
            result = store.run(*args, "--format", "json", columns=80, terminal=terminal, FORCE_COLOR="1")
            out = ok(result)
            assert "\x1b" not in out, (name, out)
            json.loads(out)

    def test_shapes(self, store: Store) -> None:
        def get(name: str) -> Any:
            return json.loads(ok(store.run(*self.commands(store)[name], "--format", "json")))

        events = get("log")
        assert [e["position"] for e in events] == list(range(store.head - 4, store.head + 1))
        assert set(events[0]) == {"position", "event", "recorded_at", "id", "payload"}

        shown = get("show")
        assert shown["version"]["ecs_id"] == store.versions[-1] and shown["value"]["name"] == "Alice Liddell"

        history = get("history")
        assert history["lineage_id"] == str(store.alice)
        assert [v["version"]["ecs_id"] for v in history["versions"]] == store.versions
        assert history["versions"][0]["changes"] is None
        assert {"path": "gpa", "old": 0.0, "new": 2.5} in history["versions"][1]["changes"]

        as_of = get("as-of")
        assert as_of["asked"] == {"position": store.head} and as_of["version"]["ecs_id"] == store.versions[-1]
        assert as_of["data"]["name"] == "Alice Liddell" and as_of["versions"] == len(store.versions)

        diff = get("diff")
        assert diff["old"]["ecs_id"] == store.versions[0] and diff["new"]["ecs_id"] == store.versions[-1]
        assert {"path": "name", "old": "Alice", "new": "Alice Liddell"} in diff["changes"]

        assert {"nodes", "edges"} <= set(get("lineage"))
        rows = get("sql")
        assert len(rows) == len(store.executions) and all(isinstance(r["duration_ms"], float) for r in rows)

        assert get("verify") == {
            "ok": True, "events_checked": store.head, "first_bad_position": None, "problems": [], "digest_position": None,
            "checkpointed_to": None, "unchecked_tail": 0,  # checkpoints: PostgreSQL's concurrent writers only
        }

    def test_verify_json_on_a_damaged_copy(self, store: Store, tmp_path: Path) -> None:
        """A failed check is still only JSON on stdout, and exit status 1."""
        copy = tmp_path / "tampered.db"
        shutil.copy(store.path, copy)
        conn = sqlite3.connect(copy)
        (state,) = conn.execute("SELECT state FROM stored_events WHERE rowid = 5").fetchone()
        conn.execute("UPDATE stored_events SET state = ? WHERE rowid = 5", (bytes(state).replace(b'"Alice"', b'"Eve"'),))
        conn.commit()
        conn.close()
        result = runner.invoke(app, ["verify", "--format", "json", "--db", f"sqlite:///{copy}"])
        assert result.exit_code == 1
        report = json.loads(result.stdout)
        assert report["ok"] is False and report["first_bad_position"] == 5 and report["problems"]

    def test_json_keeps_exact_durations(self, store: Store) -> None:
        with Ledger(store.url) as led:
            exact = led.sql("select duration_ms from executions order by position").fetchall()
        rows = json.loads(ok(store.run("sql", "select duration_ms from executions order by position", "-f", "json")))
        assert [r["duration_ms"] for r in rows] == [d for (d,) in exact]


# --------------------------------------------------------------- durations
class TestDurations:
    @pytest.mark.parametrize(
        "ms, text",
        [
            (0.0, "0 ms"),
            (0.03308999998807849, "33.1 µs"),
            (0.0000004, "0.4 ns"),
            (0.00001, "10 ns"),
            (4.523, "4.52 ms"),
            (999.96, "1 s"),
            (1234.5, "1.23 s"),
            (65432.1, "65.4 s"),
            (5_000_000, "5,000 s"),
            (None, "-"),
        ],
    )
    def test_three_significant_digits_and_a_unit(self, ms: float | None, text: str) -> None:
        assert render.duration(ms) == text

    def test_log_shows_durations_with_a_unit(self, store: Store) -> None:
        _, rows = piped_rows(ok(store.run("log", "--type", "execution", "--limit", "100")))
        assert rows and not any(" 0.0 ms" in r[4] for r in rows)
        assert all(re.search(r" [0-9.,]+ (ns|µs|ms|s)( |$)", r[4]) for r in rows), rows

    @pytest.mark.parametrize(
        "value, text", [(0.03308999998807849, "0.03309"), (2.75, "2.75"), (3.0, "3.0"), (1234567.891, "1234568"), (1e20, "1e+20")]
    )
    def test_table_floats(self, value: float, text: str) -> None:
        assert render.number(value) == text
