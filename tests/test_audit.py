"""``projections.audit``: the reads an auditing tool needs, answered from stored data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from ledger import EntityRegistry, Ledger, connect, set_default_ledger
from ledger.errors import EntityNotFoundError, StoreNotFoundError
from projections import audit
from tests.models import Course, Grade, Student


@pytest.fixture
def led() -> Iterator[Ledger]:
    lg = connect("memory://")
    yield lg
    lg.close()
    set_default_ledger(None)


def alice_with_three_versions() -> Student:
    alice = Student(name="Alice", grades=[Grade(course="math", score=3.0)])
    alice.promote_to_root()
    alice.grades[0].score = 3.5
    EntityRegistry.version_entity(alice)
    alice.name = "Alice L."
    EntityRegistry.version_entity(alice)
    return alice


class TestRecentEvents:
    def test_newest_events_come_back_oldest_first_across_pages(self, led: Ledger) -> None:
        """More events than one backward page (500): the last ``limit`` come back in log order."""
        for i in range(260):
            EntityRegistry.register_entity(Course(title=f"c{i}", best=Grade(course="x", score=1.0)))
        head = 520
        entries = audit.recent_events(led, limit=510)
        assert [e.position for e in entries] == list(range(head - 509, head + 1))
        assert all(e.topic == "entity.version" for e in entries)

    def test_type_prefix_and_function_filters(self, led: Ledger) -> None:
        """``event_type`` keeps sub-topics; a function filter keeps nothing where no execution ran."""
        alice_with_three_versions()
        assert len(audit.recent_events(led, limit=100, event_type="entity")) == len(audit.recent_events(led, limit=100))
        assert audit.recent_events(led, limit=100, event_type="entity.ver") == []
        assert audit.recent_events(led, limit=100, function="school.nothing") == []


class TestVersionReads:
    def test_history_rows_carry_what_changed(self, led: Ledger) -> None:
        """The first row is 'created' (no changes); later rows hold the dotted-path diff."""
        alice = alice_with_three_versions()
        rows = audit.history(led, alice.lineage_id)
        assert [r.version.version for r in rows] == [1, 2, 3]
        assert rows[0].changes is None
        assert rows[1].changes == {"grades.0.score": (3.0, 3.5)}
        assert rows[2].changes == {"name": ("Alice", "Alice L.")}
        assert audit.history(led, str(rows[1].version.ecs_id))[-1].version.ecs_id == alice.ecs_id

    def test_as_of_a_position_before_and_after(self, led: Ledger) -> None:
        """Before the lineage existed there is no version; afterwards the one current then, as plain data."""
        alice = alice_with_three_versions()
        rows = audit.history(led, alice.lineage_id)
        found = audit.as_of(led, alice.lineage_id, position=rows[1].version.position)
        assert found.version == rows[1].version and found.versions == 3
        assert found.data is not None and found.data["name"] == "Alice"
        assert found.data["grades"][0]["score"] == 3.5
        at = rows[2].version.recorded_at
        assert audit.as_of(led, alice.lineage_id, at=at).version == rows[2].version
        before = audit.as_of(led, alice.lineage_id, position=0)
        assert before.version is None and before.first_position == rows[0].version.position

    def test_show_and_diff(self, led: Ledger) -> None:
        """An address resolves to stored data and its version; a diff names both versions."""
        alice = alice_with_three_versions()
        shown = audit.show(led, f"@{alice.lineage_id}.grades.0.score")
        assert shown.value == 3.5 and shown.version.entity_type.endswith("Grade")
        rows = audit.history(led, alice.lineage_id)
        found = audit.diff(led, rows[0].version.ecs_id, str(rows[2].version.ecs_id))
        assert found.old == rows[0].version and found.new == rows[2].version
        assert found.changes == EntityRegistry.diff(rows[0].version.ecs_id, rows[2].version.ecs_id)

    def test_bad_ids_name_the_argument(self, led: Ledger) -> None:
        """A malformed id and an unknown one are EntityNotFoundErrors naming the argument."""
        with pytest.raises(EntityNotFoundError, match="lineage_id: 'nope' is not an entity id"):
            audit.parse_id("nope", "lineage_id")
        assert audit.parse_id("@" + str(UUID(int=7)), "x") == UUID(int=7)
        with pytest.raises(EntityNotFoundError, match="lineage_id: no entity lineage"):
            audit.as_of(led, UUID(int=7), position=3)
        with pytest.raises(EntityNotFoundError, match="ecs_id_b"):
            audit.diff(led, alice_with_three_versions().ecs_id, UUID(int=7))
        with pytest.raises(ValueError, match="exactly one"):
            audit.as_of(led, UUID(int=7))


class TestVerifyUrl:
    def test_verifies_a_store_by_url(self, tmp_path: Path) -> None:
        """Without replaying it: the same report as ``Ledger.verify``."""
        url = f"sqlite:///{tmp_path / 'a.db'}"
        with Ledger(url) as lg:
            lg.registry.register_entity(Course(title="art"))
            expected = lg.verify()
        report = audit.verify_url(url)
        assert report.ok and report.events_checked == expected.events_checked == 1

    def test_never_creates_a_store(self, tmp_path: Path) -> None:
        """A missing file is StoreNotFoundError and stays missing."""
        path = tmp_path / "missing.db"
        with pytest.raises(StoreNotFoundError):
            audit.verify_url(f"sqlite:///{path}")
        assert not path.exists()


class TestLogOfATree:
    """``log --entity`` keeps every execution that read anything in the lineage's tree."""

    @pytest.fixture
    def durable(self, durable_url: str) -> Iterator[Ledger]:
        lg = connect(durable_url)
        yield lg
        lg.close()
        set_default_ledger(None)

    def test_nested_reads_by_any_id_are_the_lineages_events(self, durable: Ledger) -> None:
        from ledger import CallableRegistry

        if "audit_twice" not in CallableRegistry.list_functions():
            CallableRegistry.register("audit_twice")(_twice)
        alice = Student(name="Alice", grades=[Grade(course="math", score=3.0)])
        alice.promote_to_root()
        reads = [
            CallableRegistry.execute("audit_twice", score=f"@{alice.lineage_id}.grades.0.score"),
            CallableRegistry.execute("audit_twice", score=f"@{alice.ecs_id}.grades.0.score"),
            CallableRegistry.execute("audit_twice", score=f"@{alice.grades[0].ecs_id}.score"),
            CallableRegistry.execute("audit_twice", score=f"@{alice.grades[0].lineage_id}.score"),
        ]
        CallableRegistry.execute("audit_twice", score=1.0)  # reads nothing of Alice's
        entries = audit.recent_events(durable, limit=100, lineage=alice.lineage_id)
        executions = [str(e.payload["execution_id"]) for e in entries if e.topic.startswith("execution.")]
        assert executions == [str(r.derived_from_execution_id) for r in reads]


def _twice(score: float) -> float:
    return score * 2
