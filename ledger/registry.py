"""``EntityRegistry``: the seed-style API over one ledger's tree commands and live reads.

Called on the class (``EntityRegistry.version_entity(x)``) the methods use the process's
default ledger; called on ``ledger.registry`` they use that ledger. The work itself is done
below: writes by ``ledger.write.commands`` (planning in ``ledger.write.planning``), reads by
``projections.live``.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar
from uuid import UUID

from ledger import _process
from ledger.model.entity import Entity
from ledger.model.tree import EntityTree
from ledger.write.commands import TreeCommands
from projections import live

if TYPE_CHECKING:
    from ledger.ledger import Ledger

__all__ = ["EntityRegistry"]

P = ParamSpec("P")
R = TypeVar("R")


class _default_or_bound(Generic[P, R]):
    """A method that, looked up on the class, binds to the default ledger's registry.

    Typed as a descriptor whose lookup gives the method without ``self``, on the class and on an
    instance alike, so ``EntityRegistry.register_entity(root)`` type-checks as users write it.
    """

    def __init__(self, fn: Callable[Concatenate[Any, P], R]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]  # typeshed wants a callable; the descriptor wraps one

    def __get__(self, obj: Any, cls: type | None = None) -> Callable[P, R]:
        if obj is None:
            obj = _process.default_ledger().registry
        return types.MethodType(self.fn, obj)


def ledger_method(fn: Callable[Concatenate[Any, P], R]) -> _default_or_bound[P, R]:
    return _default_or_bound(fn)


class EntityRegistry:
    """The entity-version side of one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._index = ledger.index
        self.commands = TreeCommands(ledger)

    # ================================================================ writes
    @ledger_method
    def register_entity(self, root: Entity) -> None:
        """Record ``root`` and everything below it as a new tree (a version if already stored)."""
        self.commands.register_entity(root)

    @ledger_method
    def version_entity(self, entity: Entity, force_versioning: bool = False) -> bool:
        """Record a new version of ``entity``'s tree if anything in it changed.

        Returns True when a new version was written. A never-registered entity is
        registered (and True returned).
        """
        return self.commands.version_entity(entity, force_versioning)

    @ledger_method
    def promote_to_root(self, entity: Entity) -> None:
        """Make ``entity`` a root: register it, or detach it if it is stored as a child."""
        self.commands.promote_to_root(entity)

    @ledger_method
    def detach(self, entity: Entity) -> None:
        """Make ``entity`` its own root; its old parent's tree gets a version without it."""
        self.commands.detach(entity)

    @ledger_method
    def attach(self, entity: Entity, new_parent: Entity) -> None:
        """Record that root ``entity``, already placed inside ``new_parent``'s tree, joined it."""
        self.commands.attach(entity, new_parent)

    # ================================================================ reads
    @ledger_method
    def get_stored_entity(self, root_ecs_id: UUID, ecs_id: UUID) -> Entity:
        """A fresh copy of version ``ecs_id`` (with its subtree) as it sits in tree ``root_ecs_id``."""
        return live.get_stored_entity(self._index, root_ecs_id, ecs_id)

    @ledger_method
    def get_stored_tree(self, root_ecs_id: UUID) -> EntityTree:
        """A fresh copy of a whole stored tree; editing it never changes stored state."""
        return live.get_stored_tree(self._index, root_ecs_id)

    @ledger_method
    def get_live_entity(self, live_id: UUID) -> Entity | None:
        """The live object with this live_id, if it is still alive in this process."""
        return live.get_live_entity(self._index, live_id)

    @ledger_method
    def ecs_id_to_root_id(self, ecs_id: UUID) -> UUID:
        """The root version of the latest stored tree that contains version ``ecs_id``."""
        return live.ecs_id_to_root_id(self._index, ecs_id)

    @ledger_method
    def history(self, lineage_id: UUID) -> list[Entity]:
        """Every stored version of a lineage, oldest first, as fresh copies."""
        return live.history(self._index, lineage_id)

    @ledger_method
    def get_latest(self, lineage_id: UUID) -> Entity:
        """A fresh copy of the newest version of a lineage."""
        return live.get_latest(self._index, lineage_id)

    @ledger_method
    def as_of(
        self, lineage_id: UUID, *, position: int | None = None, at: datetime | None = None
    ) -> Entity | None:
        """The version of a lineage current at a log position or a time (None before it existed)."""
        return live.as_of(self._index, lineage_id, position=position, at=at)

    @ledger_method
    def diff(self, ecs_id_a: UUID, ecs_id_b: UUID) -> dict[str, tuple[Any, Any]]:
        """Changed values between two stored versions, keyed by dotted path."""
        return live.diff(self._index, ecs_id_a, ecs_id_b)
