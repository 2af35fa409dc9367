"""detach / attach / promote_to_root, provenance borrowing and the functional API."""

from __future__ import annotations

import orjson
import pytest

from ledger import EntityRegistry, create_composite_entity, get, put
from ledger.errors import AttachError, BadPathError, DetachError, InputValidationError, MalformedAddressError, UnknownEntityError

from .models import Grade, Holder, Record, Student, student


def last_batch(led) -> list[dict]:
    evs = [orjson.loads(n.state) for n in led.store.iter_all()]
    last = evs[-1]["batch_id"]
    return [e for e in evs if e["batch_id"] == last]


class TestDetach:
    def test_detach_removes_child_and_versions_both_trees_in_one_batch(self, led) -> None:
        s = student(n=2)
        s.promote_to_root()
        old_root, g = s.ecs_id, s.grades[1]
        old_g, lineage = g.ecs_id, g.lineage_id
        g.detach()
        assert g not in s.grades and len(s.grades) == 1
        assert g.is_root_entity() and g.lineage_id == lineage and g.previous_ecs_id == old_g
        assert s.ecs_id != old_root
        batch = last_batch(led)
        assert {e["cause"] for e in batch} == {"detach"}
        assert {e["lineage_id"] for e in batch} == {str(s.lineage_id), str(lineage)}
        stored = EntityRegistry.get_stored_tree(s.ecs_id).root
        assert [x.course for x in stored.grades] == ["c0"]
        assert EntityRegistry.get_stored_tree(g.ecs_id).root.course == "c1"

    def test_detach_after_the_caller_removed_it(self, mem) -> None:
        s = student(n=2)
        s.promote_to_root()
        g = s.grades.pop(0)
        g.detach()
        assert g.is_root_entity()
        assert len(EntityRegistry.get_stored_tree(s.ecs_id).root.grades) == 1

    def test_detach_of_a_stored_copy_without_live_parent(self, mem) -> None:
        s = student(n=2)
        s.promote_to_root()
        copy = EntityRegistry.get_stored_entity(s.ecs_id, s.grades[0].ecs_id)
        copy.root_live_id = None
        copy.detach()
        root_now = EntityRegistry.ecs_id_to_root_id(mem.index.lineage_ids[s.lineage_id][-1])
        parent = EntityRegistry.get_stored_tree(root_now).root
        assert [x.course for x in parent.grades] == ["c1"] and copy.is_root_entity()

    def test_detaching_a_required_child_is_refused_and_writes_nothing(self, mem) -> None:
        h = Holder(label="h", required=Grade(course="x", score=1))
        h.promote_to_root()
        head = mem.store.head()
        with pytest.raises(DetachError, match="Holder.required"):
            h.required.detach()
        assert mem.store.head() == head and h.required is not None

    def test_promote_to_root_of_a_stored_child_detaches_it(self, mem) -> None:
        s = student(n=1)
        s.promote_to_root()
        g = s.grades[0]
        g.promote_to_root()
        assert g.is_root_entity() and s.grades == []


class TestAttach:
    def test_attach_a_root_placed_inside_a_new_parent(self, led) -> None:
        s = student(n=1)
        s.promote_to_root()
        g = Grade(course="extra", score=4)
        g.promote_to_root()
        old_g, old_s = g.ecs_id, s.ecs_id
        s.grades.append(g)
        g.attach(s)
        assert not g.is_root_entity() and g.root_ecs_id == s.ecs_id
        assert g.ecs_id != old_g and g.previous_ecs_id == old_g and s.ecs_id != old_s
        assert {e["cause"] for e in last_batch(led)} == {"attach"}
        assert [x.course for x in EntityRegistry.get_stored_tree(s.ecs_id).root.grades] == ["c0", "extra"]

    def test_attach_requires_the_entity_inside_the_parent(self, mem) -> None:
        s = student(n=1)
        s.promote_to_root()
        g = Grade(course="x", score=1)
        g.promote_to_root()
        head = mem.store.head()
        with pytest.raises(AttachError, match="place it in a field"):
            g.attach(s)
        assert mem.store.head() == head

    def test_attach_of_a_stored_child_is_refused(self, mem) -> None:
        s = student(n=1)
        s.promote_to_root()
        other = student("Bob", n=0)
        other.promote_to_root()
        with pytest.raises(AttachError, match="detach\\(\\) it"):
            s.grades[0].attach(other)


class TestProvenance:
    def test_borrow_attribute_from_records_the_source(self, mem) -> None:
        a = Student(name="Alice", tags=["x"])
        a.promote_to_root()
        b = Student(name="Bob")
        b.borrow_attribute_from(a, "tags", "tags")
        assert b.tags == ["x"] and b.tags is not a.tags
        assert b.attribute_source["tags"] == a.ecs_id
        with pytest.raises(InputValidationError, match="source_field 'nope'"):
            b.borrow_attribute_from(a, "nope", "tags")
        with pytest.raises(InputValidationError, match="does not fit"):
            b.borrow_attribute_from(a, "name", "gpa")

    def test_borrow_from_address(self, mem) -> None:
        a = student(n=2)
        a.promote_to_root()
        b = Student(name="Bob")
        b.borrow_from_address(f"@{a.ecs_id}.grades.1.score", "gpa")
        assert b.gpa == 1.0 and b.attribute_source["gpa"] == a.grades[1].ecs_id
        b.promote_to_root()
        stored = EntityRegistry.get_stored_tree(b.ecs_id).root
        assert stored.attribute_source == {"gpa": a.grades[1].ecs_id}


class TestFunctionalAPI:
    def test_get_values_entities_and_dict_keys(self, mem) -> None:
        s = Student(name="s", record=Record(notes={"top": Grade(course="m", score=3)}))
        s.promote_to_root()
        assert get(f"@{s.ecs_id}.name") == "s"
        assert get(f"@{s.ecs_id}.record.notes.top.score") == 3
        g = get(f"@{s.ecs_id}.record.notes.top")
        assert isinstance(g, Grade) and g.from_storage
        assert get(f"@{s.lineage_id}.name") == "s"  # a lineage id means its latest version

    @pytest.mark.parametrize(
        "address, error, fragment",
        [
            ("@nope", MalformedAddressError, "uuid"),
            ("@{root}..name", MalformedAddressError, "empty path"),
            ("@00000000-0000-4000-8000-000000000000", UnknownEntityError, "names no stored entity"),
            ("@{root}.missing", BadPathError, "no field 'missing'"),
            ("@{root}.grades.7", BadPathError, "not a valid index"),
        ],
    )
    def test_bad_addresses(self, mem, address, error, fragment) -> None:
        s = student()
        s.promote_to_root()
        with pytest.raises(error, match=fragment) as info:
            get(address.format(root=s.ecs_id))
        assert isinstance(info.value, ValueError) and "address" in str(info.value)

    def test_put_versions_the_owning_tree(self, mem) -> None:
        s = student()
        s.promote_to_root()
        new_root = put(f"@{s.ecs_id}.grades.0.score", 7.5)
        assert new_root.ecs_id != s.ecs_id and new_root.lineage_id == s.lineage_id
        assert get(f"@{new_root.ecs_id}.grades.0.score") == 7.5
        with pytest.raises(InputValidationError, match="Grade.score"):
            put(f"@{new_root.ecs_id}.grades.0.score", "not a number")

    def test_create_composite_entity(self, mem) -> None:
        s = student()
        s.promote_to_root()
        g = create_composite_entity(Grade, {"course": f"@{s.ecs_id}.name", "score": 2.5})
        assert g.course == "Alice" and g.attribute_source == {"course": s.ecs_id}
        assert g.is_root_entity()
        assert g.ecs_id in mem.index.records
