"""ledger/write/isolation.py: functions registered with ``isolation="process"`` run in a child process;
mutations, detachments and sub-entities cross back by ids, and a wrong return, a crash, a timeout or
an exception in the child is a clear, recorded error."""

from __future__ import annotations

import os
import time

import pytest

from ledger import CallableRegistry, EntityRegistry, Ledger, errors
from ledger.events import EXECUTION_COMPLETED, EXECUTION_FAILED

from .callables_models import XGrade, XStudent, events, student


@CallableRegistry.register("x_proc_curve", isolation="process")
def x_proc_curve(student: XStudent, bonus: float) -> XStudent:
    for g in student.grades:
        g.score += bonus
    return student


@CallableRegistry.register("x_proc_wrong", isolation="process")
def x_proc_wrong(student: XStudent) -> XStudent:
    return "not a student"  # type: ignore[return-value]


@CallableRegistry.register("x_proc_crash", isolation="process")
def x_proc_crash(x: int) -> int:
    os._exit(3)


@CallableRegistry.register("x_proc_slow", isolation="process", timeout=0.5)
def x_proc_slow(x: int) -> int:
    time.sleep(30)
    return x


@CallableRegistry.register("x_proc_raise", isolation="process")
def x_proc_raise(x: int) -> int:
    raise KeyError(f"missing {x}")


@CallableRegistry.register("x_proc_split", isolation="process")
def x_proc_split(student: XStudent) -> tuple[XStudent, XGrade]:
    g = student.grades.pop(0)
    return student, g


@CallableRegistry.register("x_proc_grade", isolation="process")
def x_proc_grade(grade: XGrade) -> XGrade:
    grade.score = -1.0
    return grade


class TestProcessIsolation:
    def test_mutation_crosses_back_by_ids(self, led: Ledger) -> None:
        """The child's result comes back and is classified by ecs_id: a new version of the input."""
        s = student()
        out = CallableRegistry.execute("x_proc_curve", student=s, bonus=2.0)
        assert [g.score for g in out.grades] == [2.0, 3.0]
        assert out.lineage_id == s.lineage_id and out.previous_ecs_id == s.ecs_id
        assert [g.score for g in s.grades] == [0.0, 1.0]
        body = [b for _, t, b in events(led) if t == EXECUTION_COMPLETED][-1]
        assert body["isolation"] == "process" and body["outputs"][0]["semantic"] == "mutation"

    def test_detachment_and_sub_entity_by_ids(self, led: Ledger) -> None:
        """Detachment and sub-entity mutation are recognised across the process boundary."""
        s = student(3)
        parent, child = CallableRegistry.execute("x_proc_split", student=s)
        assert child.lineage_id == s.grades[0].lineage_id and child.is_root_entity()
        assert len(parent.grades) == 2 and parent.lineage_id == s.lineage_id
        g = CallableRegistry.execute("x_proc_grade", grade=s.grades[2])
        assert g.score == -1.0 and g.lineage_id == s.grades[2].lineage_id
        assert EntityRegistry.get_latest(s.lineage_id).grades[2].score == -1.0

    def test_wrong_return_type(self, led: Ledger) -> None:
        """A return value not matching the hint is a ReturnTypeError (a TypeError), recorded as failed."""
        s = student()
        head = led.store.head()
        with pytest.raises(errors.ReturnTypeError) as info:
            CallableRegistry.execute("x_proc_wrong", student=s)
        assert isinstance(info.value, TypeError) and "XStudent" in str(info.value)
        evs = events(led, head + 1)
        assert [t for _, t, _ in evs] == [EXECUTION_FAILED]
        assert evs[0][2]["error_type"] == "ReturnTypeError"

    def test_crash_is_a_clear_error(self, led: Ledger) -> None:
        """A child that dies is an ExecutionError naming the exit status."""
        with pytest.raises(errors.ExecutionError, match="exit status 3"):
            CallableRegistry.execute("x_proc_crash", x=1)

    def test_timeout_kills_the_child(self, led: Ledger) -> None:
        """A child past its timeout is killed: an ExecutionError, not a hang. (Had it not been
        killed, it would have returned after its 30 s sleep and nothing would be raised: no
        stopwatch needed, which a busy machine could fool.)"""
        with pytest.raises(errors.ExecutionError, match="timeout"):
            CallableRegistry.execute("x_proc_slow", x=1)

    def test_child_exception_reraised(self, led: Ledger) -> None:
        """An exception raised in the child reaches the caller with its own type."""
        with pytest.raises(KeyError, match="missing 4"):
            CallableRegistry.execute("x_proc_raise", x=4)
        failed = [b for _, t, b in events(led) if t == EXECUTION_FAILED]
        assert failed[-1]["error_type"] == "KeyError" and "x_proc_raise" in failed[-1]["traceback"]
