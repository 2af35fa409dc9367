"""ledger/write/planning.py: a version written by hand is never attributed to an execution
(``TestManualVersionsAreNotAttributed``, issue 9 section 6), and outputs the call minted are planned without lookups (``planning.brand_new``): which trees
qualify, and that what they store is what the full diff stored."""

from __future__ import annotations

from uuid import UUID

import pytest

import ledger
from ledger import CallableRegistry, Entity, EntityRegistry, Ledger, _process, put
from ledger.model.tree import build_entity_tree
from ledger.write.planning import brand_new

from .holes import HLeaf, HNote, events, version_payload


class Part(Entity):
    label: str


class Box(Entity):
    name: str
    part: Part | None = None


def test_brand_new_only_for_trees_minted_since_the_mark(mem: Ledger) -> None:
    stored = Box(name="old")
    stored.promote_to_root()  # written before the mark
    mark = _process.mint_mark()
    fresh = Box(name="new", part=Part(label="p"))
    assert brand_new(build_entity_tree(fresh), mark) is True
    assert brand_new(build_entity_tree(stored), mark) is False
    holding_old = Box(name="holder", part=stored.part)  # None child: still all new
    assert brand_new(build_entity_tree(holding_old), mark) is True
    mixed = Box(name="mixed", part=Part(label="q"))
    mixed.part.__dict__["previous_ecs_id"] = stored.ecs_id  # a previous version: full path
    assert brand_new(build_entity_tree(mixed), mark) is False
    made_before = Box(name="early")
    assert brand_new(build_entity_tree(made_before), _process.mint_mark()) is False
    fresh.promote_to_root()  # stored now: no longer brand new
    assert brand_new(build_entity_tree(fresh), mark) is False


@CallableRegistry.register("bn_make")
def bn_make(box: Box) -> Box:
    return Box(name=box.name + "!", part=Part(label="made"))


@CallableRegistry.register("bn_copy_stored")
def bn_copy_stored(box: Box) -> Box:
    return box.model_copy(update={"name": "copied"})  # keeps the stored ecs_id: full path


def test_outputs_store_the_same_versions_either_way(led: Ledger) -> None:
    box = Box(name="in")
    box.promote_to_root()
    made = CallableRegistry.execute("bn_make", box=box)
    assert made.previous_ecs_id is None
    assert made.part is not None and made.part.previous_ecs_id is None
    assert made.derived_from_function == "bn_make"
    rec = led.index.records[made.ecs_id]
    assert rec.previous_ecs_id is None and rec.is_root
    assert led.index.records[made.part.ecs_id].is_root is False
    copied = CallableRegistry.execute("bn_copy_stored", box=box)
    assert copied.name == "copied"
    assert copied.ecs_id != box.ecs_id
    assert led.index.records[copied.ecs_id].previous_ecs_id == box.ecs_id
    assert led.verify().ok


def analytics_meta(lg: Ledger, ecs_id: UUID) -> tuple[str | None, str | None, str]:
    """(derived_from_execution_id, derived_from_function, cause) of a version, read through ``sql``."""
    row = lg.sql(
        "SELECT json_extract_string(ev.payload, '$.meta.derived_from_execution_id'), "
        "json_extract_string(ev.payload, '$.meta.derived_from_function'), v.cause "
        "FROM entity_versions v JOIN events ev USING (position) WHERE v.ecs_id = ?",
        [str(ecs_id)],
    ).fetchall()
    assert len(row) == 1, row
    return row[0]


def assert_manual(lg: Ledger, ecs_id: UUID, root_ecs_id: UUID | None = None) -> None:
    """Version ``ecs_id`` carries no execution attribution: in its event, read back, and in SQL."""
    meta = version_payload(lg, ecs_id)["meta"]
    for name in ("derived_from_execution_id", "derived_from_function", "function_input_entities",
                 "sibling_output_entities", "output_index"):
        assert name not in meta, (name, meta)
    got = lg.registry.get_stored_entity(root_ecs_id or ecs_id, ecs_id)
    assert got.derived_from_execution_id is None and got.derived_from_function is None
    assert got.function_input_entities == [] and got.output_index is None
    execution_id, function, cause = analytics_meta(lg, ecs_id)
    assert execution_id is None and function is None and cause != "execution"


# ============================================================ 1. attribution
class TestManualVersionsAreNotAttributed:
    def test_version_entity_after_execute(self, led: Ledger) -> None:
        """A manual edit versioned after an execution has no derived_from_execution_id / _function."""
        out = CallableRegistry.execute("holes_make_note", name="a")
        made, execution_id = out.ecs_id, out.derived_from_execution_id
        assert execution_id is not None
        out.name = "x"
        assert EntityRegistry.version_entity(out) is True
        assert_manual(led, out.ecs_id)
        assert out.derived_from_execution_id is None and out.derived_from_function is None
        first, second = EntityRegistry.history(out.lineage_id)
        assert (first.ecs_id, first.derived_from_execution_id, first.derived_from_function) == (
            made, execution_id, "holes_make_note"
        )
        assert second.derived_from_execution_id is None and second.derived_from_function is None
        assert EntityRegistry.as_of(out.lineage_id, position=led.store.head()).derived_from_execution_id is None

    def test_execution_versions_keep_their_execution(self, led: Ledger) -> None:
        """The version an execution wrote names that execution, in the event and in SQL."""
        out = CallableRegistry.execute("holes_make_note", name="a")
        meta = version_payload(led, out.ecs_id)["meta"]
        assert meta["derived_from_execution_id"] == str(out.derived_from_execution_id)
        assert meta["derived_from_function"] == "holes_make_note"
        assert analytics_meta(led, out.ecs_id) == (
            str(out.derived_from_execution_id), "holes_make_note", "execution"
        )

    @pytest.mark.parametrize("function", ["holes_bump", "holes_bump_in_child"])
    def test_mutation_by_a_later_execution_names_the_later_one(self, led: Ledger, function: str) -> None:
        """A version written by a second execution (inline or in a child) is attributed to it, not to the creator."""
        out = CallableRegistry.execute("holes_make_note", name="a")
        bumped = CallableRegistry.execute(function, note=out)
        second = led.sql(
            "SELECT execution_id FROM executions WHERE function_name = ?", [function]
        ).fetchall()[0][0]
        stored = EntityRegistry.get_stored_entity(bumped.ecs_id, bumped.ecs_id)
        assert str(stored.derived_from_execution_id) == second
        assert stored.derived_from_function == function
        assert stored.function_input_entities == [] and stored.output_index is None
        assert analytics_meta(led, bumped.ecs_id) == (second, function, "execution")

    def test_edited_output_traced_as_an_input(self, led: Ledger) -> None:
        """An edited output passed to the next call is versioned (traced) as a manual edit."""
        out = CallableRegistry.execute("holes_make_note", name="a")
        out.name = "edited"
        CallableRegistry.execute("holes_bump", note=out)
        traced = [
            p for _, t, p in events(led)
            if t == "entity.version" and p["lineage_id"] == str(out.lineage_id) and p["cause"] == "version"
        ]
        assert len(traced) == 1
        assert_manual(led, UUID(traced[0]["ecs_id"]))

    def test_put_after_execute(self, led: Ledger) -> None:
        """``put`` on an execution's output writes a version attributed to no execution."""
        out = CallableRegistry.execute("holes_make_note", name="a")
        new_root = put(f"@{out.ecs_id}.name", "b")
        assert new_root.name == "b"
        assert_manual(led, new_root.ecs_id)

    def test_detach_after_execute(self, led: Ledger) -> None:
        """Detaching a child of an output: the parent's and the child's new versions are manual."""
        box = CallableRegistry.execute("holes_make_box", name="b", n=2)
        leaf = box.leaves[0]
        leaf.detach()
        assert_manual(led, box.ecs_id)
        assert_manual(led, leaf.ecs_id)

    def test_attach_after_execute(self, led: Ledger) -> None:
        """Attaching a root into an output's tree: the output's new version is manual."""
        box = CallableRegistry.execute("holes_make_box", name="b", n=1)
        loose = HLeaf(label="loose")
        loose.promote_to_root()
        box.leaves.append(loose)
        loose.attach(box)
        assert_manual(led, box.ecs_id)
        assert_manual(led, loose.ecs_id, box.ecs_id)

    def test_borrow_after_execute(self, led: Ledger) -> None:
        """A borrowed value versioned by hand keeps its attribute_source but names no execution."""
        out = CallableRegistry.execute("holes_make_note", name="a")
        source = HNote(name="source")
        source.promote_to_root()
        out.borrow_attribute_from(source, "name", "name")
        EntityRegistry.version_entity(out)
        assert_manual(led, out.ecs_id)
        assert version_payload(led, out.ecs_id)["meta"]["attribute_source"] == {"name": str(source.ecs_id)}
        other = CallableRegistry.execute("holes_make_note", name="c")
        other.borrow_from_address(f"@{source.ecs_id}.name", "name")
        EntityRegistry.version_entity(other)
        assert_manual(led, other.ecs_id)

    def test_unpacked_sibling_metadata_is_dropped_by_a_manual_edit(self, led: Ledger) -> None:
        """A manual version of an unpacked output drops output_index and sibling ids of the old execution."""

        @CallableRegistry.register("holes_pair")
        def holes_pair(a: str) -> tuple[HNote, HNote]:
            return HNote(name=a), HNote(name=a + "2")

        first, _ = CallableRegistry.execute("holes_pair", a="p")
        assert first.output_index == 0 and first.sibling_output_entities
        first.name = "manual"
        EntityRegistry.version_entity(first)
        assert_manual(led, first.ecs_id)
        assert first.output_index is None and first.sibling_output_entities == []

    def test_read_back_after_reopening(self, durable_url: str) -> None:
        """A reopened ledger reads the manual version without attribution (from the log alone)."""
        lg = ledger.connect(durable_url)
        try:
            out = CallableRegistry.execute("holes_make_note", name="a")
            out.name = "x"
            EntityRegistry.version_entity(out)
        finally:
            lg.close()
            ledger.set_default_ledger(None)
        with Ledger(durable_url) as again:
            made, manual = again.registry.history(out.lineage_id)
            assert made.derived_from_function == "holes_make_note"
            assert manual.derived_from_execution_id is None and manual.derived_from_function is None
