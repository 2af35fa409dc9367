"""verify reports what it finds, in lines, where an edited store used to make it raise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger import Ledger
from ledger.cli import app

from .models import Patient, Student
from .tamper import behind

runner = CliRunner()
LAST_ROWID = 9223372036854775807


def three_students(url: str) -> None:
    with Ledger(url) as led:
        for i in range(3):
            led.registry.register_entity(Student(name=f"s{i}", gpa=1.0))


def one_line_failure(result: Any) -> str:
    """The CLI failed with exit 1 and no traceback; its last line."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "OverflowError" not in result.output
    return str(result.output).strip().splitlines()[-1]


class TestLargestRowid:
    @pytest.fixture
    def moved(self, tmp_path: Path) -> str:
        url = f"sqlite:///{tmp_path / 'l.db'}"
        three_students(url)
        behind(url, f"UPDATE stored_events SET rowid = {LAST_ROWID} WHERE rowid = 2")
        return url

    def test_verify_reports_the_moved_record(self, moved: str) -> None:
        """Ledger.verify() returns a report naming the position, not an OverflowError."""
        from projections.audit import verify_url

        report = verify_url(moved)
        assert not report.ok and report.first_bad_position == 2
        assert any(p.startswith(f"position {LAST_ROWID}: ") and "sealed for position 2" in p for p in report.problems)

    @pytest.mark.parametrize("command", [["verify"], ["log"], ["sql", "select count(*) from events"]])
    def test_commands_fail_in_one_line(self, moved: str, command: list[str]) -> None:
        """verify, log and sql: exit 1, one line naming a position."""
        last = one_line_failure(runner.invoke(app, [*command, "--db", moved]))
        assert "position" in last


class TestKeyRowsThatAreNotUUIDs:
    @pytest.mark.parametrize("lineage", ["garbage", 12345, "e78461bc-ff65-4e62-9fa5-83bd314c0fb"])
    def test_an_inserted_key_row_is_reported(self, tmp_path: Path, lineage: Any) -> None:
        """An inserted row (text, an integer, a UUID one digit short) is a problem line naming the row."""
        url = f"sqlite:///{tmp_path / 'l.db'}"
        with Ledger(url) as led:
            led.registry.register_entity(Patient(name="Ann"))
        behind(url, "INSERT INTO ledger_keys (lineage_id, key) VALUES (?, x'00')", (lineage,))
        with Ledger(url, create=False) as led:
            report = led.verify()
        assert not report.ok
        assert report.problems == [
            f"key row: 'ledger_keys' holds a row whose lineage_id {str(lineage)!r} (str) is not a UUID: "
            "the key table was edited or a row inserted"
        ]
        assert one_line_failure(runner.invoke(app, ["verify", "--db", url])) == "FAILED: 1 problems"

    def test_an_edited_key_row_is_reported_with_its_missing_key(self, tmp_path: Path) -> None:
        """An edited lineage id: the row is named, and the lineage's key is missing at its position."""
        url = f"sqlite:///{tmp_path / 'l.db'}"
        with Ledger(url) as led:
            p = Patient(name="Ann")
            led.registry.register_entity(p)
        behind(url, "UPDATE ledger_keys SET lineage_id = 'edited'")
        with Ledger(url, create=False) as led:
            report = led.verify()
        assert not report.ok and report.first_bad_position == 1
        assert any("'edited'" in line for line in report.problems)
        assert any(line.startswith("position 1: the data key of lineage") for line in report.problems)
