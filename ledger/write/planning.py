"""Planning a tree write: which nodes of a live tree get new versions, and their records.

Every entity write goes the same way: build the live tree, *plan* (compare each node with
its stored version, give new ecs_ids to changed nodes and their ancestors), queue the
planned events in one batch, and only after the commit point the caller's objects at their
new ids (:func:`apply_plan`). Unchanged subtrees keep their ids and are never re-serialized.
The tree commands (``commands.py``) and the execution pipeline (``execution.py``) both
plan through here; state is read only from the inline projection.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from ledger import _process
from ledger.errors import ErasedError, UnstorableValueError
from ledger.events.bodies import ENTITY_VERSION, entity_version_body
from ledger.model.entity import Entity, utc_now
from ledger.model.personal import ERASED, seal_fields
from ledger.model.schema import META_FIELDS
from ledger.model.tree import IMMUTABLE_TYPES, EntityTree, Ref, copy_value
from ledger.model.walk import map_leaves
from ledger.store.keys import key_check
from ledger.write.batch import Batch
from projections.inline import InlineIndex, VersionRecord
from projections.live import MetaFields

__all__ = ["EXECUTION_META", "TreePlan", "add_plan", "apply_plan", "brand_new", "meta_of", "plan_tree"]

_META_DEFAULTS: dict[str, Any] = MetaFields().model_dump()

#: The derivation fields that say which execution wrote a version. A version written
#: outside any execution (``version_entity`` after an edit, ``put``, ``detach``, …)
#: has none of them: carried over from the execution that wrote the previous version,
#: they would attribute a manual edit to that function.
EXECUTION_META: tuple[str, ...] = (
    "derived_from_function",
    "derived_from_execution_id",
    "function_input_entities",
    "sibling_output_entities",
    "output_index",
)


def meta_of(node: Entity) -> dict[str, Any]:
    """Non-default derivation metadata, in JSON form (as it will read back)."""
    d = node.__dict__
    if not (
        d["attribute_source"]
        or d["function_input_entities"]
        or d["sibling_output_entities"]
        or d["derived_from_function"] is not None
        or d["derived_from_execution_id"] is not None
        or d["output_index"] is not None
    ):
        return {}
    meta = {}
    for name in META_FIELDS:
        value = getattr(node, name)
        if value != _META_DEFAULTS[name]:
            meta[name] = value
    return orjson.loads(orjson.dumps(meta)) if meta else meta


def _manual_meta(node: Entity) -> dict[str, Any]:
    """``meta_of`` for a version written outside any execution: no execution fields."""
    meta = meta_of(node)
    if meta:
        for name in EXECUTION_META:
            meta.pop(name, None)
    return meta


def _attribute(node: Entity, execution_id: UUID, function_name: str) -> None:
    """Name the execution writing ``node``'s new version (a copy the function ran on).

    Metadata left from the execution that wrote the version the copy was made
    from (its sibling ids and output index included) belongs to that one.
    """
    d = node.__dict__
    if d["derived_from_execution_id"] != execution_id:
        d["derived_from_function"] = function_name
        d["derived_from_execution_id"] = execution_id
        d["function_input_entities"] = []
        d["sibling_output_entities"] = []
        d["output_index"] = None


def _clear_execution_meta(node: Entity) -> None:
    d = node.__dict__
    d["derived_from_function"] = None
    d["derived_from_execution_id"] = None
    d["function_input_entities"] = []
    d["sibling_output_entities"] = []
    d["output_index"] = None


def _exact(data: bytes) -> bytes:
    """An exact-size copy: orjson's output keeps a ~4 KiB allocation, and records live long."""
    return bytes(bytearray(data)) if len(data) < 2048 else data


def _remap(shape: Any, new_ids: dict[UUID, UUID]) -> Any:
    def leaf(v: Any) -> Any:
        if type(v) is Ref:
            new = new_ids.get(v.ecs_id)
            return v if new is None else Ref(new)
        return v

    return map_leaves(shape, leaf)


class TreePlan:
    """What recording one live tree will change, computed before anything is written."""

    __slots__ = ("tree", "changed", "new_ids", "records", "root_ecs_id", "forked_at", "key_checks", "written_by")

    def __init__(self, tree: EntityTree, written_by: tuple[UUID, str] | None = None) -> None:
        self.tree = tree
        #: (execution_id, function name) when an execution writes the plan; None outside one.
        self.written_by = written_by
        self.changed: list[UUID] = []  # old ecs_ids of nodes getting a new version, children first
        self.new_ids: dict[UUID, UUID] = {}  # old -> new for forked nodes
        self.records: list[VersionRecord] = []
        self.root_ecs_id = tree.root.ecs_id
        self.forked_at: datetime | None = None
        #: ecs_id -> commitment to its lineage's key, for a lineage's first personal version.
        self.key_checks: dict[UUID, str] = {}

    def __bool__(self) -> bool:
        return bool(self.changed)


_MISSING = object()


def _same_content(node: Entity, record: VersionRecord, shape: dict[str, Any]) -> bool:
    schema = type(node).ledger_schema()
    if record.topic != schema.topic or record.shape != shape:
        return False
    stored = record.values(type(node))
    for name in schema.plain_fields:
        value = getattr(node, name)
        old = stored.get(name, _MISSING)
        if value is not old and value != old:
            return False
    return True


def plan_tree(
    index: InlineIndex,
    tree: EntityTree,
    *,
    force: frozenset[UUID] = frozenset(),
    written_by: tuple[UUID, str] | None = None,
    fresh: bool = False,
    keep_values: bool = True,
) -> TreePlan:
    """Decide which nodes of ``tree`` need new versions and build their records.

    ``written_by`` is ``(execution_id, function_name)`` when an execution
    writes the plan: each new version names it. Without it the versions are
    written outside any execution and carry no execution metadata. ``fresh``
    says the caller built every entity of the tree just now (the ledger's own
    ``FunctionExecution``, or an output every node of which the call minted:
    ``brand_new``): none can be stored, so nothing is looked up or compared.
    ``keep_values=False``: the records keep only their JSON (decoded on demand), so
    the live values are not copied for them (the ledger's own records, never diffed).
    """
    records: Any
    if fresh:
        records = {}
    else:
        index.prefetch(tree.order)
        records = index.records
    plan = TreePlan(tree, written_by)
    root = tree.root
    changed: set[UUID] = set()
    for ecs_id in tree.order:
        node = tree.nodes[ecs_id]
        rec = records.get(ecs_id)
        if (
            rec is None
            or ecs_id in force
            or rec.is_root != (node is root)
            or not _same_content(node, rec, tree.shapes[ecs_id])
        ):
            changed.add(ecs_id)
    for ecs_id in list(changed):
        for ancestor in tree.ancestors(ecs_id):
            if ancestor in changed:
                break
            changed.add(ancestor)
    if not changed:
        return plan
    now = utc_now()
    plan.forked_at = now
    new_ids = plan.new_ids
    for ecs_id in changed:
        if ecs_id in records:
            new_ids[ecs_id] = _process.mint()
    for ecs_id in reversed(tree.order):  # children before parents: replay marks trees in order
        if ecs_id not in changed:
            continue
        plan.changed.append(ecs_id)
        node = tree.nodes[ecs_id]
        if written_by is not None:
            _attribute(node, *written_by)
        schema = type(node).ledger_schema()
        d = node.__dict__
        if keep_values:
            values = {
                n: v if type(v) in IMMUTABLE_TYPES else copy_value(v)
                for n in schema.plain_fields
                for v in (d[n],)
            }
        else:  # only serialized below, never kept: no copy to isolate
            values = {n: d[n] for n in schema.plain_fields}
        forked = ecs_id in new_ids
        previous = ecs_id if forked else node.previous_ecs_id
        if previous is not None and previous not in records:
            previous = None
        shape = tree.shapes[ecs_id]
        if new_ids and shape:
            shape = {k: _remap(v, new_ids) for k, v in shape.items()}
        for n, v in values.items():
            if v is ERASED:
                raise ErasedError(
                    f"{type(node).__name__}.{n} of lineage {node.lineage_id} holds ERASED: "
                    "erased personal data cannot be written again"
                )
        try:
            values_json = schema.dump_plain(node, values)
        except (TypeError, ValueError) as exc:  # PydanticSerializationError is a ValueError
            raise UnstorableValueError(
                f"{type(node).__name__} {node.ecs_id}: a field value cannot be stored as JSON: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        if schema.personal_fields:
            key = _key_for_writing(index, node.lineage_id, type(node).__name__)
            values_json = seal_fields(values_json, schema.personal_fields, key, node.lineage_id)
            if not any(r.personal for r in index.lineages.get(node.lineage_id, ())):
                plan.key_checks[new_ids.get(ecs_id, ecs_id)] = key_check(key, node.lineage_id)
        plan.records.append(
            VersionRecord(
                ecs_id=new_ids.get(ecs_id, ecs_id),
                lineage_id=node.lineage_id,
                previous_ecs_id=previous,
                topic=schema.topic,
                schema_version=schema.version,
                is_root=node is root,
                shape=shape,
                meta=_manual_meta(node) if written_by is None else meta_of(node),
                created_at=node.created_at,
                forked_at=now if forked else node.forked_at,
                recorded_at=now,
                values=values if keep_values else None,
                values_json=_exact(values_json),
                personal=schema.personal_fields,
                index=index,
                values_cls=type(node),
            )
        )
    plan.root_ecs_id = new_ids.get(root.ecs_id, root.ecs_id)
    return plan


def brand_new(tree: EntityTree, since: int) -> bool:
    """Is every node of ``tree`` an entity minted at or after mint sequence ``since`` and
    still unwritten, with no previous version?

    Why: such a tree has nothing stored to compare with, so ``plan_tree(fresh=True)`` gives
    exactly the plan the full diff would (every node new, no previous-version link to keep)
    without a lookup per node. ``_process.minted`` forgets an id once any batch of this
    process stores it, so an entity the function itself stored during the call, or a copy
    of a stored one (same ecs_id, never minted here), takes the full path.
    """
    minted = _process.minted
    for node in tree.nodes.values():
        d = node.__dict__
        seq = minted.get(d["ecs_id"].int)
        if seq is None or seq < since or d["previous_ecs_id"] is not None:
            return False
    return True


def _key_for_writing(index: InlineIndex, lineage_id: UUID, type_name: str) -> bytes:
    """The lineage's data key, created (and stored) before the batch that needs it.

    An erased lineage gets no new versions: its key is gone, and a fresh key
    would quietly start a second, readable life for data that was erased.
    """
    if lineage_id in index.erased:
        raise ErasedError(
            f"{type_name} lineage {lineage_id} was erased; it cannot get new versions"
        )
    assert index.keys is not None
    key = index.keys.get(lineage_id)
    if key is None:
        if any(r.personal for r in index.lineages.get(lineage_id, ())):
            raise ErasedError(
                f"{type_name} lineage {lineage_id}: its data key was destroyed (erased by "
                "another writer); refresh() to see the erasure"
            )
        key = index.keys.create(lineage_id)
    return key


def add_plan(
    batch: Batch,
    plan: TreePlan,
    cause: str,
    link: tuple[UUID, str, UUID] | None = None,
    *,
    live: bool = True,
) -> None:
    """Queue a plan's events in ``batch`` and the live-object updates after commit.

    ``link`` is ``(lineage_id, field, ecs_id)``: the new version of that
    lineage records ``field`` (``detached_from`` / ``attached_to``) so the
    lineage graph can draw the edge from this one event, with no need to
    pair events of a batch. ``live=False``: the plan's objects are the ledger's own and
    dropped once the batch is queued (the ``FunctionExecution`` of a call): nothing holds
    them to point at the new version, so ``apply_plan`` is not queued (it would register
    them as live only until the batch is collected).
    """
    tree_root = plan.root_ecs_id
    for rec in plan.records:
        body = entity_version_body(
            ecs_id=rec.ecs_id,
            lineage_id=rec.lineage_id,
            previous_ecs_id=rec.previous_ecs_id,
            entity_type=rec.topic,
            schema_version=rec.schema_version,
            is_root=rec.is_root,
            tree_root=tree_root,
            cause=cause,
            values_json=rec._values_json or b"{}",
            children=rec.shape,
            meta=rec.meta,
            created_at=rec.created_at,
            forked_at=rec.forked_at,
            personal=rec.personal,
            key_check=plan.key_checks.get(rec.ecs_id),
            link=(link[1], link[2]) if link is not None and link[0] == rec.lineage_id else None,
        )
        batch.add(rec.lineage_id, ENTITY_VERSION, body, rec)
    if live:
        batch.after_commit(functools.partial(apply_plan, batch.index, plan))


def apply_plan(index: InlineIndex, plan: TreePlan) -> None:
    """After commit: give the caller's objects their new ids and root pointers."""
    tree = plan.tree
    root = tree.root
    new_ids = plan.new_ids
    live = index.live
    changed = set(plan.changed)
    root_ecs_id = plan.root_ecs_id
    root_live_id = root.live_id
    records = index.records
    manual = plan.written_by is None
    for ecs_id, node in tree.nodes.items():
        # Identity fields are plain attributes: write them directly (no validation,
        # no assignment hooks), as model_construct does.
        d = node.__dict__
        if ecs_id in changed:
            if manual:
                _clear_execution_meta(node)  # the object now is the version just written
            new = new_ids.get(ecs_id)
            if new is not None:
                d["previous_ecs_id"] = ecs_id
                d["old_ids"].append(ecs_id)
                d["ecs_id"] = new
                d["forked_at"] = plan.forked_at
            elif d["previous_ecs_id"] is not None and d["previous_ecs_id"] not in records:
                d["previous_ecs_id"] = None
        d["root_ecs_id"] = root_ecs_id
        d["root_live_id"] = root_live_id
        live[d["live_id"]] = node

