"""Demo data: a small school whose records go through every kind of change.

``build_demo(url)`` fills a fresh ledger and returns what it did, for the CLI
to show; it never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional
from uuid import UUID

from ledger import Entity, Ledger


class Grade(Entity):
    course: str
    score: float


class Transcript(Entity):
    term: str
    grades: list[Grade] = []


class Student(Entity):
    name: str
    gpa: float = 0.0
    transcript: Optional[Transcript] = None


@dataclass
class DemoResult:
    ledger: Ledger
    students: list[Student]
    featured_lineage: UUID
    steps: list[str] = field(default_factory=list)


def _gpa(s: Student) -> float:
    grades = s.transcript.grades if s.transcript else []
    return round(sum(g.score for g in grades) / len(grades), 2) if grades else 0.0


def build_demo(url: str) -> DemoResult:
    led = Ledger(url)
    reg = led.registry
    steps: list[str] = []
    students = []
    for i, name in enumerate(["Alice", "Bob", "Chen", "Dana"]):
        s = Student(
            name=name,
            transcript=Transcript(
                term="2026-fall",
                grades=[Grade(course=c, score=2.0 + ((i + j) % 5) * 0.5) for j, c in enumerate(["math", "physics", "history"])],
            ),
        )
        reg.register_entity(s)
        students.append(s)
    steps.append(f"registered {len(students)} students, 5 entities each")
    alice = students[0]
    alice.gpa = _gpa(alice)
    reg.version_entity(alice)
    steps.append("Alice: gpa computed -> version 2 (only the root is rewritten)")
    alice.transcript.grades[1].score = 4.0
    alice.gpa = _gpa(alice)
    reg.version_entity(alice)
    steps.append("Alice: physics regraded -> version 3 (grade, transcript and root forked; siblings kept)")
    history_grade = alice.transcript.grades[2]
    reg.detach(history_grade)
    steps.append("Alice: history grade detached -> becomes its own root; transcript versioned without it")
    bob = students[1]
    bob.transcript.grades.append(history_grade)
    reg.attach(history_grade, bob)
    steps.append("Bob: the detached grade attached to his transcript -> Bob's tree versioned")
    alice.name = "Alice Liddell"
    reg.version_entity(alice)
    steps.append("Alice: renamed -> version 5")
    return DemoResult(led, students, alice.lineage_id, steps)
