"""Entities and helpers shared by test_callables.py and test_isolation.py: a student with grades,
and the events of a ledger decoded."""

from __future__ import annotations

from typing import Any, Optional

import orjson

from ledger import Entity, Ledger


class XGrade(Entity):
    course: str
    score: float


class XStudent(Entity):
    name: str
    gpa: float = 0.0
    grades: list[XGrade] = []
    best: Optional[XGrade] = None


def student(n: int = 2) -> XStudent:
    s = XStudent(name="Bo", grades=[XGrade(course=f"c{i}", score=float(i)) for i in range(n)])
    s.promote_to_root()
    return s


def events(led: Ledger, start: int = 1) -> list[tuple[int, str, dict[str, Any]]]:
    return [(n.id, n.topic, orjson.loads(n.state)) for n in led.store.read(start)]
