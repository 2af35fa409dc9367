"""The output stages of an execution: classify → group → record.

The return value has already been unpacked into its outputs (``returns.shape_return``);
these stages decide what each output is, which trees carry them, and write all of it in
one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from ledger import _process
from ledger.events.bodies import (
    EXECUTION_COMPLETED,
    execution_completed_body,
    output_record,
)
from ledger.model.entity import Entity
from ledger.model.function_execution import FunctionExecution
from ledger.model.tree import EntityTree, build_entity_tree
from ledger.model.walk import replace_at
from ledger.write.batch import Batch
from ledger.write.call import Call
from ledger.write.planning import TreePlan, add_plan, brand_new, meta_of, plan_tree
from ledger.write.returns import ReturnShape

__all__ = ["CREATION", "DETACHMENT", "MUTATION", "Output", "attribute_creations", "classify", "group_trees", "record", "returned"]

MUTATION, CREATION, DETACHMENT = "mutation", "creation", "detachment"


class Output:
    __slots__ = ("obj", "semantic", "record_root", "plan")

    def __init__(self, obj: Entity, semantic: str) -> None:
        self.obj = obj
        self.semantic = semantic
        self.record_root: Entity = obj
        self.plan: TreePlan | None = None



def classify(call: Call, shape: ReturnShape, key: Callable[[Entity], Any], by_ids: bool) -> dict[int, Output]:
    """Stage *classify*: MUTATION (an input copy came back), DETACHMENT (a node of an input
    tree came back on its own) or CREATION, for each distinct output object.

    ``key`` is ``id`` or, for results rebuilt from another process, the ecs_id.
    Returns id(output object) -> its Output, in first-seen order.
    """
    copies = {key(c): c for c in call.copies}
    node_roots: dict[Any, EntityTree] = {}  # node of a pre-run input tree -> that tree
    for tree in call.trees:
        for node in tree.nodes.values():
            node_roots[key(node)] = tree
    by_obj: dict[int, Output] = {}
    for obj in shape.outputs:
        if id(obj) in by_obj:
            continue
        k = key(obj)
        if k in copies:
            out = Output(obj, MUTATION)
            tree = node_roots[k]
            if tree.root is not copies[k] and not by_ids:
                out.record_root = tree.root  # a sub-entity input: its tree gets the new version
            elif by_ids and key(tree.root) != k:
                _graft(tree, copies[k], obj)
                out.record_root = tree.root
        elif k in node_roots:
            out = Output(obj, DETACHMENT)
        else:
            out = Output(obj, CREATION)
        by_obj[id(obj)] = out
    return by_obj


def group_trees(
    outputs: list[Output], key: Callable[[Entity], Any], by_ids: bool
) -> tuple[dict[int, Entity], dict[int, EntityTree]]:
    """Which trees to record: an output inside another output's tree is recorded with it.

    Returns (id -> root of each tree to record, id -> the trees already built).
    """
    candidates: dict[int, Entity] = {}
    for out in outputs:
        candidates.setdefault(id(out.record_root), out.record_root)
    trees: dict[int, EntityTree] = {rid: build_entity_tree(r) for rid, r in candidates.items()}
    inside: dict[Any, tuple[int, Entity]] = {}
    for rid, tree in trees.items():
        for node in tree.nodes.values():
            if node is not tree.root:
                inside[key(node)] = (rid, node)
    for out in outputs:
        rid = id(out.record_root)
        if out.record_root is not out.obj and key(out.obj) not in inside:
            # the sub-entity left its tree during the call: it is recorded on its own
            out.record_root = out.obj
            trees.setdefault(id(out.obj), build_entity_tree(out.obj))
            continue
        holder = inside.get(key(out.record_root))
        if holder is not None and holder[0] != rid:
            out.record_root = trees[holder[0]].root
            if by_ids:
                out.obj = holder[1]
            if out.semantic == DETACHMENT:
                out.semantic = MUTATION  # still in its (returned) parent: changed in place
    roots: dict[int, Entity] = {}
    for out in outputs:
        roots.setdefault(id(out.record_root), out.record_root)
    return roots, trees


def attribute_creations(call: Call, outputs: list[Output]) -> None:
    """New entities returned on their own name the execution and its inputs."""
    input_ids = call.input_entity_ids
    for out in outputs:
        if out.semantic == CREATION and out.record_root is out.obj:
            obj = out.obj
            obj.derived_from_function = call.meta.name
            obj.derived_from_execution_id = call.execution_id
            obj.function_input_entities = list(input_ids)


def record(
    call: Call,
    shape: ReturnShape,
    by_obj: dict[int, Output],
    roots: dict[int, Entity],
    trees: dict[int, EntityTree],
    duration_ms: float,
) -> list[Output]:
    """Stage *record*: plan every output tree, then one batch with the output versions, the
    ``FunctionExecution`` entity and ``execution.completed``. Returns the outputs in the
    order the function returned them."""
    ledger = call.ledger
    meta = call.meta
    input_ids = call.input_entity_ids
    outputs = list(by_obj.values())
    # Ids minted from the call's start on (its execution id is the first): outputs made of
    # nothing older are planned without lookups or diffs (``brand_new``).
    since = _process.minted.get(call.execution_id.int)
    with ledger.writing():
        plans: dict[int, TreePlan] = {}
        for rid, root in roots.items():
            tree = trees.get(rid) or build_entity_tree(root)
            fresh = since is not None and brand_new(tree, since)
            plans[rid] = plan_tree(ledger.index, tree, written_by=(call.execution_id, meta.name), fresh=fresh)
        for out in outputs:
            out.plan = plans[id(out.record_root)]

        def final_id(obj: Entity, plan: TreePlan | None) -> UUID:
            return plan.new_ids.get(obj.ecs_id, obj.ecs_id) if plan is not None else obj.ecs_id

        ordered = [by_obj[id(o)] for o in shape.outputs]
        out_ids = [final_id(o.obj, o.plan) for o in ordered]
        sibling_group: list[UUID] = []
        if shape.unpacked:
            sibling_group = list(dict.fromkeys(out_ids))
            for i, out in enumerate(ordered):
                obj = out.obj
                obj.output_index = i
                obj.derived_from_execution_id = call.execution_id
                obj.sibling_output_entities = [x for j, x in enumerate(out_ids) if j != i]
                _refresh_meta(out.plan, obj, out_ids[i])
        elif shape.inner:
            plan = ordered[0].plan
            sibling_group = [final_id(e, plan) for e in shape.inner]

        outputs_body = [
            output_record(
                ecs_id=out_ids[i],
                lineage_id=out.obj.lineage_id,
                semantic=out.semantic,
                output_index=i if shape.unpacked else None,
            )
            for i, out in enumerate(ordered)
        ]
        inputs_body = call.input_records()
        fe = FunctionExecution(
            lineage_id=call.execution_id,
            function_name=meta.name,
            execution_id=call.execution_id,
            input_entity_ids=list(input_ids),
            input_params=[i["param_name"] for i in inputs_body],
            input_addresses=[i["address"] for i in inputs_body],
            output_entity_ids=out_ids,
            output_semantics=[o.semantic for o in ordered],
            config_entity_ids=list(call.config_ids),
            sibling_group=sibling_group,
            return_pattern=shape.pattern,
            unpacked=shape.unpacked,
            duration_ms=duration_ms,
            isolation=meta.isolation,
        )
        # built just above; never diffed again: its record keeps only the JSON (decoded on demand)
        fe_plan = plan_tree(ledger.index, build_entity_tree(fe), fresh=True, keep_values=False)
        batch = Batch(ledger.index)
        for plan in plans.values():
            if plan:
                add_plan(batch, plan, "execution")
        add_plan(batch, fe_plan, "execution", live=False)  # ``fe`` is dropped on return
        batch.add(
            call.execution_id,
            EXECUTION_COMPLETED,
            execution_completed_body(
                execution_id=call.execution_id,
                function_name=meta.name,
                inputs=inputs_body,
                outputs=outputs_body,
                config_ids=call.config_ids,
                sibling_group=sibling_group,
                duration_ms=duration_ms,
                isolation=meta.isolation,
                execution_ecs_id=fe.ecs_id,
                return_pattern=shape.pattern,
                arguments=call.arguments,
                cache_key=call.cache_key,
                run=call.run_record(),
            ),
        )
        ledger.commit(batch)
    return ordered


def returned(shape: ReturnShape, ordered: list[Output]) -> Any:
    if shape.unpacked:
        return [o.obj for o in ordered]
    return ordered[0].obj


def _refresh_meta(plan: TreePlan | None, obj: Entity, ecs_id: UUID) -> None:
    """Sibling metadata is only known after planning: rewrite the planned record's meta."""
    if plan is None:
        return
    for rec in plan.records:
        if rec.ecs_id == ecs_id:
            rec.meta = meta_of(obj)
            return


def _graft(tree: EntityTree, old: Entity, new: Entity) -> None:
    """Put ``new`` where ``old`` sits in ``tree`` (a sub-entity rebuilt from another process)."""
    edge = tree.edges[old.ecs_id]
    parent = tree.nodes[edge.parent]
    if not edge.path:
        setattr(parent, edge.field, new)
        return
    container = getattr(parent, edge.field)
    setattr(parent, edge.field, replace_at(container, edge.path, new))

