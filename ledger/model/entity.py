"""The ``Entity`` base class: a Pydantic model that carries its own version identity.

An entity object in user code is a *live* object; what the ledger stores are
immutable *versions* of it (one ``ecs_id`` each) that share a ``lineage_id``.
The tree-level operations (``promote_to_root``, ``detach``, ``attach``) are
recorded by the process's default ledger (see ``ledger.connect``); use
``Ledger.registry`` directly to work with several ledgers at once.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any, ClassVar
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    field_serializer,
)

from ledger import _process
from ledger.errors import InputValidationError
from ledger.model.address import parse_address
from ledger.model.personal import ERASED
from ledger.model.schema import (
    IDENTITY_FIELDS,
    EntitySchema,
    build_schema,
    topic_of,
    topics,
)

__all__ = ["ConfigEntity", "Entity", "utc_now"]


def utc_now() -> datetime:
    """Timezone-aware UTC with microseconds: the only clock the ledger uses."""
    return datetime.now(timezone.utc)


class Entity(BaseModel):
    """Base class of every versioned model.

    Subclass it like any Pydantic model. Fields may hold other entities directly
    or inside lists, tuples and dict values nested to any depth; those entities
    are the children of this one in its tree.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, validate_default=False)

    #: Bump when the class's fields change and register upcasters for old versions.
    __ledger_version__: ClassVar[int] = 1

    ecs_id: UUID = Field(default_factory=_process.mint)
    live_id: UUID = Field(default_factory=_process.random_id)
    lineage_id: UUID = Field(default_factory=_process.mint)
    previous_ecs_id: UUID | None = None
    old_ids: list[UUID] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utc_now)
    forked_at: datetime | None = None
    root_ecs_id: UUID | None = None
    root_live_id: UUID | None = None
    attribute_source: dict[str, UUID | None | list[UUID | None] | dict[str, UUID | None]] = Field(
        default_factory=dict
    )
    from_storage: bool = False
    derived_from_function: str | None = None
    derived_from_execution_id: UUID | None = None
    function_input_entities: list[UUID] = Field(default_factory=list)
    sibling_output_entities: list[UUID] = Field(default_factory=list)
    output_index: int | None = None

    @field_serializer("old_ids", mode="wrap")
    def _dump_old_ids(self, value: list[UUID], handler: SerializerFunctionWrapHandler) -> Any:
        """Dump a stored copy's ``old_ids`` (computed when first read) with every id."""
        return handler(value if type(value) is list else list(value))

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        topics.add(topic_of(cls), cls)

    @classmethod
    def ledger_schema(cls) -> EntitySchema:
        """The per-class field split, built on first use (after forward refs resolve)."""
        schema = cls.__dict__.get("__ledger_schema__")
        if schema is None:
            schema = build_schema(cls, Entity)
            type.__setattr__(cls, "__ledger_schema__", schema)
        return schema

    def __repr_args__(self) -> Any:
        """Show the version id and the domain fields; identity noise stays out of reprs."""
        yield "ecs_id", self.ecs_id
        for name in type(self).model_fields:
            if name not in IDENTITY_FIELDS:
                yield name, getattr(self, name, None)

    # ------------------------------------------------------------------ identity
    def is_root_entity(self) -> bool:
        return self.root_ecs_id is not None and self.root_ecs_id == self.ecs_id

    def is_erased(self) -> bool:
        """True when this copy's personal fields read as ``ERASED`` (its lineage was erased)."""
        d = self.__dict__
        return any(d.get(n) is ERASED for n in type(self).ledger_schema().personal_fields)

    def update_ecs_ids(self) -> None:
        """Give this live object a fresh version id, keeping its lineage.

        Only changes the object; the ledger records versions through
        ``EntityRegistry.version_entity``.
        """
        old = self.ecs_id
        was_root = self.is_root_entity()
        self.ecs_id = _process.mint()
        self.previous_ecs_id = old
        self.old_ids.append(old)
        self.forked_at = utc_now()
        if was_root:
            self.root_ecs_id = self.ecs_id

    # ------------------------------------------------------------ tree operations
    def promote_to_root(self) -> None:
        """Make this entity the root of its own stored tree (registering it)."""
        _process.default_ledger().registry.promote_to_root(self)

    def detach(self) -> None:
        """Take this entity out of its parent's tree and make it a root of its own.

        The old parent's tree gets a new version without it; both changes are
        one atomic batch.
        """
        _process.default_ledger().registry.detach(self)

    def attach(self, new_parent: Entity) -> None:
        """Record that this root, already placed inside ``new_parent``'s tree, joined it."""
        _process.default_ledger().registry.attach(self, new_parent)

    # -------------------------------------------------------------- provenance
    def borrow_attribute_from(self, source: Entity, source_field: str, target_field: str) -> None:
        """Copy ``source.source_field`` into ``self.target_field`` and record where it came from."""
        if source_field not in type(source).model_fields:
            raise InputValidationError(
                f"source_field {source_field!r}: {type(source).__name__} has no such field"
            )
        self._set_borrowed(target_field, getattr(source, source_field), source.ecs_id)

    def borrow_from_address(self, address: str, target_field: str) -> None:
        """Copy the value at ``@<uuid>.path`` into ``self.target_field``, with provenance."""
        ledger = _process.default_ledger()
        parsed = parse_address(address, argument="address")
        resolved = ledger.resolve(parsed, argument="address")
        self._set_borrowed(target_field, resolved.value, resolved.source_ecs_id)

    def _set_borrowed(self, target_field: str, value: Any, source_ecs_id: UUID | None) -> None:
        field = type(self).model_fields.get(target_field)
        if field is None or target_field in IDENTITY_FIELDS:
            raise InputValidationError(
                f"target_field {target_field!r}: {type(self).__name__} has no such field"
            )
        try:
            value = TypeAdapter(Any if field.annotation is None else field.annotation).validate_python(copy.deepcopy(value))
        except ValidationError as exc:
            raise InputValidationError(
                f"target_field {target_field!r}: borrowed value {value!r} does not fit "
                f"{type(self).__name__}.{target_field}: {exc.errors()[0]['msg']}"
            ) from None
        setattr(self, target_field, value)
        self.attribute_source[target_field] = source_ecs_id


class _OldIdsAttribute:
    """``entity.old_ids`` always reads as a plain ``list``.

    A copy read from storage holds a list filled from the index on first read
    (``projections.live.OldIds``: eager, it made ``history()`` quadratic). Reading
    the attribute swaps a plain list in, so whatever receives it (``orjson``,
    pydantic validation, C code reading list storage) sees every id.
    """

    def __get__(self, obj: Entity | None, owner: type | None = None) -> Any:
        if obj is None:  # like any field with a default factory: no class attribute
            raise AttributeError("old_ids")
        d = obj.__dict__
        value = d.get("old_ids", d)
        if value is d:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute 'old_ids'")
        if type(value) is not list:
            value = d["old_ids"] = list(value)
        return value

    def __set__(self, obj: Entity, value: Any) -> None:
        obj.__dict__["old_ids"] = value

    def __delete__(self, obj: Entity) -> None:
        if obj.__dict__.pop("old_ids", obj) is obj:
            raise AttributeError("old_ids")


# Set after the class is built: in the class body pydantic would take it for the field's default.
type.__setattr__(Entity, "old_ids", _OldIdsAttribute())


class ConfigEntity(Entity):
    """An entity of function parameters, recorded like any other entity.

    A registered function's top-level parameter typed with a subclass can be
    passed as an instance, or built from primitive keyword arguments.
    """

    @classmethod
    def is_config_entity_type(cls, entity_type: Any) -> bool:
        return (
            isinstance(entity_type, type)
            and issubclass(entity_type, ConfigEntity)
            and entity_type is not ConfigEntity
        )

