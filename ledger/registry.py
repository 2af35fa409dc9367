"""``EntityRegistry``: register, version, detach and attach entity trees; read
stored versions back as fresh copies.

Every write goes the same way: build the live tree, *plan* (find changed nodes
by comparing with stored versions, give new ecs_ids to them and their
ancestors), append the planned events as one batch, and only then update the
index and the caller's objects. Unchanged subtrees keep their ids and are
never re-serialized.

Called on the class (``EntityRegistry.version_entity(x)``) the methods use the
process's default ledger; called on ``ledger.registry`` they use that ledger.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID, uuid4

import orjson
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from ledger.write.batch import Batch
from ledger.model.entity import Entity, utc_now
from ledger.errors import (
    AttachError,
    DetachError,
    EntityNotFoundError,
    ErasedError,
    NotARootError,
    UnstorableValueError,
)
from ledger.events.seal import ENTITY_VERSION
from projections.inline import VersionRecord
from ledger.store.keys import key_check
from ledger.model.personal import ERASED, seal_fields
from ledger.model.schema import META_FIELDS, topics
from ledger.model.tree import IMMUTABLE_TYPES, EntityTree, Ref, build_entity_tree, copy_value, shape_to_json

if TYPE_CHECKING:
    from ledger.ledger import Ledger

__all__ = ["EntityRegistry", "TreePlan"]

F = TypeVar("F", bound=Callable[..., Any])


class _default_or_bound:
    """A method that, looked up on the class, binds to the default ledger's registry."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __get__(self, obj: Any, cls: type | None = None) -> Callable[..., Any]:
        if obj is None:
            from ledger.ledger import get_ledger

            obj = get_ledger().registry
        return types.MethodType(self.fn, obj)


def ledger_method(fn: F) -> F:
    return _default_or_bound(fn)  # type: ignore[return-value]


class _Meta(BaseModel):
    """Validates the derivation metadata of a stored version back into typed values."""

    model_config = ConfigDict(extra="ignore")
    attribute_source: dict[str, UUID | None | list[UUID | None] | dict[str, UUID | None]] = {}
    derived_from_function: str | None = None
    derived_from_execution_id: UUID | None = None
    function_input_entities: list[UUID] = []
    sibling_output_entities: list[UUID] = []
    output_index: int | None = None


_META_DEFAULTS: dict[str, Any] = _Meta().model_dump()

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


def _meta_of(node: Entity) -> dict[str, Any]:
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
    """``_meta_of`` for a version written outside any execution: no execution fields."""
    meta = _meta_of(node)
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
    t = type(shape)
    if t is Ref:
        new = new_ids.get(shape.ecs_id)
        return shape if new is None else Ref(new)
    if t is list:
        return [_remap(v, new_ids) for v in shape]
    if t is tuple:
        return tuple(_remap(v, new_ids) for v in shape)
    if t is dict:
        return {k: _remap(v, new_ids) for k, v in shape.items()}
    return shape


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


class EntityRegistry:
    """The entity-version side of one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._index = ledger.index

    # ================================================================ planning
    def _same_content(self, node: Entity, record: VersionRecord, shape: dict[str, Any]) -> bool:
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
        self,
        tree: EntityTree,
        *,
        force: frozenset[UUID] = frozenset(),
        written_by: tuple[UUID, str] | None = None,
    ) -> TreePlan:
        """Decide which nodes of ``tree`` need new versions and build their records.

        ``written_by`` is ``(execution_id, function_name)`` when an execution
        writes the plan: each new version names it. Without it the versions are
        written outside any execution and carry no execution metadata.
        """
        records = self._index.records
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
                or not self._same_content(node, rec, tree.shapes[ecs_id])
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
                new_ids[ecs_id] = uuid4()
        for ecs_id in reversed(tree.order):  # children before parents: replay marks trees in order
            if ecs_id not in changed:
                continue
            plan.changed.append(ecs_id)
            node = tree.nodes[ecs_id]
            if written_by is not None:
                _attribute(node, *written_by)
            schema = type(node).ledger_schema()
            d = node.__dict__
            values = {
                n: v if type(v) in IMMUTABLE_TYPES else copy_value(v)
                for n in schema.plain_fields
                for v in (d[n],)
            }
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
                key = self._key_for_writing(node.lineage_id, type(node).__name__)
                values_json = seal_fields(values_json, schema.personal_fields, key, node.lineage_id)
                if not any(r.personal for r in self._index.lineages.get(node.lineage_id, ())):
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
                    meta=_manual_meta(node) if written_by is None else _meta_of(node),
                    created_at=node.created_at,
                    forked_at=now if forked else node.forked_at,
                    recorded_at=now,
                    values=values,
                    values_json=_exact(values_json),
                    personal=schema.personal_fields,
                    index=self._index,
                    values_cls=type(node),
                )
            )
        plan.root_ecs_id = new_ids.get(root.ecs_id, root.ecs_id)
        return plan

    def _key_for_writing(self, lineage_id: UUID, type_name: str) -> bytes:
        """The lineage's data key, created (and stored) before the batch that needs it.

        An erased lineage gets no new versions: its key is gone, and a fresh key
        would quietly start a second, readable life for data that was erased.
        """
        index = self._index
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
        self, batch: Batch, plan: TreePlan, cause: str, link: tuple[UUID, str, UUID] | None = None
    ) -> None:
        """Queue a plan's events in ``batch`` and the live-object updates after commit.

        ``link`` is ``(lineage_id, field, ecs_id)``: the new version of that
        lineage records ``field`` (``detached_from`` / ``attached_to``) so the
        lineage graph can draw the edge from this one event, with no need to
        pair events of a batch.
        """
        tree_root = plan.root_ecs_id
        for rec in plan.records:
            body = {
                "ecs_id": rec.ecs_id,
                "lineage_id": rec.lineage_id,
                "previous_ecs_id": rec.previous_ecs_id,
                "entity_type": rec.topic,
                "schema_version": rec.schema_version,
                "is_root": rec.is_root,
                "tree_root": tree_root,
                "cause": cause,
                "values": orjson.Fragment(rec._values_json or b"{}"),
                "children": {k: shape_to_json(v) for k, v in rec.shape.items()},
                "meta": rec.meta,
                "created_at": rec.created_at,
                "forked_at": rec.forked_at,
            }
            if link is not None and link[0] == rec.lineage_id:
                body[link[1]] = link[2]
            if rec.personal:
                body["personal"] = list(rec.personal)
                check = plan.key_checks.get(rec.ecs_id)
                if check is not None:  # the lineage's first personal version commits to its key
                    body["key_check"] = check
            batch.add(rec.lineage_id, ENTITY_VERSION, body, rec)
        batch.after_commit(functools.partial(self._apply_plan, plan))

    def _apply_plan(self, plan: TreePlan) -> None:
        """After commit: give the caller's objects their new ids and root pointers."""
        tree = plan.tree
        root = tree.root
        new_ids = plan.new_ids
        live = self._index.live
        changed = set(plan.changed)
        root_ecs_id = plan.root_ecs_id
        root_live_id = root.live_id
        records = self._index.records
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

    def _commit(self, batch: Batch) -> None:
        self._ledger.commit(batch)

    # ================================================================ writes
    @ledger_method
    def register_entity(self, root: Entity) -> None:
        """Record ``root`` and everything below it as a new tree (a version if already stored)."""
        _check_entity(root, "root")
        with self._ledger.writing():
            rec = self._index.records.get(root.ecs_id)
            if rec is not None and rec.is_root:
                self._version(root, cause="version")
                return
            tree = build_entity_tree(root)
            plan = self.plan_tree(tree)
            batch = Batch(self._index)
            if plan:
                self.add_plan(batch, plan, "register")
                self._commit(batch)
            else:  # already stored exactly like this: only point the objects at the tree
                self._apply_plan(plan)

    @ledger_method
    def version_entity(self, entity: Entity, force_versioning: bool = False) -> bool:
        """Record a new version of ``entity``'s tree if anything in it changed.

        Returns True when a new version was written. A never-registered entity is
        registered (and True returned).
        """
        _check_entity(entity, "entity")
        with self._ledger.writing():
            root = self._live_root_for(entity, "entity")
            return self._version(root, cause="version", force_all=force_versioning)

    def _version(self, root: Entity, *, cause: str, force_all: bool = False) -> bool:
        tree = build_entity_tree(root)
        force = frozenset(tree.nodes) if force_all else frozenset()
        plan = self.plan_tree(tree, force=force)
        if not plan:
            self._apply_plan(plan)
            return False
        rec = self._index.records.get(root.ecs_id)
        batch = Batch(self._index)
        self.add_plan(batch, plan, cause if rec is not None else "register")
        self._commit(batch)
        return True

    def _live_root_for(self, entity: Entity, argument: str) -> Entity:
        """The live root object whose tree should be versioned for ``entity``."""
        rec = self._index.records.get(entity.ecs_id)
        if rec is None or rec.is_root:
            if rec is None and entity.root_live_id not in (None, entity.live_id):
                root = self._index.live.get(entity.root_live_id)  # type: ignore[arg-type]
                if root is not None:
                    return root
            return entity
        root = self._index.live.get(entity.root_live_id) if entity.root_live_id else None
        if root is None or root is entity:
            raise NotARootError(
                f"{argument}: {type(entity).__name__} {entity.ecs_id} is a child in stored tree "
                f"{self._index.root_of.get(entity.ecs_id)} and its live root is not available; "
                "version the root, or detach() the child first"
            )
        return root

    @ledger_method
    def promote_to_root(self, entity: Entity) -> None:
        """Make ``entity`` a root: register it, or detach it if it is stored as a child."""
        _check_entity(entity, "entity")
        rec = self._index.records.get(entity.ecs_id)
        if rec is not None and not rec.is_root:
            self.detach(entity)
        else:
            self.register_entity(entity)

    @ledger_method
    def detach(self, entity: Entity) -> None:
        """Make ``entity`` its own root; its old parent's tree gets a version without it."""
        _check_entity(entity, "entity")
        with self._ledger.writing():
            index = self._index
            rec = index.records.get(entity.ecs_id)
            parent_root: Entity | None = None
            from_copy = False
            if entity.root_live_id is not None and entity.root_live_id != entity.live_id:
                parent_root = index.live.get(entity.root_live_id)
            if parent_root is None and rec is not None and not rec.is_root:
                stored_root = index.root_of.get(entity.ecs_id)
                if stored_root is not None and stored_root != entity.ecs_id:
                    parent_root = self._materialize(stored_root, stored_root)
                    from_copy = True
            if parent_root is None or (rec is not None and rec.is_root):
                self._version(entity, cause="register")  # already a root (or never in a tree)
                return
            batch = Batch(index)
            parent_tree = build_entity_tree(parent_root)
            node = parent_tree.nodes.get(entity.ecs_id)
            if node is not None:
                if node is not entity and not from_copy:
                    raise DetachError(
                        f"entity: another object with ecs_id {entity.ecs_id} sits in its "
                        f"parent's tree at {parent_tree.path_of(entity.ecs_id)}"
                    )
                _remove_child(parent_tree, entity.ecs_id, batch)
                parent_tree = build_entity_tree(parent_root)
            parent_rec = index.records.get(parent_root.ecs_id)
            if parent_rec is not None and parent_rec.is_root:
                plan = self.plan_tree(parent_tree)
                if plan:
                    self.add_plan(batch, plan, "detach")
            child_plan = self.plan_tree(build_entity_tree(entity))
            if child_plan:
                if rec is not None:
                    old_root = parent_rec.ecs_id if parent_rec is not None else index.root_of.get(entity.ecs_id)
                    link = (entity.lineage_id, "detached_from", old_root) if old_root is not None else None
                    self.add_plan(batch, child_plan, "detach", link)
                else:
                    self.add_plan(batch, child_plan, "register")
            if len(batch):
                self._commit(batch)

    @ledger_method
    def attach(self, entity: Entity, new_parent: Entity) -> None:
        """Record that root ``entity``, already placed inside ``new_parent``'s tree, joined it."""
        _check_entity(entity, "entity")
        _check_entity(new_parent, "new_parent")
        with self._ledger.writing():
            index = self._index
            rec = index.records.get(entity.ecs_id)
            if rec is not None and not rec.is_root:
                raise AttachError(
                    f"entity: {type(entity).__name__} {entity.ecs_id} is stored as a child of "
                    f"tree {index.root_of.get(entity.ecs_id)}; detach() it before attaching"
                )
            root = new_parent
            if new_parent.root_live_id is not None and new_parent.root_live_id != new_parent.live_id:
                root = index.live.get(new_parent.root_live_id) or new_parent
            tree = build_entity_tree(root)
            if tree.nodes.get(entity.ecs_id) is not entity:
                raise AttachError(
                    f"entity: {type(entity).__name__} {entity.ecs_id} is not inside new_parent "
                    f"{type(new_parent).__name__} {new_parent.ecs_id}'s tree; place it in a field "
                    "of new_parent first, then call attach()"
                )
            plan = self.plan_tree(tree)
            if not plan:
                return
            batch = Batch(index)
            root_rec = index.records.get(root.ecs_id)
            if root_rec is not None:
                self.add_plan(batch, plan, "attach", (entity.lineage_id, "attached_to", plan.root_ecs_id))
            else:
                self.add_plan(batch, plan, "register")
            self._commit(batch)

    # ================================================================ reads
    def _materialize(
        self, ecs_id: UUID, root_ecs_id: UUID, root_live_id: UUID | None = None
    ) -> Entity:
        """A fresh live copy of a stored version and its subtree."""
        index = self._index
        records = index.records
        if root_live_id is None:
            root_live_id = uuid4() if ecs_id == root_ecs_id else None
        made: list[Entity] = []

        def build(rec: VersionRecord) -> Entity:
            cls = topics.resolve(rec.topic)
            data: dict[str, Any] = {n: copy_value(v) for n, v in rec.values(cls).items()}
            for name, shape in rec.shape.items():
                data[name] = fill(shape)
            is_root = rec.ecs_id == root_ecs_id
            data.update(
                ecs_id=rec.ecs_id,
                live_id=root_live_id if is_root else uuid4(),
                lineage_id=rec.lineage_id,
                previous_ecs_id=rec.previous_ecs_id,
                old_ids=index.old_ids(rec),
                created_at=rec.created_at,
                forked_at=rec.forked_at,
                root_ecs_id=root_ecs_id,
                root_live_id=root_live_id,
                from_storage=True,
                # given explicitly: model_construct would otherwise inspect each default
                # factory's signature on every call (most of the cost of a copy)
                attribute_source={},
                function_input_entities=[],
                sibling_output_entities=[],
            )
            if rec.meta:
                meta = _Meta.model_validate(rec.meta)
                for name in rec.meta:
                    data[name] = getattr(meta, name)
            obj = cls.model_construct(**data)
            made.append(obj)
            return obj

        def fill(shape: Any) -> Any:
            t = type(shape)
            if t is Ref:
                child = records.get(shape.ecs_id)
                if child is None:  # pragma: no cover - the log guarantees children exist
                    raise EntityNotFoundError(f"stored child version {shape.ecs_id} is missing")
                return build(child)
            if t is list:
                return [fill(v) for v in shape]
            if t is tuple:
                return tuple(fill(v) for v in shape)
            if t is dict:
                return {k: fill(v) for k, v in shape.items()}
            return copy_value(shape)

        obj = build(index.get(ecs_id))
        live = index.live
        for made_obj in made:
            live[made_obj.live_id] = made_obj
        return obj

    @ledger_method
    def get_stored_entity(self, root_ecs_id: UUID, ecs_id: UUID) -> Entity:
        """A fresh copy of version ``ecs_id`` (with its subtree) as it sits in tree ``root_ecs_id``."""
        root_ecs_id = as_uuid(root_ecs_id, "root_ecs_id")
        ecs_id = as_uuid(ecs_id, "ecs_id")
        self._index.get(root_ecs_id, "root_ecs_id")
        self._index.get(ecs_id, "ecs_id")
        if ecs_id != root_ecs_id and ecs_id not in self._index.subtree_ids(root_ecs_id):
            raise EntityNotFoundError(
                f"ecs_id: version {ecs_id} is not part of the tree rooted at {root_ecs_id}"
            )
        return self._materialize(ecs_id, root_ecs_id)

    @ledger_method
    def get_stored_tree(self, root_ecs_id: UUID) -> EntityTree:
        """A fresh copy of a whole stored tree; editing it never changes stored state."""
        root_ecs_id = as_uuid(root_ecs_id, "root_ecs_id")
        rec = self._index.get(root_ecs_id, "root_ecs_id")
        if not rec.is_root:
            raise NotARootError(
                f"root_ecs_id: {root_ecs_id} is a child version; its latest tree is "
                f"{self._index.root_of.get(root_ecs_id)}"
            )
        return build_entity_tree(self._materialize(root_ecs_id, root_ecs_id))

    @ledger_method
    def get_live_entity(self, live_id: UUID) -> Entity | None:
        """The live object with this live_id, if it is still alive in this process."""
        return self._index.live.get(as_uuid(live_id, "live_id"))

    @ledger_method
    def ecs_id_to_root_id(self, ecs_id: UUID) -> UUID:
        """The root version of the latest stored tree that contains version ``ecs_id``."""
        ecs_id = as_uuid(ecs_id, "ecs_id")
        root = self._index.root_of.get(ecs_id)
        if root is None:
            raise EntityNotFoundError(f"ecs_id: no stored entity version {ecs_id}")
        return root

    @ledger_method
    def history(self, lineage_id: UUID) -> list[Entity]:
        """Every stored version of a lineage, oldest first, as fresh copies."""
        lineage_id = as_uuid(lineage_id, "lineage_id")
        versions = self._index.lineages.get(lineage_id)
        if versions is None:
            raise EntityNotFoundError(f"lineage_id: no entity lineage {lineage_id}")
        return [self._materialize_in_context(rec) for rec in versions]

    def _materialize_in_context(self, rec: VersionRecord) -> Entity:
        root = rec.ecs_id if rec.is_root else self._index.root_of.get(rec.ecs_id, rec.ecs_id)
        return self._materialize(rec.ecs_id, root)

    @ledger_method
    def get_latest(self, lineage_id: UUID) -> Entity:
        """A fresh copy of the newest version of a lineage."""
        lineage_id = as_uuid(lineage_id, "lineage_id")
        versions = self._index.lineages.get(lineage_id)
        if not versions:
            raise EntityNotFoundError(f"lineage_id: no entity lineage {lineage_id}")
        return self._materialize_in_context(versions[-1])

    @ledger_method
    def as_of(
        self, lineage_id: UUID, *, position: int | None = None, at: datetime | None = None
    ) -> Entity | None:
        """The version of a lineage current at a log position or a time (None before it existed)."""
        lineage_id = as_uuid(lineage_id, "lineage_id")
        if (position is None) == (at is None):
            raise ValueError("as_of: give exactly one of position= or at=")
        index = self._index
        if lineage_id not in index.lineages:
            raise EntityNotFoundError(f"lineage_id: no entity lineage {lineage_id}")
        if at is not None:
            if at.tzinfo is None:
                raise ValueError("at: must be timezone-aware (UTC)")
            rec = index.version_at_time(lineage_id, at)
        else:
            if not isinstance(position, int) or position < 0:
                raise ValueError(f"position: must be a non-negative int, got {position!r}")
            rec = index.version_at(lineage_id, position)
        return None if rec is None else self._materialize_in_context(rec)

    @ledger_method
    def diff(self, ecs_id_a: UUID, ecs_id_b: UUID) -> dict[str, tuple[Any, Any]]:
        """Changed values between two stored versions, keyed by dotted path."""
        from projections.diffing import diff_versions

        a = self._index.get(as_uuid(ecs_id_a, "ecs_id_a"), "ecs_id_a")
        b = self._index.get(as_uuid(ecs_id_b, "ecs_id_b"), "ecs_id_b")
        return diff_versions(self._index, a, b)


_MISSING = object()


def as_uuid(value: Any, argument: str, kind: str = "an entity id") -> UUID:
    """``value`` as a UUID (a leading ``@`` allowed), or an error naming ``argument``."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value.lstrip("@"))
        except ValueError:
            pass
    raise EntityNotFoundError(f"{argument}: {value!r:.80} is not {kind} (a UUID)")


def _check_entity(value: Any, argument: str) -> None:
    if not isinstance(value, Entity):
        raise TypeError(f"{argument}: expected an Entity, got {type(value).__name__}")


def _remove_child(tree: EntityTree, child_id: UUID, batch: Batch) -> None:
    """Take a child out of its parent's container (live), with an undo for failure."""
    edge = tree.edges[child_id]
    parent = tree.nodes[edge.parent]
    field = edge.field
    if not edge.path:
        annotation = type(parent).model_fields[field].annotation
        try:
            TypeAdapter(annotation).validate_python(None)
        except ValidationError:
            raise DetachError(
                f"entity: it is {type(parent).__name__}.{field}, a required field; replace it "
                "in the parent before detach()"
            ) from None
        old = getattr(parent, field)
        setattr(parent, field, None)
        batch.on_failure(lambda: setattr(parent, field, old))
        return
    original = getattr(parent, field)
    setattr(parent, field, _without(original, edge.path, field, parent))
    batch.on_failure(lambda: setattr(parent, field, original))


def _without(container: Any, path: tuple[int | str, ...], field: str, parent: Entity) -> Any:
    """A copy of ``container`` with the element at ``path`` removed."""
    key, rest = path[0], path[1:]
    if isinstance(container, list):
        items = list(container)
        if rest:
            items[key] = _without(items[key], rest, field, parent)  # type: ignore[index]
        else:
            del items[key]  # type: ignore[arg-type]
        return items
    if isinstance(container, tuple):
        items = list(container)
        if rest:
            items[key] = _without(items[key], rest, field, parent)  # type: ignore[index]
        else:
            del items[key]  # type: ignore[arg-type]
        return tuple(items)
    if isinstance(container, dict):
        out = dict(container)
        if rest:
            out[key] = _without(out[key], rest, field, parent)
        else:
            del out[key]
        return out
    raise DetachError(  # pragma: no cover - the tree builder only records these containers
        f"entity: cannot remove it from {type(parent).__name__}.{field}"
    )
