"""Outputs the call minted are planned without lookups (``planning.brand_new``): which trees
qualify, and that what they store is what the full diff stored."""

from __future__ import annotations

from ledger import CallableRegistry, Entity, Ledger, _process
from ledger.model.tree import build_entity_tree
from ledger.write.planning import brand_new


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
