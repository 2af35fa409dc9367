"""The tree commands: register, version, promote, detach and attach live entity trees.

Each command plans its trees (``planning.py``), queues every event in one batch and commits
it through the host (the ``Ledger``), so a refused batch leaves nothing behind and a failed
detach restores the live parent. State is read from the inline projection only.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import TypeAdapter, ValidationError

from ledger.errors import AttachError, DetachError, NotARootError
from ledger.model.entity import Entity
from ledger.model.tree import EntityTree, build_entity_tree
from ledger.model.walk import REMOVE, replace_at
from ledger.write.batch import Batch
from ledger.write.host import WriteHost
from ledger.write.planning import add_plan, apply_plan, plan_tree
from projections.inline import InlineIndex
from projections.live import materialize

__all__ = ["TreeCommands", "check_entity", "live_root_for"]


class TreeCommands:
    """The entity-tree writes of one ledger."""

    def __init__(self, host: WriteHost) -> None:
        self._host = host
        self._index = host.index

    def register_entity(self, root: Entity) -> None:
        """Record ``root`` and everything below it as a new tree (a version if already stored)."""
        check_entity(root, "root")
        with self._host.writing():
            rec = self._index.records.get(root.ecs_id)
            if rec is not None and rec.is_root:
                self.version(root, cause="version")
                return
            tree = build_entity_tree(root)
            plan = plan_tree(self._index, tree)
            batch = Batch(self._index)
            if plan:
                add_plan(batch, plan, "register")
                self._host.commit(batch)
            else:  # already stored exactly like this: only point the objects at the tree
                apply_plan(self._index, plan)

    def version_entity(self, entity: Entity, force_versioning: bool = False) -> bool:
        """Record a new version of ``entity``'s tree if anything in it changed.

        Returns True when a new version was written. A never-registered entity is
        registered (and True returned).
        """
        check_entity(entity, "entity")
        with self._host.writing():
            root = self.live_root_for(entity, "entity")
            return self.version(root, cause="version", force_all=force_versioning)

    def version(self, root: Entity, *, cause: str, force_all: bool = False) -> bool:
        tree = build_entity_tree(root)
        force = frozenset(tree.nodes) if force_all else frozenset()
        plan = plan_tree(self._index, tree, force=force)
        if not plan:
            apply_plan(self._index, plan)
            return False
        rec = self._index.records.get(root.ecs_id)
        batch = Batch(self._index)
        add_plan(batch, plan, cause if rec is not None else "register")
        self._host.commit(batch)
        return True

    def live_root_for(self, entity: Entity, argument: str) -> Entity:
        return live_root_for(self._index, entity, argument)

    def promote_to_root(self, entity: Entity) -> None:
        """Make ``entity`` a root: register it, or detach it if it is stored as a child."""
        check_entity(entity, "entity")
        rec = self._index.records.get(entity.ecs_id)
        if rec is not None and not rec.is_root:
            self.detach(entity)
        else:
            self.register_entity(entity)

    def detach(self, entity: Entity) -> None:
        """Make ``entity`` its own root; its old parent's tree gets a version without it."""
        check_entity(entity, "entity")
        with self._host.writing():
            index = self._index
            rec = index.records.get(entity.ecs_id)
            parent_root: Entity | None = None
            from_copy = False
            if entity.root_live_id is not None and entity.root_live_id != entity.live_id:
                parent_root = index.live.get(entity.root_live_id)
            if parent_root is None and rec is not None and not rec.is_root:
                stored_root = index.root_of.get(entity.ecs_id)
                if stored_root is not None and stored_root != entity.ecs_id:
                    parent_root = materialize(self._index, stored_root, stored_root)
                    from_copy = True
            if parent_root is None or (rec is not None and rec.is_root):
                self.version(entity, cause="register")  # already a root (or never in a tree)
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
                plan = plan_tree(self._index, parent_tree)
                if plan:
                    add_plan(batch, plan, "detach")
            child_plan = plan_tree(self._index, build_entity_tree(entity))
            if child_plan:
                if rec is not None:
                    old_root = parent_rec.ecs_id if parent_rec is not None else index.root_of.get(entity.ecs_id)
                    link = (entity.lineage_id, "detached_from", old_root) if old_root is not None else None
                    add_plan(batch, child_plan, "detach", link)
                else:
                    add_plan(batch, child_plan, "register")
            if len(batch):
                self._host.commit(batch)

    def attach(self, entity: Entity, new_parent: Entity) -> None:
        """Record that root ``entity``, already placed inside ``new_parent``'s tree, joined it."""
        check_entity(entity, "entity")
        check_entity(new_parent, "new_parent")
        with self._host.writing():
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
            plan = plan_tree(self._index, tree)
            if not plan:
                return
            batch = Batch(index)
            root_rec = index.records.get(root.ecs_id)
            if root_rec is not None:
                add_plan(batch, plan, "attach", (entity.lineage_id, "attached_to", plan.root_ecs_id))
            else:
                add_plan(batch, plan, "register")
            self._host.commit(batch)


def live_root_for(index: InlineIndex, entity: Entity, argument: str) -> Entity:
    """The live root object whose tree should be versioned for ``entity``."""
    rec = index.records.get(entity.ecs_id)
    if rec is None or rec.is_root:
        if rec is None and entity.root_live_id not in (None, entity.live_id):
            root = index.live.get(entity.root_live_id)
            if root is not None:
                return root
        return entity
    root = index.live.get(entity.root_live_id) if entity.root_live_id else None
    if root is None or root is entity:
        raise NotARootError(
            f"{argument}: {type(entity).__name__} {entity.ecs_id} is a child in stored tree "
            f"{index.root_of.get(entity.ecs_id)} and its live root is not available; "
            "version the root, or detach() the child first"
        )
    return root


def check_entity(value: Any, argument: str) -> None:
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
            TypeAdapter(Any if annotation is None else annotation).validate_python(None)
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
    setattr(parent, field, replace_at(original, edge.path, REMOVE))
    batch.on_failure(lambda: setattr(parent, field, original))

