"""Registering, diffing and forking trees; reading stored versions back."""

from __future__ import annotations

import pytest

from ledger import EntityRegistry, build_entity_tree
from ledger.errors import EntityNotFoundError, NotARootError

from .models import Grade, Node, Record, Student, student


def events_of(led) -> list:
    return list(led.store.iter_all())


class TestRegister:
    def test_register_appends_one_event_per_entity_in_one_batch(self, led) -> None:
        """A 3-entity tree is one atomic batch of three entity.version events."""
        s = student(n=2)
        s.promote_to_root()
        evs = events_of(led)
        assert [e.topic for e in evs] == ["entity.version"] * 3
        import orjson

        batch_ids = {orjson.loads(e.state)["batch_id"] for e in evs}
        assert len(batch_ids) == 1
        assert {e.originator_id for e in evs} == {s.lineage_id, s.grades[0].lineage_id, s.grades[1].lineage_id}

    def test_registering_twice_without_change_writes_nothing(self, mem) -> None:
        """promote_to_root of an unchanged stored root is a no-op."""
        s = student()
        s.promote_to_root()
        before = mem.store.head()
        s.promote_to_root()
        EntityRegistry.register_entity(s)
        assert mem.store.head() == before


class TestVersionEntity:
    def test_unchanged_tree_is_not_versioned(self, mem) -> None:
        s = student()
        s.promote_to_root()
        assert EntityRegistry.version_entity(s) is False

    def test_leaf_change_forks_leaf_and_ancestors_only(self, led) -> None:
        """A changed leaf and its ancestors get new ecs_ids; siblings keep theirs."""
        s = Student(name="s", record=Record(grades=[Grade(course="a", score=1), Grade(course="b", score=2)]))
        s.promote_to_root()
        ids = {n.lineage_id: n.ecs_id for n in build_entity_tree(s).nodes.values()}
        head = led.store.head()
        s.record.grades[0].score = 9
        assert EntityRegistry.version_entity(s) is True
        after = {n.lineage_id: n.ecs_id for n in build_entity_tree(s).nodes.values()}
        changed = {lin for lin in ids if ids[lin] != after[lin]}
        assert changed == {s.lineage_id, s.record.lineage_id, s.record.grades[0].lineage_id}
        assert led.store.head() == head + 3
        leaf = s.record.grades[0]
        assert leaf.previous_ecs_id == ids[leaf.lineage_id] and leaf.old_ids == [ids[leaf.lineage_id]]
        assert s.root_ecs_id == s.ecs_id and s.record.grades[1].root_ecs_id == s.ecs_id
        assert EntityRegistry.ecs_id_to_root_id(s.record.grades[1].ecs_id) == s.ecs_id

    @pytest.mark.parametrize(
        "edit",
        [
            lambda s: s.grades.append(Grade(course="new", score=0)),
            lambda s: s.grades.pop(),
            lambda s: s.grades.reverse(),
            lambda s: s.tags.append("x"),
            lambda s: setattr(s, "record", Record()),
        ],
        ids=["child-added", "child-removed", "children-reordered", "list-value-edited", "child-field-set"],
    )
    def test_structural_and_value_changes_are_detected(self, mem, edit) -> None:
        s = student(n=2)
        s.promote_to_root()
        old = s.ecs_id
        edit(s)
        assert EntityRegistry.version_entity(s) is True
        assert s.ecs_id != old

    def test_identity_metadata_is_not_a_change(self, mem) -> None:
        """Derivation metadata set on an entity does not make it diverge."""
        s = student()
        s.promote_to_root()
        s.derived_from_function = "f"
        s.output_index = 3
        assert EntityRegistry.version_entity(s) is False

    def test_force_versioning_versions_every_node(self, mem) -> None:
        s = student(n=2)
        s.promote_to_root()
        head = mem.store.head()
        assert EntityRegistry.version_entity(s, force_versioning=True)
        assert mem.store.head() == head + 3

    def test_big_tree_writes_only_the_changed_path(self, mem) -> None:
        """Versioning after one leaf change in a 1,000-entity tree appends only leaf + ancestors."""
        root = Node(label="root", children=[Node(label=f"m{i}", children=[Node(label=f"l{i}.{j}") for j in range(98)]) for i in range(10)])
        assert len(build_entity_tree(root)) == 991
        root.promote_to_root()
        head = mem.store.head()
        root.children[3].children[7].label = "changed"
        EntityRegistry.version_entity(root)
        assert mem.store.head() - head == 3

    def test_versioning_a_child_versions_its_live_root(self, mem) -> None:
        s = student()
        s.promote_to_root()
        old = s.ecs_id
        s.grades[0].score = 42
        assert EntityRegistry.version_entity(s.grades[0]) is True
        assert s.ecs_id != old

    def test_an_orphan_child_copy_cannot_be_versioned(self, mem) -> None:
        s = student()
        s.promote_to_root()
        copy = EntityRegistry.get_stored_entity(s.ecs_id, s.grades[0].ecs_id)
        copy.score = 5
        with pytest.raises(NotARootError, match="entity: Grade"):
            EntityRegistry.version_entity(copy)

    def test_version_1_and_2000_of_a_lineage(self, mem) -> None:
        """Long lineages keep linear history; old_ids derive from it."""
        s = student(n=1)
        s.promote_to_root()
        first = s.ecs_id
        for i in range(50):
            s.gpa = float(i + 1)
            EntityRegistry.version_entity(s)
        hist = EntityRegistry.history(s.lineage_id)
        assert len(hist) == 51 and hist[0].ecs_id == first and hist[-1].ecs_id == s.ecs_id
        assert hist[-1].old_ids == [h.ecs_id for h in hist[:-1]] == s.old_ids


class TestStoredCopies:
    def test_stored_tree_is_a_fresh_isolated_copy(self, led) -> None:
        s = student()
        s.promote_to_root()
        tree = EntityRegistry.get_stored_tree(s.ecs_id)
        copy = tree.root
        assert copy is not s and copy.ecs_id == s.ecs_id and copy.live_id != s.live_id
        assert copy.from_storage and copy == copy.model_copy()
        assert copy.grades[0].root_live_id == copy.live_id
        copy.grades[0].score = 100
        copy.name = "changed"
        again = EntityRegistry.get_stored_tree(s.ecs_id).root
        assert again.name == "Alice" and again.grades[0].score == 0.0
        assert EntityRegistry.get_live_entity(copy.live_id) is copy

    def test_get_stored_entity_of_a_child(self, mem) -> None:
        s = student()
        s.promote_to_root()
        g = EntityRegistry.get_stored_entity(s.ecs_id, s.grades[1].ecs_id)
        assert isinstance(g, Grade) and g.course == "c1" and g.root_ecs_id == s.ecs_id

    def test_unknown_ids_raise_errors_that_name_the_argument(self, mem) -> None:
        import uuid

        with pytest.raises(EntityNotFoundError, match="root_ecs_id"):
            EntityRegistry.get_stored_tree(uuid.uuid4())
        with pytest.raises(EntityNotFoundError, match="lineage_id"):
            EntityRegistry.history(uuid.uuid4())
        with pytest.raises(EntityNotFoundError, match="ecs_id"):
            EntityRegistry.ecs_id_to_root_id(uuid.uuid4())
        with pytest.raises(EntityNotFoundError, match="not-a-uuid"):
            EntityRegistry.get_stored_tree("not-a-uuid")

    def test_child_version_is_not_a_tree_root(self, mem) -> None:
        s = student()
        s.promote_to_root()
        with pytest.raises(NotARootError):
            EntityRegistry.get_stored_tree(s.grades[0].ecs_id)


class TestDiffAndTimeTravel:
    def test_diff_reports_fields_and_children_by_dotted_path(self, mem) -> None:
        s = Student(name="s", gpa=1.0, record=Record(grades=[Grade(course="a", score=1)]))
        s.promote_to_root()
        a = s.ecs_id
        s.gpa = 2.0
        s.record.grades[0].score = 5
        s.record.grades.append(Grade(course="b", score=3))
        EntityRegistry.version_entity(s)
        d = EntityRegistry.diff(a, s.ecs_id)
        assert d["gpa"] == (1.0, 2.0)
        assert d["record.grades.0.score"] == (1, 5)
        old, new = d["record.grades.1"]
        assert old is None and new["course"] == "b"

    def test_as_of_position_and_time(self, mem) -> None:
        s = student()
        s.promote_to_root()
        p1, t1 = mem.store.head(), mem.index.lineage_times[s.lineage_id][0]
        s.gpa = 3.0
        EntityRegistry.version_entity(s)
        assert EntityRegistry.as_of(s.lineage_id, position=p1).gpa == 0.0
        assert EntityRegistry.as_of(s.lineage_id, position=mem.store.head()).gpa == 3.0
        assert EntityRegistry.as_of(s.lineage_id, position=0) is None
        assert EntityRegistry.as_of(s.lineage_id, at=t1).gpa == 0.0
