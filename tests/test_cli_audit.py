"""Audit questions the ``ledger`` command answers (issue 13): short ids, executions, log filters,
history's authors and branches, list children matched by identity.

Library reads (``projections.audit``) run on every backend (``led``: memory, SQLite,
PostgreSQL); the command runs through typer's runner at COLUMNS=80, piped, on a SQLite
file filled through the library.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from typer.testing import CliRunner

import ledger
import ledger.cli.commands as cli
import ledger.cli.render as render
from ledger import CallableRegistry, EntityRegistry, Ledger
from ledger.cli import app
from ledger.errors import EntityNotFoundError
from projections import audit
from tests.models import Grade, Patient, Student

runner = CliRunner()
SHARED = "2f9068d4"  # two stored versions start with it: an ambiguous prefix


@CallableRegistry.register("audit.curve")
def audit_curve(student: Student) -> Student:
    student.gpa = student.gpa + 1.0
    return student


@CallableRegistry.register("audit.fail")
def audit_fail(student: Student, why: str) -> Student:
    raise ValueError(f"cannot grade {student.name}: {why}")


@CallableRegistry.register("audit.fail_patient")
def audit_fail_patient(patient: Patient) -> Patient:
    raise RuntimeError(f"no bed for {patient.name}")


class Facts:
    """What the filled store holds, as the tests need it."""

    alice: Student
    failed: UUID
    curved: UUID
    branches: list[UUID]
    patient: Patient


def fill(led: Ledger) -> Facts:
    """A lineage written by hand and by executions (two of them branching), a failed
    execution, a list losing its first child, and an erased patient."""
    f = Facts()
    alice = Student(name="Alice", grades=[Grade(course=c, score=2.0) for c in ("math", "art", "music")])
    alice.promote_to_root()
    old = alice
    curved = CallableRegistry.execute("audit.curve", student=alice)
    # a second mutation of the same old version: a branch
    again = CallableRegistry.execute("audit.curve", student=old)
    f.branches = [curved.ecs_id, again.ecs_id]
    f.curved = UUID(str(led.index.records[curved.ecs_id].meta["derived_from_execution_id"]))
    student = again
    student.grades = student.grades[1:]  # remove the first of three children
    EntityRegistry.version_entity(student)
    f.alice = student
    with pytest.raises(ValueError):
        CallableRegistry.execute("audit.fail", student=student, why="missing exam")
    f.failed = next(e for e in reversed(audit.recent_events(led, limit=5)) if e.topic == "execution.failed").payload["execution_id"]
    f.failed = UUID(str(f.failed))
    for i in (1, 2):  # two versions whose ecs_ids share the SHARED prefix
        g = Grade(course=f"shared{i}", score=1.0, ecs_id=UUID(f"{SHARED}-0000-4000-8000-00000000000{i}"))
        g.promote_to_root()
    patient = Patient(name="Pat")
    patient.promote_to_root()
    with pytest.raises(RuntimeError):
        CallableRegistry.execute("audit.fail_patient", patient=patient)
    f.patient = patient
    return f


# ------------------------------------------------------------------ library
class TestPrefixLookup:
    def test_store_range_scans(self, led: Ledger) -> None:
        """Versions and streams are found by a prefix of their hex digits, limited, by id."""
        facts = fill(led)
        store = led.store
        ecs = facts.alice.ecs_id
        assert [e for e, _ in store.versions_with_prefix(ecs.hex[:8])] == [ecs]
        assert [e for e, _ in store.versions_with_prefix(SHARED)] == [
            UUID(f"{SHARED}-0000-4000-8000-000000000001"),
            UUID(f"{SHARED}-0000-4000-8000-000000000002"),
        ]
        assert len(store.versions_with_prefix(SHARED, 1)) == 1
        streams = dict(store.streams_with_prefix(str(facts.failed)[:9]))  # a dash is ignored
        assert list(streams) == [facts.failed]
        assert store.streams_with_prefix(facts.alice.lineage_id.hex)[0][0] == facts.alice.lineage_id
        assert store.versions_with_prefix("ffffffffffffffffffffffffffffffff") == []

    def test_resolve_id(self, led: Ledger) -> None:
        facts = fill(led)
        lineage = facts.alice.lineage_id
        assert audit.resolve_id(led, str(lineage)[:8], "x") == lineage
        assert audit.resolve_id(led, "@" + facts.alice.ecs_id.hex[:12], "x") == facts.alice.ecs_id
        assert audit.resolve_id(led, facts.failed.hex[:10], "x") == facts.failed
        with pytest.raises(EntityNotFoundError, match="at least 8 hex digits"):
            audit.resolve_id(led, str(lineage)[:7], "x")
        with pytest.raises(EntityNotFoundError, match=f"{SHARED} is ambiguous: 2 ids .*000000000001 \\(version\\).*000000000002"):
            audit.resolve_id(led, SHARED, "x")
        with pytest.raises(EntityNotFoundError, match="no stored id starts with"):
            audit.resolve_id(led, "00000000", "x")
        with pytest.raises(EntityNotFoundError, match="is not an id"):
            audit.resolve_id(led, "zzzzzzzzzz", "x")


class TestExecutionDetail:
    def test_failed_execution(self, led: Ledger) -> None:
        facts = fill(led)
        detail = audit.execution(led, str(facts.failed)[:8])
        assert detail is not None and not detail.succeeded
        assert detail.function == "audit.fail"
        assert (detail.error_type, detail.error_message) == ("ValueError", "cannot grade Alice: missing exam")
        assert "raise ValueError" in (detail.traceback or "")
        [student] = [i for i in detail.inputs if i.param_name == "student"]
        assert student.ecs_id == facts.alice.ecs_id and student.version is not None
        assert student.version.lineage_id == facts.alice.lineage_id

    def test_completed_execution_names_its_outputs(self, led: Ledger) -> None:
        facts = fill(led)
        detail = audit.execution(led, facts.curved)
        assert detail is not None and detail.succeeded and detail.error_type is None
        assert [(o.semantic, o.ecs_id) for o in detail.outputs] == [("mutation", facts.branches[0])]
        assert detail.outputs[0].version is not None and detail.outputs[0].version.version == 2
        assert audit.execution(led, facts.alice.lineage_id) is None  # a lineage is no execution

    def test_sealed_failure_text_reads_erased_after_erasure(self, led: Ledger) -> None:
        facts = fill(led)
        failed = [e for e in audit.recent_events(led, limit=3, event_type="execution.failed")][-1]
        detail = audit.execution(led, failed.payload["execution_id"])
        assert detail is not None and detail.error_message == "no bed for Pat"
        led.erase(facts.patient.lineage_id, reason="asked to")
        detail = audit.execution(led, failed.payload["execution_id"])
        assert detail is not None and detail.error_type == "RuntimeError" and "Pat" not in str(detail.error_message)


class TestHistoryAndDiff:
    def test_rows_name_what_wrote_them_and_mark_branches(self, led: Ledger) -> None:
        facts = fill(led)
        rows = audit.history(led, str(facts.alice.lineage_id)[:8])
        assert [r.origin for r in rows] == ["registered", "execution", "execution", "edited by hand"]
        assert rows[1].function == "audit.curve" and rows[1].execution_id == facts.curved
        assert [r.branch for r in rows] == [False, False, True, False]
        assert rows[2].parent == rows[0].version.ecs_id
        assert rows[2].changes == {"gpa": (0.0, 1.0)}  # against its parent, not the row above

    def test_removing_the_first_child_is_one_removal(self, led: Ledger) -> None:
        facts = fill(led)
        rows = audit.history(led, facts.alice.lineage_id)
        changes = rows[-1].changes
        assert changes is not None and list(changes) == ["grades.0"]
        old, new = changes["grades.0"]
        assert old["course"] == "math" and new is None
        found = audit.diff(led, str(rows[2].version.ecs_id)[:8], str(rows[3].version.ecs_id)[:8])
        assert list(found.changes) == ["grades.0"]

    def test_children_matched_by_lineage(self, mem: Ledger) -> None:
        """A reorder is no change; a child replaced at an index reads as old -> new there;
        a kept child that changed is named by its new index."""
        s = Student(name="S", grades=[Grade(course=c, score=1.0) for c in ("a", "b", "c")])
        s.promote_to_root()
        v1 = s.ecs_id
        s.grades = [s.grades[2], s.grades[1], s.grades[0]]
        EntityRegistry.version_entity(s)
        v2 = s.ecs_id
        assert audit.diff(mem, v1, v2).changes == {}
        s.grades = [Grade(course="d", score=1.0), s.grades[1], s.grades[2]]
        s.grades[2].score = 4.0
        EntityRegistry.version_entity(s)
        changes = audit.diff(mem, v2, s.ecs_id).changes
        assert set(changes) == {"grades.0", "grades.2.score"}
        old, new = changes["grades.0"]
        assert (old["course"], new["course"]) == ("c", "d")
        assert changes["grades.2.score"] == (1.0, 4.0)

    def test_erasure(self, led: Ledger) -> None:
        facts = fill(led)
        lineage = facts.patient.lineage_id
        assert audit.erasure(led, lineage) is None
        led.erase(lineage, reason="asked to")
        gone = audit.erasure(led, lineage)
        assert gone is not None and gone.reason == "asked to" and gone.position == led.store.head()


class TestLogFilters:
    def test_function_glob_positions_and_entity(self, led: Ledger) -> None:
        facts = fill(led)
        head = led.store.head()
        executions = audit.recent_events(led, limit=100, function="audit.*")
        assert {e.payload["function_name"] for e in executions} == {"audit.curve", "audit.fail", "audit.fail_patient"}
        assert [e.position for e in audit.recent_events(led, limit=100, since=head - 1)] == [head - 1, head]
        assert [e.position for e in audit.recent_events(led, limit=100, until=2)] == [1, 2]
        mine = audit.recent_events(led, limit=100, lineage=facts.alice.lineage_id)
        topics = [e.topic for e in mine]
        assert topics.count("entity.version") == 4
        assert topics.count("execution.completed") == 2 and topics.count("execution.failed") == 1
        later = audit.recent_events(led, limit=100, since=mine[-1].payload and _time(mine[-1]))
        assert later and later[0].position == mine[-1].position

    def test_no_match(self, led: Ledger) -> None:
        fill(led)
        assert audit.recent_events(led, function="nothing.*") == []


def _time(entry: audit.LogEntry) -> object:
    from datetime import datetime

    return datetime.fromisoformat(str(entry.payload["recorded_at"]))


# ------------------------------------------------------------------ command
@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Facts]]:
    """A SQLite store filled through the library; the command then reads it."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    lg = ledger.connect(url)
    try:
        facts = fill(lg)
    finally:
        lg.close()
        ledger.set_default_ledger(None)
    monkeypatch.delenv("LEDGER_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    yield url, facts


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide console, so these tests read the data, not the layout (piped output is whole rows)."""
    monkeypatch.setattr(cli, "console", render.OutputConsole(width=250))
    monkeypatch.setattr(cli, "err", render.OutputConsole(width=250, stderr=True))


def run(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--db", url])
    return result.exit_code, result.output


class TestCommand:
    def test_short_ids_everywhere(self, db: tuple[str, Facts], wide: None) -> None:
        url, facts = db
        lineage = str(facts.alice.lineage_id)[:8]
        ecs = facts.alice.ecs_id.hex[:8]
        code, out = run(url, "show", ecs)
        assert code == 0 and str(facts.alice.ecs_id) in out
        code, out = run(url, "show", f"@{ecs}.name")
        assert code == 0 and '"Alice"' in out
        assert run(url, "history", lineage)[0] == 0
        code, out = run(url, "as-of", lineage, "--position", "1000")
        assert code == 0 and str(facts.alice.ecs_id) in out
        code, out = run(url, "as-of", str(facts.branches[0])[:8], "--position", "1000")  # an ecs_id names its lineage
        assert code == 0 and str(facts.alice.ecs_id) in out
        code, out = run(url, "diff", str(facts.branches[1])[:8], ecs)
        assert code == 0 and "grades.0" in out
        assert len(out.strip().splitlines()) == 2  # piped: the header line and one change
        code, out = run(url, "lineage", ecs, "--format", "json")
        assert code == 0 and str(facts.alice.ecs_id) in out
        code, out = run(url, "log", "--entity", lineage)
        assert code == 0 and "audit.fail" in out

    def test_prefix_errors_are_one_line(self, db: tuple[str, Facts]) -> None:
        url, facts = db
        code, out = run(url, "show", SHARED)
        assert code == 1 and len(out.strip().splitlines()) == 1
        assert "ambiguous" in out and f"{SHARED}-0000-4000-8000-000000000001" in out
        code, out = run(url, "history", str(facts.alice.lineage_id)[:6])
        assert code == 1 and "at least 8 hex digits" in out

    def test_show_failed_execution(self, db: tuple[str, Facts], wide: None) -> None:
        url, facts = db
        code, out = run(url, "show", str(facts.failed)[:8])
        assert code == 0, out
        for text in ("audit.fail", "FAILED", "ValueError", "cannot grade Alice: missing exam", "raise ValueError",
                     "input student", str(facts.alice.ecs_id), "isolation", "duration"):
            assert text in out, text

    def test_show_completed_execution(self, db: tuple[str, Facts], wide: None) -> None:
        url, facts = db
        code, out = run(url, "show", str(facts.curved))
        assert code == 0 and "succeeded" in out and f"mutation: {facts.branches[0]}" in out

    def test_history_names_functions_branches_and_erasure(self, db: tuple[str, Facts], wide: None) -> None:
        url, facts = db
        code, out = run(url, "history", str(facts.alice.lineage_id))
        assert code == 0
        assert f"audit.curve (execution {facts.curved})" in out
        assert "registered" in out and "edited by hand" in out and "branch from #1" in out
        assert out.count("grades.") == 1  # one removal, not three changed items
        lg = Ledger(url)
        try:
            lg.erase(facts.patient.lineage_id, reason="asked to")
        finally:
            lg.close()
        code, out = run(url, "history", str(facts.patient.lineage_id)[:8])
        assert code == 0 and "erased" in out and "asked to" in out

    def test_log_filters(self, db: tuple[str, Facts], wide: None) -> None:
        url, facts = db
        code, out = run(url, "log", "--function", "audit.f*", "--limit", "50")
        assert code == 0 and "audit.fail" in out and "audit.curve" not in out
        code, out = run(url, "log", "--since", "1", "--until", "1")
        assert code == 0 and "entity.version" in out and "execution" not in out
        code, out = run(url, "log", "--since", "2000-01-01T00:00", "--until", "2000-01-02")
        assert code == 0 and out.strip() == "no events match"
        code, out = run(url, "log", "--type", "execution.failed", "--function", "nothing")
        assert code == 0 and out.strip() == "no events match"
        code, out = run(url, "log", "--since", "yesterday")
        assert code == 1 and "neither a log position nor an ISO" in out

    def test_at_80_columns_piped(self, db: tuple[str, Facts]) -> None:
        """The default console, 80 columns and piped: every command of these runs and exits 0."""
        url, facts = db
        for args in (
            ("show", str(facts.failed)[:8]),
            ("history", str(facts.alice.lineage_id)[:8]),
            ("log", "--entity", str(facts.alice.lineage_id)[:8]),
        ):
            code, out = run(url, *args)
            assert code == 0 and out.strip(), args


def test_execution_and_history_as_json(db: tuple[str, Facts]) -> None:
    """``--format json`` of an execution and of a history with its authors: only JSON, every field."""
    import json

    url, facts = db
    code, out = run(url, "show", str(facts.failed)[:8], "--format", "json")
    assert code == 0, out
    detail = json.loads(out)
    assert detail["function"] == "audit.fail" and detail["succeeded"] is False
    assert "raise ValueError" in detail["traceback"] and detail["inputs"][0]["param_name"] == "student"
    code, out = run(url, "history", str(facts.alice.lineage_id), "--format", "json")
    assert code == 0, out
    history = json.loads(out)
    assert {v["origin"] for v in history["versions"]} >= {"registered"}
    assert any(v["branch"] for v in history["versions"]) and "erasure" in history
