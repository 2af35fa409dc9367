"""Reading events written by an older version of an entity class.

A class that changes its fields bumps ``__ledger_version__`` and declares
``__ledger_upcasters__ = {1: fn, 2: fn, ...}``: ``fn`` takes the stored plain
values of that version (a dict in JSON form) and returns them in the shape of
the next version. Upcasting is explicit: nothing guesses a rename.

A class changed *without* a bump cannot read what was stored under its topic.
``load_values`` says so with ``SchemaMismatchError``
(naming the class, its topic, the stored schema version and the remedy) before
any object is built, instead of a pydantic error about an internal model or,
worse, an object built from the wrong fields. Leniency is pydantic's own: a
new field with a default, or a value the new type accepts, reads fine; a
stored field the class no longer has is an error, because reading it would
drop it silently (and a rename to a field with a default would lose the value).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from ledger.errors import SchemaMismatchError, UnknownEntityTypeError

__all__ = ["load_values", "upcast_values"]


def upcast_values(cls: type, stored_version: int, data: dict[str, Any]) -> dict[str, Any]:
    current = int(getattr(cls, "__ledger_version__", 1))
    if stored_version == current:
        return data
    if stored_version > current:
        raise UnknownEntityTypeError(
            f"stored {cls.__qualname__} is schema version {stored_version}, newer than "
            f"this process's class (version {current})"
        )
    upcasters = getattr(cls, "__ledger_upcasters__", {}) or {}
    version = stored_version
    data = dict(data)
    while version < current:
        step = upcasters.get(version)
        if step is None:
            raise UnknownEntityTypeError(
                f"{cls.__qualname__}: no upcaster from schema version {version} to "
                f"{version + 1} (declare __ledger_upcasters__ = {{{version}: fn, ...}})"
            )
        data = step(data)
        version += 1
    return data


def load_values(
    cls: type,
    *,
    topic: str,
    stored_version: int,
    data: dict[str, Any],
    children: Collection[str],
    ecs_id: UUID,
) -> dict[str, Any]:
    """The stored plain values of one version as Python values of ``cls``'s plain fields.

    Upcasts first; raises ``SchemaMismatchError`` when the result does not fit,
    or when the stored child fields (``children``) do not fit the class's
    entity-holding fields. Upcasters see plain values only, so child fields are
    compared as stored: a field the class no longer has, or a required one
    that was not stored. Without upcasting, a stored plain field the class does
    not declare is a mismatch too; after upcasting the upcasters decide what is kept.
    """
    schema = cls.ledger_schema()  # type: ignore[attr-defined]
    upcast = upcast_values(cls, stored_version, data)
    problems: list[str] = []
    if upcast is data:
        problems.extend(
            f"stored field {name!r} is not a plain field of the class"
            for name in data
            if name not in schema.plain_include
        )
    values: dict[str, Any] = {}
    try:
        values = schema.load_plain(upcast)
    except ValidationError as exc:
        problems.extend(_describe(exc.errors()))
    if children != schema.tree_include:
        fields = cls.model_fields  # type: ignore[attr-defined]
        problems.extend(
            f"stored child field {name!r} is not a field of the class that holds entities"
            for name in children
            if name not in schema.tree_include
        )
        problems.extend(
            f"field {name!r} is required but was not stored"
            for name in schema.tree_fields
            if name not in children and fields[name].is_required()
        )
    if problems:
        raise _mismatch(cls, topic, stored_version, ecs_id, problems, upcast=upcast is not data)
    return values


def _describe(errors: list[Any]) -> list[str]:
    """One phrase per field from pydantic's errors; a stored value is never quoted (it may be personal).

    A field's union branches (a ``Personal`` field also accepts the erasure
    marker) give one error each: the one about the declared type is kept.
    """
    by_field: dict[str, Any] = {}
    for err in errors:
        field = str(err["loc"][0]) if err["loc"] else "value"
        if field not in by_field or by_field[field]["type"] == "is_instance_of":
            by_field[field] = err
    out = []
    for field, err in by_field.items():
        if err["type"] == "missing":
            out.append(f"field {field!r} is required but was not stored")
        else:
            out.append(f"field {field!r}: {err['msg']} (stored a {type(err.get('input')).__name__})")
    return out


def _mismatch(
    cls: type, topic: str, stored_version: int, ecs_id: UUID, problems: list[str], *, upcast: bool
) -> SchemaMismatchError:
    current = int(getattr(cls, "__ledger_version__", 1))
    head = (
        f"{cls.__qualname__} (topic {topic!r}): stored version {ecs_id} has schema version "
        f"{stored_version} and does not fit the class"
    )
    if upcast:
        remedy = (
            f"the upcasters in {cls.__qualname__}.__ledger_upcasters__ from version {stored_version} "
            f"to {current} must return the fields of version {current}"
        )
    else:
        remedy = (
            f"the class changed without a version bump: set __ledger_version__ = {current + 1} and "
            f"declare __ledger_upcasters__ = {{{current}: fn}}, where fn turns the stored values of "
            f"version {current} into the new fields"
        )
    return SchemaMismatchError(
        f"{head}: {'; '.join(problems)}. Remedy: {remedy} (docs/python-api.md, 'Changing an entity class'; "
        "tests/test_upcasting.py)"
    )
