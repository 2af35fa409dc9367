"""Return patterns B1–B7: what a function's return value becomes in the ledger.

* **B1** one entity: recorded as it is (its semantic decided by the pipeline).
* **B2 / B3 / B4** a tuple / list / dict of entities: unpacked into a list of
  outputs that are siblings of one execution (``unpack=False``: one container
  entity holding them in ``wrapped_value``). Empty: no outputs.
* **B5** a container mixing entities and other values, and **B6** containers
  nested inside containers holding entities: one container entity whose
  ``wrapped_value`` keeps the structure as returned; every entity inside is a
  child of it and a member of the execution's sibling group.
* **B7** anything without entities: wrapped in an output entity, in ``result``
  (a tuple in ``field_0``, ``field_1``, …).
"""

from __future__ import annotations

import collections.abc
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ledger.errors import ReturnTypeError
from ledger.model.entity import Entity
from ledger.model.schema import IDENTITY_FIELDS, _mentions_entity
from ledger.model.tree import IMMUTABLE_TYPES
from ledger.write.signatures import dynamic_tuple_model, output_model_for

__all__ = ["ReturnShape", "entities_in", "declare_output_models", "iterator_problem", "shape_return"]

_CONTAINERS = (tuple, list, dict)
_PATTERN = {tuple: "B2", list: "B3", dict: "B4"}


@dataclass(slots=True)
class ReturnShape:
    """How one returned value is recorded."""

    pattern: str
    outputs: list[Entity]  # the roots to record, in output order
    unpacked: bool  # True when the caller gets a list of outputs back
    keys: list[Any] | None = None  # dict keys of an unpacked B4 return
    inner: list[Entity] = field(default_factory=list)  # entities inside a container output


def entities_in(value: Any) -> list[Entity]:
    """Entities inside (nested) tuples, lists and dict values, in order; not below entities."""
    out: list[Entity] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, Entity):
            out.append(v)
        elif type(v) in _CONTAINERS or isinstance(v, _CONTAINERS):
            items = list(v.values()) if isinstance(v, dict) else list(v)
            stack.extend(reversed(items))
    return out


#: Returned values that are not data yet: an iterator or generator would be consumed
#: by validation (or fail to copy), an awaitable was never run.
_LAZY = (collections.abc.Iterator, collections.abc.AsyncIterator, collections.abc.Awaitable)


def iterator_problem(result: Any, function_name: str) -> str | None:
    """Why ``result`` cannot be recorded when it is, or holds, an iterator; else None.

    Checked before the return type hint, inline and in a forked child alike: a
    lax hint (``list[int]``) would silently drain a generator inline, ``Any``
    lets it through to the copy or the pickle, which fail without a record, and
    a child's JSON would quietly turn it into a list. Looks inside lists,
    tuples, sets, dict values and the fields of returned entities.
    """
    # (value, where its parent is, its key there): the path text is only built for a
    # container or an offender, never for each scalar of a long list.
    stack: list[tuple[Any, str, Any]] = [(result, "", None)]
    seen: set[int] = set()
    while stack:
        value, parent, key = stack.pop()
        t = type(value)
        if t in IMMUTABLE_TYPES or id(value) in seen:
            continue
        seen.add(id(value))
        if t is list or t is tuple or t is set or t is frozenset or (
            t is not dict and isinstance(value, (list, tuple, set, frozenset))
        ):
            if not IMMUTABLE_TYPES.issuperset(map(type, value)):  # C speed for plain data
                where = _join(parent, key)
                stack.extend((v, where, i) for i, v in enumerate(value))
        elif t is dict or isinstance(value, dict):
            if not IMMUTABLE_TYPES.issuperset(map(type, value.values())):
                where = _join(parent, key)
                stack.extend((v, where, k) for k, v in value.items())
        elif isinstance(value, Entity):
            where = _join(parent, key)
            d = value.__dict__
            stack.extend(
                (d[name], where, _Field(name))
                for name in type(value).model_fields
                if name not in IDENTITY_FIELDS and name in d
            )
        elif isinstance(value, _LAZY):
            if isinstance(value, collections.abc.Coroutine):
                value.close()  # never awaited: say so here, not in a warning at garbage collection
            kind = "a generator" if isinstance(value, (collections.abc.Generator, collections.abc.AsyncGenerator)) else (
                "an awaitable" if isinstance(value, collections.abc.Awaitable) else "an iterator"
            )
            where = _join(parent, key)
            at = f" at {where}" if where else ""
            return (
                f"function {function_name!r} returned {kind} ({t.__name__}){at}; the ledger records "
                "values, and an iterator or generator is consumed, not stored: return a list "
                "(list(...)) or another container instead"
            )
    return None


class _Field(str):
    """A field name on the path (``.name``), as opposed to a dict key (``['name']``)."""


def _join(parent: str, key: Any) -> str:
    if key is None:
        return parent
    if type(key) is _Field:
        return f"{parent}.{key}" if parent else str(key)
    return f"{parent}[{key!r}]"


def shape_return(result: Any, annotation: Any, unpack: bool, function_name: str) -> ReturnShape:
    """Classify ``result`` into B1–B7 and build any wrapping output entity."""
    problem = iterator_problem(result, function_name)
    if problem is not None:
        raise ReturnTypeError(problem)
    if isinstance(result, Entity):
        return ReturnShape("B1", [result], False)
    if isinstance(result, _CONTAINERS):
        kind = tuple if isinstance(result, tuple) else list if isinstance(result, list) else dict
        items = list(result.values()) if isinstance(result, dict) else list(result)
        if not items:
            if _mentions_entity(annotation, Entity) and annotation is not Any and annotation is not object:
                return ReturnShape(_PATTERN[kind], [], True, [] if kind is dict else None)
            return _wrap_plain(result, annotation, function_name)
        top = [isinstance(v, Entity) for v in items]
        if all(top):
            pattern = _PATTERN[kind]
            if unpack:
                keys = list(result.keys()) if isinstance(result, dict) else None
                return ReturnShape(pattern, items, True, keys)
            return _wrap_container(result, annotation, pattern, function_name)
        nested = any(not t and entities_in(v) for t, v in zip(top, items))
        if nested:
            return _wrap_container(result, annotation, "B6", function_name)
        if any(top):
            return _wrap_container(result, annotation, "B5", function_name)
    return _wrap_plain(result, annotation, function_name)


def _wrap_container(result: Any, annotation: Any, pattern: str, function_name: str) -> ReturnShape:
    model = output_model_for("wrapped", annotation if _fits_container(annotation) else Any)
    container = _build(model, {"wrapped_value": result}, function_name)
    return ReturnShape(pattern, [container], False, inner=entities_in(container.wrapped_value))  # type: ignore[attr-defined]


def _wrap_plain(result: Any, annotation: Any, function_name: str) -> ReturnShape:
    if isinstance(result, tuple):
        args = typing.get_args(annotation) if typing.get_origin(annotation) is tuple else ()
        if args and not (len(args) == 2 and args[1] is Ellipsis) and len(args) == len(result):
            model = output_model_for("fields", annotation)
        else:
            model = dynamic_tuple_model(len(result))
        data = {f"field_{i}": v for i, v in enumerate(result)}
        return ReturnShape("B7", [_build(model, data, function_name)], False)
    model = output_model_for("result", annotation)
    return ReturnShape("B7", [_build(model, {"result": result}, function_name)], False)


def declare_output_models(annotation: Any) -> None:
    """Create the output entity classes a function with this return hint can produce.

    A process that reads outputs written by another process (``map`` on a
    process pool) has never wrapped a result itself, so the classes those
    stored versions name do not exist here yet; the classes are derived from
    the hint alone, so making them up front is enough.
    """
    output_model_for("result", annotation)
    output_model_for("wrapped", annotation if _fits_container(annotation) else Any)
    args = typing.get_args(annotation) if typing.get_origin(annotation) is tuple else ()
    if args and not (len(args) == 2 and args[1] is Ellipsis):
        output_model_for("fields", annotation)


def _fits_container(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return annotation in (list, tuple, dict) or origin in (list, tuple, dict)


def _build(model: type[Entity], data: dict[str, Any], function_name: str) -> Entity:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ReturnTypeError(
            f"function {function_name!r} returned a value that does not match its return type "
            f"hint: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
        ) from None
