"""A call's arguments as recorded data: what re-execution runs on and what memoization keys on.

An ``execution.completed`` event keeps the arguments the function's input model accepted
(``Call.values``, references already resolved) and its ConfigEntity arguments, as JSON:
every entity is replaced by ``{"$e": ecs_id}`` (the stored version the call read, after
tracing), containers use the markers of ``ledger/events/shape.py`` (tuples, dicts with
non-string keys), and other values go through pydantic's JSON conversion (datetimes,
UUIDs, models). The input model validates them again when they are run again, as it
validated them the first time.

The memo key (``cache_key``) is the SHA-256 of canonical JSON (orjson, sorted keys) of:
the function's version (``function_version``: its name, its source, ``unpack``), these
arguments with each ConfigEntity replaced by its *content* (type and domain values),
and the (parameter, ecs_id, address) of every entity or reference input. A config built
from keyword arguments (``threshold=0.5`` for a ``Settings`` parameter) is a new entity,
with a new id, on every call: keyed by id, such calls would never meet again.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any
from uuid import UUID

import orjson
from pydantic_core import to_jsonable_python

from ledger.events.shape import shape_from_json
from ledger.model.entity import ConfigEntity, Entity
from ledger.model.tree import Ref
from ledger.model.walk import map_leaves

__all__ = ["arguments_to_kwargs", "cache_key", "domain_data", "function_version", "record_arguments"]


def function_version(name: str, func: Any, unpack: bool) -> str:
    """A hash of the function's name and source (its decorators included), and ``unpack``.

    A function whose source cannot be read (defined in an interactive session, or
    built at run time) is versioned by its bytecode and constants instead: still a
    different version whenever its body changes.
    """
    target = inspect.unwrap(func)
    try:
        source = inspect.getsource(target).encode()
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        source = b"<no source>" if code is None else code.co_code + repr(code.co_consts).encode()
    digest = hashlib.sha256()
    for part in (name.encode(), source, b"unpack" if unpack else b"keep"):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _encode(value: Any) -> Any:
    """One argument value as JSON-ready data, in the markers of ``ledger/events/shape.py``."""
    t = type(value)
    if t in _PLAIN:
        return value
    if isinstance(value, Entity):
        return {"$e": str(value.ecs_id)}
    if t is list:
        return [_encode(v) for v in value]
    if t is tuple:
        return {"$t": [_encode(v) for v in value]}
    if t is dict:
        if any(type(k) is not str for k in value):
            return {"$i": [[to_jsonable_python(k), _encode(v)] for k, v in value.items()]}
        encoded = {k: _encode(v) for k, v in value.items()}
        if len(encoded) == 1 and next(iter(encoded)).startswith("$"):
            return {"$d": encoded}  # a user dict that would read as a marker
        return encoded
    return to_jsonable_python(value)  # datetimes, UUIDs, models, sets: their JSON form


def record_arguments(values: dict[str, Any], configs: dict[str, ConfigEntity | None]) -> dict[str, Any]:
    """The arguments as stored: entities as ``{"$e": ecs_id}``; a ConfigEntity left at its
    default ``None`` is not recorded (the default applies again). A value with no JSON form
    raises ``ValueError`` (pydantic's serialization error)."""
    out = {name: _encode(value) for name, value in values.items()}
    for name, cfg in configs.items():
        if cfg is not None:
            out[name] = {"$e": str(cfg.ecs_id)}
    return out


def arguments_to_kwargs(arguments: dict[str, Any]) -> dict[str, Any]:
    """Recorded arguments as keyword arguments for ``execute``: each entity as a reference
    to exactly its recorded version (``"@<ecs_id>"``); a string that starts with ``@`` is
    escaped (``@@``), so it stays the literal it was."""

    def leaf(v: Any) -> Any:
        if type(v) is Ref:
            return f"@{v.ecs_id}"
        if type(v) is str and v.startswith("@"):
            return "@" + v
        return v

    return {name: map_leaves(shape_from_json(value), leaf) for name, value in arguments.items()}


def domain_data(value: Any, personal: set[str] | None = None, path: str = "") -> Any:
    """A value with every entity replaced by its domain fields (no identity or derivation
    fields), recursively: what two runs of a function are compared on. ``personal``
    collects the dotted paths (below ``path``) of ``Personal`` fields."""
    if isinstance(value, Entity):
        schema = type(value).ledger_schema()
        d = value.__dict__
        if personal is not None:
            personal.update(f"{path}.{name}" if path else name for name in schema.personal_fields)
        return {
            name: domain_data(d[name], personal, f"{path}.{name}" if path else name)
            for name in (*schema.plain_fields, *schema.tree_fields)
        }
    if isinstance(value, (list, tuple)):
        return [domain_data(v, personal, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: domain_data(v, personal, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    return value


def cache_key(
    version: str,
    arguments: dict[str, Any],
    configs: dict[str, ConfigEntity | None],
    inputs: list[dict[str, Any]],
) -> str:
    """The memo key of one call (see the module docstring); hex SHA-256."""
    keyed = dict(arguments)
    for name, cfg in configs.items():
        if cfg is not None:
            keyed[name] = {"$c": [type(cfg).ledger_schema().topic, domain_data(cfg)]}
    entity_inputs = [
        [i["param_name"], i["ecs_id"], i["address"]] for i in inputs if i["param_name"] not in configs
    ]
    data = orjson.dumps(
        {"function": version, "arguments": keyed, "inputs": entity_inputs},
        option=orjson.OPT_SORT_KEYS,
        default=to_jsonable_python,
    )
    return hashlib.sha256(data).hexdigest()


def ecs_ids_in(arguments: dict[str, Any]) -> list[UUID]:
    """The entity versions recorded arguments name, in order."""
    found: list[UUID] = []
    map_leaves(shape_from_json(arguments), lambda v: found.append(v.ecs_id) if type(v) is Ref else None)
    return found
