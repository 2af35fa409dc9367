"""The seed design's functional API: ``get``, ``put`` and ``create_composite_entity``."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from ledger.errors import BadPathError, InputValidationError
from ledger.ledger import Ledger, get_ledger
from ledger.model.address import is_reference, parse_address
from ledger.model.entity import Entity

__all__ = ["create_composite_entity", "get", "put"]

E = TypeVar("E", bound=Entity)


def get(address: str, *, ledger: Ledger | None = None) -> Any:
    """The value at ``@<uuid>.path`` in stored state; entities come back as fresh copies."""
    return (ledger or get_ledger()).resolve(address, argument="address").value


def put(address: str, value: Any, *, ledger: Ledger | None = None) -> Entity:
    """Set the field at ``address``; the tree owning it gets a new version.

    Returns the new root version (a fresh copy).
    """
    ledger = ledger or get_ledger()
    parsed = parse_address(address, argument="address")
    if not parsed.path:
        raise BadPathError(f"address: {address!r} names an entity, not a field; put() needs a field path")
    with ledger.writing():
        parent = ledger.resolve(
            f"@{parsed.uuid}" + "".join(f".{s}" for s in parsed.path[:-1]), argument="address"
        )
        owner = parent.value
        if not isinstance(owner, Entity):
            raise BadPathError(
                f"address: {address!r}: put() sets entity fields; {'.'.join(parsed.path[:-1])!r} "
                f"is a {type(owner).__name__}"
            )
        name = parsed.path[-1]
        field = type(owner).model_fields.get(name)
        if field is None:
            raise BadPathError(f"address: {address!r}: {type(owner).__name__} has no field {name!r}")
        try:
            value = TypeAdapter(Any if field.annotation is None else field.annotation).validate_python(value)
        except ValidationError as exc:
            raise InputValidationError(
                f"value: {value!r} does not fit {type(owner).__name__}.{name}: {exc.errors()[0]['msg']}"
            ) from None
        tree = ledger.registry.get_stored_tree(parent.source_root_ecs_id)
        target = tree.get_entity(owner.ecs_id)
        assert target is not None
        setattr(target, name, value)
        ledger.registry.version_entity(tree.root)
        return tree.root


def create_composite_entity(
    entity_class: type[E], field_mappings: dict[str, Any], *, register: bool = True, ledger: Ledger | None = None
) -> E:
    """Build an entity whose fields come from values and ``@`` addresses, with provenance."""
    ledger = ledger or get_ledger()
    data: dict[str, Any] = {}
    sources: dict[str, Any] = {}
    for name, spec in field_mappings.items():
        if name not in entity_class.model_fields:
            raise InputValidationError(f"field_mappings: {entity_class.__name__} has no field {name!r}")
        if is_reference(spec):
            resolved = ledger.resolve(spec, argument=f"field_mappings[{name!r}]")
            data[name] = resolved.value
            sources[name] = resolved.source_ecs_id
        else:
            data[name] = spec[1:] if isinstance(spec, str) and spec.startswith("@@") else spec
    try:
        entity = entity_class(**data)
    except ValidationError as exc:
        raise InputValidationError(f"field_mappings: {entity_class.__name__}: {exc}") from None
    entity.attribute_source.update(sources)
    if register:
        ledger.registry.register_entity(entity)
    return entity
