"""``projections.lineage``: the forward lineage of a tree holds every execution that read
anything in it, whichever id (ecs_id or lineage id, of the root or of a child) the address used.

On every backend (the ``led`` fixture: memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from ledger import CallableRegistry, EntityRegistry, Ledger
from tests.models import Grade, Student


@CallableRegistry.register("lin_twice")
def lin_twice(score: float) -> float:
    return score * 2


def _alice() -> Student:
    alice = Student(name="Alice", grades=[Grade(course="math", score=3.0), Grade(course="art", score=4.0)])
    alice.promote_to_root()
    return alice


def _reads(graph: dict, execution_id: str) -> list[tuple[str, str | None]]:
    """The (source, field) of every input edge into ``execution_id``."""
    return sorted((e["source"], e["field"]) for e in graph["edges"] if e["target"] == execution_id and e["kind"] == "input")


class TestForwardLineageOfATree:
    def test_nested_reads_by_any_id_are_downstream_of_the_root_version_read(self, led: Ledger) -> None:
        """Reads of ``grades.0.score`` through the root's lineage id, the root's ecs_id and the
        child's own ecs_id all hang off the root version, labelled with the path from the root."""
        alice = _alice()
        child = alice.grades[0]
        by_lineage = CallableRegistry.execute("lin_twice", score=f"@{alice.lineage_id}.grades.0.score")
        by_version = CallableRegistry.execute("lin_twice", score=f"@{alice.ecs_id}.grades.0.score")
        by_child = CallableRegistry.execute("lin_twice", score=f"@{child.ecs_id}.score")
        graph = led.lineage_graph(str(alice.lineage_id), direction="down").to_json()
        nodes = {n["id"]: n for n in graph["nodes"]}
        root = str(alice.ecs_id)
        for out in (by_lineage, by_version, by_child):
            execution_id = str(out.derived_from_execution_id)
            assert nodes[execution_id]["kind"] == "execution"
            assert _reads(graph, execution_id) == [(root, "grades.0.score")]
            assert str(out.ecs_id) in nodes  # and what it wrote follows
        assert led.lineage_graph(str(alice.ecs_id), direction="down").to_json()["edges"] == graph["edges"]

    def test_a_read_hangs_off_the_version_current_when_it_ran(self, led: Ledger) -> None:
        """The child is unchanged in v2 (same ecs_id): a read after v2 belongs to v2, one before to v1,
        and a read pinned to v1's ecs_id after v2 still to v1."""
        alice = _alice()
        v1 = alice.ecs_id
        before = CallableRegistry.execute("lin_twice", score=f"@{alice.lineage_id}.grades.1.score")
        alice.name = "Alice L."
        EntityRegistry.version_entity(alice)
        v2 = alice.ecs_id
        assert alice.grades[1].ecs_id == EntityRegistry.get_stored_entity(v1, v1).grades[1].ecs_id  # shared child
        after = CallableRegistry.execute("lin_twice", score=f"@{alice.lineage_id}.grades.1.score")
        pinned = CallableRegistry.execute("lin_twice", score=f"@{v1}.grades.1.score")
        graph = led.lineage_graph(str(alice.lineage_id), direction="down").to_json()
        assert _reads(graph, str(before.derived_from_execution_id)) == [(str(v1), "grades.1.score")]
        assert _reads(graph, str(after.derived_from_execution_id)) == [(str(v2), "grades.1.score")]
        assert _reads(graph, str(pinned.derived_from_execution_id)) == [(str(v1), "grades.1.score")]

    def test_a_read_of_a_child_entity_is_downstream_of_its_tree(self, led: Ledger) -> None:
        """Reading the child entity itself (``@root.grades.1``) is a read in the tree too."""

        alice = _alice()
        out = CallableRegistry.execute("lin_grade", g=f"@{alice.lineage_id}.grades.1")
        graph = led.lineage_graph(str(alice.lineage_id), direction="down", depth=1).to_json()
        assert _reads(graph, str(out.derived_from_execution_id)) == [(str(alice.ecs_id), "grades.1")]


@CallableRegistry.register("lin_grade")
def lin_grade(g: Grade) -> float:
    return g.score
