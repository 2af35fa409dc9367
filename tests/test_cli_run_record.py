"""The run record on the command line: ``show`` of an execution, ``erase``, ``diff`` by lineage,
the erasure's log row, times with microseconds (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import socket
from datetime import datetime

import pytest
from typer.testing import CliRunner

import ledger
from ledger import CallableRegistry
from ledger.cli import app
from tests.models import Patient, Student, student

runner = CliRunner()


@CallableRegistry.register("cr_charge")
def cr_charge(st: Student, amount: float) -> Student:
    if amount > 100:
        raise ValueError(f"amount {amount} over the limit")
    st.gpa -= amount
    return st


def cli(url: str, *args: str) -> str:
    done = runner.invoke(app, [*args, "--db", url])
    assert done.exit_code == 0, done.output
    return done.output


@pytest.fixture
def filled(durable_url: str) -> dict[str, str]:
    led = ledger.connect(durable_url, actor="ops@test")
    s = student()
    s.promote_to_root()
    ok = CallableRegistry.execute("cr_charge", st=s, amount=1.0)
    with pytest.raises(ValueError):
        CallableRegistry.execute("cr_charge", st=ok, amount=500.0)
    (failed,) = led.sql("select execution_id from executions where not succeeded").fetchall()
    p = Patient(name="Ann")
    p.promote_to_root()
    p.visits = 3
    led.registry.version_entity(p)
    led.close()
    ledger.set_default_ledger(None)
    return {"failed": str(failed[0]), "ok": str(ok.derived_from_execution_id), "patient": str(p.lineage_id)}


def test_show_json_of_a_failure_answers_who_ran_which_code_on_what(durable_url: str, filled: dict[str, str]) -> None:
    shown = json.loads(cli(durable_url, "show", filled["failed"], "--format", "json"))
    assert [(a["name"], a["value"]) for a in shown["arguments"]][1] == ("amount", 500.0)
    assert shown["actor"] == "ops@test" and shown["host"] == socket.gethostname()
    assert len(shown["function_version"]) == 64 and shown["qualname"] == "cr_charge"
    assert datetime.fromisoformat(shown["started_at"]) <= datetime.fromisoformat(shown["finished_at"])
    assert shown["reexecutions"] == [] and shown["error_message"] == "amount 500.0 over the limit"
    text = cli(durable_url, "show", filled["failed"])
    assert "argument amount\t500.0" in text and "actor\tops@test" in text


def test_a_failure_reexecutes_and_show_lists_the_rerun(durable_url: str, filled: dict[str, str]) -> None:
    out = cli(durable_url, "reexecute", filled["failed"], "--format", "json")
    assert json.loads(out)["matches"] is True
    shown = json.loads(cli(durable_url, "show", filled["failed"], "--format", "json"))
    assert [r["matches"] for r in shown["reexecutions"]] == [True]
    assert "failure reproduced" in cli(durable_url, "log", "--type", "execution.reexecuted")


def test_erase_reports_key_destroyed_and_the_log_names_the_lineage(durable_url: str, filled: dict[str, str]) -> None:
    lineage = filled["patient"]
    done = json.loads(cli(durable_url, "erase", lineage[:8], "--reason", "request 7", "--format", "json"))
    assert done["lineage_id"] == lineage and done["versions"] == 2 and done["already_erased"] is False
    assert done["key_destroyed"] is True
    row = [line for line in cli(durable_url, "log").splitlines() if "entity.erased" in line]
    assert len(row) == 1 and f"entity.erased\t{lineage}\tlineage {lineage}: 2 version(s) erased (request 7)" in row[0]
    again = runner.invoke(app, ["erase", lineage, "--reason", " ", "--db", durable_url])
    assert again.exit_code == 1 and "--reason" in again.output


def test_diff_takes_a_lineage_id_and_times_keep_their_microseconds(durable_url: str, filled: dict[str, str]) -> None:
    lineage = filled["patient"]
    history = json.loads(cli(durable_url, "history", lineage, "--format", "json"))
    first = history["versions"][0]["version"]["ecs_id"]
    changes = json.loads(cli(durable_url, "diff", first, lineage, "--format", "json"))["changes"]
    assert changes == [{"path": "visits", "old": 0, "new": 3}]
    table = cli(durable_url, "history", lineage).splitlines()
    at = table[2].split("\t")[2]  # the second version's time, as printed
    assert at == datetime.fromisoformat(history["versions"][1]["version"]["recorded_at"]).strftime("%Y-%m-%d %H:%M:%S.%f")
    found = json.loads(cli(durable_url, "as-of", lineage, "--at", at, "--format", "json"))
    assert found["version"]["ecs_id"] == history["versions"][1]["version"]["ecs_id"]
