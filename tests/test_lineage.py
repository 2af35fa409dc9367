"""``projections.lineage``: the forward lineage of a tree holds every execution that read
anything in it, whichever id (ecs_id or lineage id, of the root or of a child) the address used.

On every backend (the ``led`` fixture: memory, SQLite, PostgreSQL). And the lineage graph
(``TestLineageGraph``): downstream, upstream and depth, time travel to a past position, its
renderings (Mermaid, DOT, JSON) and the references and arguments it refuses."""

from __future__ import annotations

import json

import pytest

from ledger import CallableRegistry, EntityRegistry, Ledger
from ledger.errors import MalformedAddressError, UnknownEntityError
from projections.lineage import LineageQueryError
from tests.models import Grade, Student
from tests.projection_rows import student
from tools.workload import WPolicy


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


class TestLineageGraph:
    def build(self, mem: Ledger) -> dict[str, object]:
        ada = student()
        EntityRegistry.register_entity(ada)
        v1 = ada.ecs_id
        at_v1 = mem.store.head()
        curved = CallableRegistry.execute("wl_curve", student=ada, policy=WPolicy())
        kept, dropped = CallableRegistry.execute("wl_split", student=curved)
        return {"v1": v1, "at_v1": at_v1, "curved": curved, "kept": kept, "dropped": dropped, "ada": ada}

    def test_downstream_upstream_and_depth(self, mem: Ledger) -> None:
        w = self.build(mem)
        v1, curved, kept, dropped = str(w["v1"]), w["curved"], w["kept"], w["dropped"]
        down = mem.lineage_graph(v1, direction="downstream")
        assert {str(curved.ecs_id), str(kept.ecs_id), str(dropped.ecs_id)} <= set(down.nodes)
        functions = {a["function_name"] for a in down.nodes.values() if a["kind"] == "execution"}
        assert functions == {"wl_curve", "wl_split"}
        one = mem.lineage_graph(v1, direction="downstream", depth=1)
        assert str(curved.ecs_id) in one.nodes and str(kept.ecs_id) not in one.nodes
        up = mem.lineage_graph(dropped.ecs_id, direction="up")
        assert v1 in up.nodes and str(curved.ecs_id) in up.nodes
        assert str(kept.ecs_id) not in up.nodes  # a sibling, not an ancestor
        zero = mem.lineage_graph(v1, depth=0)
        assert list(zero.nodes) == [v1] and zero.edges == []

    def test_as_of_a_past_position_hides_later_derivations(self, mem: Ledger) -> None:
        w = self.build(mem)
        then = mem.lineage_graph(w["ada"].lineage_id, position=w["at_v1"])
        assert list(then.nodes) == [str(w["v1"])] and then.edges == []
        now = mem.lineage_graph(w["ada"].lineage_id)
        assert len([n for n in now.nodes.values() if n["kind"] == "entity" and n["lineage_id"] == str(w["ada"].lineage_id)]) == 3
        with pytest.raises(UnknownEntityError, match="ref"):
            mem.lineage_graph(w["kept"].ecs_id, position=w["at_v1"])

    def test_renderings(self, mem: Ledger) -> None:
        w = self.build(mem)
        curve_id = mem.sql("select execution_id from executions where function_name = 'wl_curve'").fetchall()[0][0]
        g = mem.lineage_graph(curve_id)
        assert g.nodes[curve_id]["kind"] == "execution"
        mermaid = g.to_mermaid()
        assert mermaid.startswith("graph LR") and "wl_curve()" in mermaid and "|mutation|" in mermaid
        dot = g.to_dot()
        assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}") and "->" in dot
        doc = json.loads(json.dumps(g.to_json()))
        assert {e["kind"] for e in doc["edges"]} >= {"input", "config", "mutation"}
        assert {n["id"] for n in doc["nodes"]} == set(g.nodes)

    def test_bad_references_and_arguments(self, mem: Ledger) -> None:
        self.build(mem)
        with pytest.raises(MalformedAddressError, match="ref"):
            mem.lineage_graph("not-a-uuid")
        with pytest.raises(UnknownEntityError, match="ref"):
            mem.lineage_graph("00000000-0000-4000-8000-000000000000")
        with pytest.raises(LineageQueryError, match="direction"):
            mem.lineage_graph(next(iter(mem.index.lineage_ids)), direction="sideways")
        with pytest.raises(LineageQueryError, match="depth"):
            mem.lineage_graph(next(iter(mem.index.lineage_ids)), depth=-1)
