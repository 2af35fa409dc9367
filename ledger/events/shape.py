"""The stored form of a version's children (its *shape*): refs, tuples and dict keys, as JSON.

A shape is the tree fields of one version with each child entity replaced by ``Ref(ecs_id)``.
In an ``entity.version`` event it is written with markers: ``{"$e": id}`` a child,
``{"$t": [...]}`` a tuple, ``{"$i": [[key, v], ...]}`` a dict with non-string keys, and
``{"$d": {...}}`` a user dict that would otherwise look like a marker.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ledger.model.tree import Ref

__all__ = ["shape_from_json", "shape_to_json"]


def shape_to_json(value: Any) -> Any:
    """A shape as JSON-ready data: refs, tuples and int-keyed dicts get markers."""
    t = type(value)
    if t is Ref:
        return {"$e": value.ecs_id}  # orjson writes the UUID itself, in C
    if t is list:
        return [shape_to_json(v) for v in value]
    if t is tuple:
        return {"$t": [shape_to_json(v) for v in value]}
    if t is dict:
        if any(type(k) is not str for k in value):
            return {"$i": [[k, shape_to_json(v)] for k, v in value.items()]}
        encoded = {k: shape_to_json(v) for k, v in value.items()}
        if len(encoded) == 1 and next(iter(encoded)).startswith("$"):
            return {"$d": encoded}  # escape a user dict that looks like a marker
        return encoded
    return value


def shape_from_json(value: Any, uuids: dict[str, UUID] | None = None) -> Any:
    """Inverse of ``shape_to_json``; ``uuids`` caches already parsed id strings."""
    t = type(value)
    if t is list:
        return [shape_from_json(v, uuids) for v in value]
    if t is dict:
        if len(value) == 1:
            (key, inner), = value.items()
            if key == "$e":
                ecs_id = uuids.get(inner) if uuids is not None else None
                return Ref(ecs_id if ecs_id is not None else UUID(inner))
            if key == "$t":
                return tuple(shape_from_json(v, uuids) for v in inner)
            if key == "$i":
                return {k: shape_from_json(v, uuids) for k, v in inner}
            if key == "$d":
                return {k: shape_from_json(v, uuids) for k, v in inner.items()}
        return {k: shape_from_json(v, uuids) for k, v in value.items()}
    return value
