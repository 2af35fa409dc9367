"""Entity classes shared by the tests (importable by subprocesses too)."""

from __future__ import annotations

from typing import Optional

from ledger import Entity, Personal


class Grade(Entity):
    course: str
    score: float


class Record(Entity):
    grades: list[Grade] = []
    notes: dict[str, Grade] = {}


class Student(Entity):
    name: str
    gpa: float = 0.0
    tags: list[str] = []
    grades: list[Grade] = []
    record: Optional[Record] = None


class Course(Entity):
    title: str
    best: Optional[Grade] = None
    pair: tuple[Grade, Grade] | None = None
    by_term: dict[str, list[Grade]] = {}
    nested: list[dict[str, Grade]] = []


class Node(Entity):
    label: str
    children: list["Node"] = []


class Holder(Entity):
    label: str
    required: Grade


def student(name: str = "Alice", n: int = 2) -> Student:
    return Student(name=name, grades=[Grade(course=f"c{i}", score=float(i)) for i in range(n)])


class Patient(Entity):
    """Personal fields (sealed per lineage, erasable) beside ordinary ones."""

    name: Personal[str]
    email: Personal[Optional[str]] = None
    ward: str = "general"
    visits: int = 0
    notes: list[Grade] = []


class Clinic(Entity):
    title: str
    patients: list[Patient] = []
