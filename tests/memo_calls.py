"""The functions, entities and helpers shared by test_reexecute.py and test_memo.py: what ran (``RAN``),
a drift a re-execution must see, and the ``m_*`` functions registered with ``cache=True`` around every test
of a file that imports the ``m_functions`` fixture."""

from __future__ import annotations

from typing import Iterator

import pytest

from ledger import CallableRegistry, ConfigEntity, Ledger

from .models import Grade, Patient, Student


#: What the functions below ran, in order (reset per test).
RAN: list[str] = []
#: Added to results by the "drifting" functions: a re-execution must see it.
DRIFT = {"value": 0.0}


class Weights(ConfigEntity):
    factor: float = 1.0


def bump(s: Student, by: float) -> Student:
    RAN.append("bump")
    s.gpa = s.gpa + by + DRIFT["value"]
    return s


def split(s: Student) -> tuple[Student, Grade]:
    RAN.append("split")
    return s, Grade(course="made", score=s.gpa)


def mean(scores: list[float]) -> float:
    RAN.append("mean")
    return sum(scores) / len(scores)


def weighted(s: Student, w: Weights) -> float:
    RAN.append("weighted")
    return s.gpa * w.factor


def fails_once(s: Student) -> Student:
    RAN.append("fails_once")
    if RAN.count("fails_once") == 1:
        raise RuntimeError("first time")
    return s


def visit(p: Patient) -> Patient:
    p.visits += 1 + int(DRIFT["value"])
    return p


FUNCTIONS = {"bump": bump, "split": split, "mean": mean, "weighted": weighted, "fails_once": fails_once, "visit": visit}


@pytest.fixture(autouse=True)
def m_functions() -> Iterator[None]:
    RAN.clear()
    DRIFT["value"] = 0.0
    for name, fn in FUNCTIONS.items():
        CallableRegistry.register(f"m_{name}", cache=True)(fn)
    yield
    for name in FUNCTIONS:
        CallableRegistry.unregister(f"m_{name}")
    DRIFT["value"] = 0.0


def events(led: Ledger) -> list[tuple[int, str]]:
    return [(n.id, n.topic) for n in led.store.read(1, 100_000)]


def executions(led: Ledger) -> list[tuple]:
    return led.sql(
        "select execution_id, function_name, cache_hit, reused_execution_id from executions order by position"
    ).fetchall()


def stored_student(led: Ledger, gpa: float = 3.0) -> Student:
    s = Student(name="Ann", gpa=gpa, grades=[Grade(course="math", score=2.0)])
    led.registry.register_entity(s)
    return s
