"""A reading command loads only what it reads with: no DuckDB, pyarrow, web stack or write side.

Why: every ``ledger`` command pays its imports before it does anything, and DuckDB, pyarrow
and starlette/uvicorn alone cost several times the interpreter's own start (issue 28). This
checks which modules a real command process ends with, not how long it took (no timed tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.cli.demo import build_demo

ROOT = Path(__file__).resolve().parents[1]
#: Modules a reading command must not import.
HEAVY = ("duckdb", "pyarrow", "starlette", "uvicorn", "pandas", "psycopg", "ledger.write.execution", "ledger.ledger")

#: Runs one command as ``ledger`` would, then prints which of HEAVY it imported, on the last line.
PROBE = """
import json, sys
heavy = {heavy!r}
from ledger.cli import main
sys.argv = ["ledger", *{args!r}]
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
print()
print(json.dumps({{"code": code, "loaded": [m for m in heavy if m in sys.modules]}}))
"""


def run_probe(args: list[str]) -> tuple[str, dict[str, object]]:
    """(what the command printed, {"code", "loaded"}) from a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    env.pop("LEDGER_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY, args=args)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    *output, last = done.stdout.rstrip("\n").split("\n")
    return "\n".join(output), json.loads(last)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(URL of a SQLite store filled by the demo, the featured lineage id)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('startup') / 'demo.db'}"
    result = build_demo(url)
    result.ledger.close()
    return url, str(result.featured_lineage)


class TestReadingCommandsStayLight:
    def test_importing_the_cli_loads_no_heavy_module(self) -> None:
        """``import ledger.cli`` alone imports none of the heavy modules."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        code = f"import sys, ledger.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[]"

    def test_log_prints_the_log_without_heavy_modules(self, demo_store: tuple[str, str]) -> None:
        """``ledger log`` prints the recent events and imports none of the heavy modules."""
        url, _ = demo_store
        output, report = run_probe(["log", "--db", url, "--limit", "5"])
        assert report == {"code": 0, "loaded": []}
        rows = [line for line in output.splitlines() if line.strip()]
        assert rows[0].split("\t")[:3] == ["position", "recorded_at", "event"]
        assert len(rows) == 6  # the header and five events

    def test_show_prints_a_version_without_heavy_modules(self, demo_store: tuple[str, str]) -> None:
        """``ledger show`` of a lineage prints its latest stored version and imports none of the heavy modules."""
        url, lineage = demo_store
        output, report = run_probe(["show", f"@{lineage}", "--db", url, "--format", "json"])
        assert report == {"code": 0, "loaded": []}
        shown = json.loads(output)
        assert shown["version"]["lineage_id"] == lineage

    def test_history_lists_versions_without_heavy_modules(self, demo_store: tuple[str, str]) -> None:
        """``ledger history`` lists the lineage's versions and imports none of the heavy modules."""
        url, lineage = demo_store
        output, report = run_probe(["history", lineage, "--db", url, "--format", "json"])
        assert report == {"code": 0, "loaded": []}
        shown = json.loads(output)
        assert shown["lineage_id"] == lineage and len(shown["versions"]) >= 2

    def test_sql_still_loads_duckdb(self, demo_store: tuple[str, str]) -> None:
        """The check can fail: ``ledger sql`` does import DuckDB."""
        url, _ = demo_store
        output, report = run_probe(["sql", "select count(*) as n from executions", "--db", url, "--analytics", "memory"])
        assert report["code"] == 0 and "duckdb" in report["loaded"]  # type: ignore[operator]


class TestLazyPublicNames:
    def test_every_public_name_has_a_home_and_resolves_to_it(self) -> None:
        """The lazy loader's table of homes (``ledger._HOMES``) covers exactly ``__all__``, and every
        public name loads as the very object its home module defines."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        code = (
            "import importlib, ledger\n"
            "homes = ledger._HOMES\n"
            "assert set(homes) | {'errors'} == set(ledger.__all__), set(homes) ^ set(ledger.__all__)\n"
            "for name, home in homes.items():\n"
            "    assert getattr(ledger, name) is getattr(importlib.import_module(home), name), name\n"
            "assert ledger.errors is importlib.import_module('ledger.errors')\n"
            "print('ok')\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
