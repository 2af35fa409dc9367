"""Entities, trees and the structural rules a tree must obey."""

from __future__ import annotations

import pytest

from ledger import Entity, build_entity_tree
from ledger.errors import LedgerError, TreeStructureError

from .models import Course, Grade, Node, Record, Student, student

IDENTITY = [
    "ecs_id", "live_id", "lineage_id", "previous_ecs_id", "old_ids", "created_at", "forked_at",
    "root_ecs_id", "root_live_id", "attribute_source", "from_storage", "derived_from_function",
    "derived_from_execution_id", "function_input_entities", "sibling_output_entities", "output_index",
]


class TestIdentityFields:
    def test_every_contract_field_exists_with_sane_defaults(self) -> None:
        """Every identity and tracking field of API.md is present on a new entity."""
        g = Grade(course="math", score=1.0)
        for name in IDENTITY:
            assert hasattr(g, name), name
        assert g.ecs_id != g.lineage_id != g.live_id
        assert g.created_at.tzinfo is not None
        assert g.old_ids == [] and g.previous_ecs_id is None and not g.is_root_entity()

    def test_update_ecs_ids_forks_the_object_only(self) -> None:
        """update_ecs_ids gives a new version id, keeps the lineage and remembers the old id."""
        g = Grade(course="math", score=1.0)
        g.root_ecs_id = g.ecs_id
        old, lineage = g.ecs_id, g.lineage_id
        g.update_ecs_ids()
        assert g.ecs_id != old and g.lineage_id == lineage
        assert g.previous_ecs_id == old and g.old_ids == [old]
        assert g.root_ecs_id == g.ecs_id and g.forked_at is not None


class TestTrees:
    def test_children_in_fields_lists_tuples_dicts_and_nesting(self) -> None:
        """Children are found in every container kind, nested, with field and path on the edge."""
        a, b, c, d, e, f = (Grade(course=x, score=1.0) for x in "abcdef")
        course = Course(title="t", best=a, pair=(b, c), by_term={"fall": [d]}, nested=[{"k": e}])
        holder = Student(name="s", record=Record(notes={"n": f}))
        tree = build_entity_tree(course)
        assert len(tree) == 6
        edges = {tree.nodes[k].course: (v.field, v.path) for k, v in tree.edges.items()}
        assert edges == {
            "a": ("best", ()),
            "b": ("pair", (0,)),
            "c": ("pair", (1,)),
            "d": ("by_term", ("fall", 0)),
            "e": ("nested", (0, "k")),
        }
        t2 = build_entity_tree(holder)
        assert t2.edges[f.ecs_id].field == "notes" and t2.edges[f.ecs_id].path == ("n",)
        assert list(t2.ancestors(f.ecs_id)) == [holder.record.ecs_id, holder.ecs_id]

    def test_every_node_knows_its_root_after_registration(self, mem) -> None:
        """After promote_to_root, root_ecs_id / root_live_id point at the root on every node."""
        s = Student(name="s", grades=[Grade(course="x", score=1)], record=Record(grades=[Grade(course="y", score=2)]))
        s.promote_to_root()
        for node in build_entity_tree(s).nodes.values():
            assert node.root_ecs_id == s.ecs_id and node.root_live_id == s.live_id
        assert s.is_root_entity() and not s.grades[0].is_root_entity()

    def test_a_cycle_is_refused_with_both_locations(self) -> None:
        """A node reachable from itself is a TreeStructureError naming where."""
        n = Node(label="a")
        n.children.append(n)
        with pytest.raises(TreeStructureError, match=r"root.*root\.children\[0\]"):
            build_entity_tree(n)

    def test_a_shared_child_is_refused(self) -> None:
        """One entity object in two places is not a tree."""
        g = Grade(course="x", score=1)
        s = Student(name="s", grades=[g, g])
        with pytest.raises(TreeStructureError, match="only one parent"):
            build_entity_tree(s)
        assert issubclass(TreeStructureError, (LedgerError, ValueError))

    def test_unsupported_dict_keys_in_tree_fields(self) -> None:
        """Dict keys that would not survive JSON are refused, naming the location."""

        class Weird(Entity):
            m: dict[float, Grade] = {}

        w = Weird(m={1.5: Grade(course="x", score=1)})
        with pytest.raises(TreeStructureError, match=r"root\.m: dict key 1\.5"):
            build_entity_tree(w)

    def test_deep_tree_is_walked_without_recursion_limits(self) -> None:
        """A chain 5,000 deep builds (the walk is iterative)."""
        root = Node(label="0")
        cur = root
        for i in range(1, 5000):
            nxt = Node(label=str(i))
            cur.children.append(nxt)
            cur = nxt
        assert len(build_entity_tree(root)) == 5000


def test_student_helper_builds_children() -> None:
    """The shared model helper builds a root with n children."""
    assert len(build_entity_tree(student(n=3))) == 4
