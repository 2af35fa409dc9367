"""``construct``: a pydantic model built from trusted values, as ``model_construct`` builds it, cheaper.

Why: every input of every execution is copied from its stored version (``projections.live.
materialize``), one model per node of its tree, from values the ledger itself decoded from its
own records. ``model_construct`` walks every field asking for its alias and validation alias
before it looks the value up (about two thirds of a copy of a 20-field entity, measured); for a
class that has neither, that walk can be done once per class. The result is the same object:
the same ``__dict__`` (fields in declaration order, missing ones from their defaults, extra
keys dropped), the same ``__pydantic_fields_set__`` and no extra or private state. A class that
needs what only ``model_construct`` does (aliases, ``extra='allow'``, ``model_post_init``,
private attributes, a root model) is built by ``model_construct`` itself.
"""

from __future__ import annotations

from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from pydantic import BaseModel
from pydantic.fields import FieldInfo

__all__ = ["construct"]

M = TypeVar("M", bound=BaseModel)

_set = object.__setattr__
#: Defaults of these types are the default itself (pydantic copies only mutable ones).
_IMMUTABLE = (type(None), bool, int, float, str, bytes)
#: Marks a field whose default pydantic must make (a factory, a mutable default, or none: required).
_ASK = object()
#: A class's fields in declaration order, each with its immutable default (or ``_ASK``).
Plan = tuple[tuple[str, FieldInfo, Any], ...]
#: Per class: its plan, or None when ``model_construct`` must build it.
_plans: WeakKeyDictionary[type[BaseModel], Plan | None] = WeakKeyDictionary()


def _plan(cls: type[BaseModel]) -> Plan | None:
    fields = cls.__pydantic_fields__
    if (
        cls.__pydantic_root_model__
        or cls.__pydantic_post_init__
        or cls.__private_attributes__
        or cls.model_config.get("extra") == "allow"
        or any(f.alias is not None or f.validation_alias is not None for f in fields.values())
    ):
        return None
    return tuple(
        (name, f, f.default if f.default_factory is None and type(f.default) in _IMMUTABLE else _ASK)
        for name, f in fields.items()
    )


def construct(cls: type[M], values: dict[str, Any]) -> M:
    """``cls.model_construct(**values)`` for trusted ``values`` (the dict itself is not kept)."""
    try:
        plan = _plans[cls]
    except KeyError:
        plan = _plans[cls] = _plan(cls)
    if plan is None:
        return cls.model_construct(**values)
    fields_values: dict[str, Any] = {}
    fields_set: set[str] = set()
    for name, field, default in plan:
        if name in values:
            fields_values[name] = values[name]
            fields_set.add(name)
        elif default is not _ASK:
            fields_values[name] = default
        elif not field.is_required():
            fields_values[name] = field.get_default(call_default_factory=True, validated_data=fields_values)
    m = cls.__new__(cls)
    _set(m, "__dict__", fields_values)
    _set(m, "__pydantic_fields_set__", fields_set)
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m
