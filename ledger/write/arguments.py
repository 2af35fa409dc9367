"""A call's arguments as recorded data: what re-execution runs on and what memoization keys on.

An ``execution.completed`` event keeps the arguments as the caller gave them, as JSON, with
every entity replaced by ``{"$e": ecs_id}`` (the stored version the call read, after
tracing) and every ``@`` reference pinned to the version it read (``"@<lineage>.gpa"``
becomes ``"@<ecs_id>.gpa"``): it stays a reference, so a personal value read through one is
never copied into the log in clear. Containers use the markers of ``ledger/events/shape.py``
(tuples, dicts with non-string keys); other values go through pydantic's JSON conversion
(datetimes, UUIDs, models), and the function's input model validates them again when they
are run again, as it did the first time. ConfigEntity parameters are recorded as the config
entity the call used.

The memo key (``cache_key``) is the SHA-256 of canonical JSON (orjson, sorted keys) of:
the function's version (``function_version``: its name, its source, ``unpack``), these
arguments with each ConfigEntity replaced by its *content* (type and domain values), and
the (parameter, ecs_id) of every entity or reference input (the address as written does not
count: ``"@<lineage>.gpa"`` and ``"@<ecs_id>.gpa"`` reading one version are one pinned
argument). A config built from keyword arguments (``threshold=0.5`` for a ``Settings``
parameter) is a new entity, with a new id, on every call: keyed by id, such calls would
never meet again.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin
from uuid import UUID

import orjson
from pydantic_core import to_jsonable_python

from ledger.events.shape import shape_from_json
from ledger.model.code_version import source_version
from ledger.model.entity import ConfigEntity, Entity
from ledger.model.personal import PersonalData
from ledger.model.tree import Ref
from ledger.model.walk import map_leaves

__all__ = [
    "WITHHELD",
    "arguments_to_kwargs",
    "cache_key",
    "domain_data",
    "function_version",
    "has_unstorable",
    "record_arguments",
    "unstorable",
]


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
    return source_version(name, source, unpack)


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _encode(value: Any, pinned: dict[str, str]) -> Any:
    """One argument value as JSON-ready data, in the markers of ``ledger/events/shape.py``."""
    t = type(value)
    if t is str:
        return pinned.get(value, value) if value[:1] == "@" and value[:2] != "@@" else value
    if t is float and not math.isfinite(value):
        return unstorable(value)  # orjson would write null: another argument
    if t in _PLAIN:
        return value
    if isinstance(value, Entity):
        return {"$e": str(value.ecs_id)}
    if t is list:
        return [_encode(v, pinned) for v in value]
    if t is tuple:
        return {"$t": [_encode(v, pinned) for v in value]}
    if t is dict:
        if any(type(k) is not str for k in value):
            return {"$i": [[to_jsonable_python(k), _encode(v, pinned)] for k, v in value.items()]}
        encoded = {k: _encode(v, pinned) for k, v in value.items()}
        if len(encoded) == 1 and next(iter(encoded)).startswith("$"):
            return {"$d": encoded}  # a user dict that would read as a marker
        return encoded
    try:
        return to_jsonable_python(value)  # datetimes, UUIDs, models, sets: their JSON form
    except (TypeError, ValueError):
        return unstorable(value)


def unstorable(value: Any) -> dict[str, Any]:
    """A value JSON cannot hold, as the run record keeps it: ``{"$r": {"type", "repr"}}``.

    The record then still says what the function was called with; such a call cannot be
    re-executed or memoized (``has_unstorable``), since a repr is not the value."""
    t = type(value)
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not lose the record of the call
        text = f"<repr failed: {type(exc).__name__}>"
    return {"$r": {"type": f"{t.__module__}.{t.__qualname__}", "repr": text}}


def has_unstorable(arguments: Any) -> str | None:
    """The name of the first argument recorded as ``{"$r": ...}`` (no JSON form) or withheld
    as personal (``{"$p": ...}``), or None: such a call cannot be memoized or run again."""
    def found(value: Any) -> bool:
        if isinstance(value, dict):
            return ("$r" in value or "$p" in value) and len(value) == 1 or any(found(v) for v in value.values())
        if isinstance(value, list):
            return any(found(v) for v in value)
        return False

    for name, value in arguments.items():
        if found(value):
            return str(name)
    return None


#: What a plain value passed to a ``Personal[...]`` parameter is recorded as: never the value.
WITHHELD = {"$p": "withheld"}


def _personal(annotation: Any) -> bool:
    """True for ``Personal[T]`` (``Annotated[T, PersonalData()]``), also inside a union."""
    if get_origin(annotation) is Annotated:
        return any(isinstance(m, PersonalData) for m in annotation.__metadata__)
    return get_origin(annotation) in (Union, UnionType) and any(_personal(a) for a in get_args(annotation))


def _withheld(value: Any, pinned: dict[str, str]) -> Any:
    """A personal parameter's argument as recorded: a reference stays (pinned: it names stored,
    sealed data, not the value), an entity stays an id; any other value is withheld."""
    if type(value) is str and value[:1] == "@" and value[:2] != "@@":
        return pinned.get(value, value)
    if isinstance(value, Entity):
        return {"$e": str(value.ecs_id)}
    return dict(WITHHELD)


def record_arguments(
    kwargs: dict[str, Any], params: dict[str, Any], configs: dict[str, ConfigEntity | None], pinned: dict[str, str]
) -> dict[str, Any]:
    """The call's arguments as stored, as the caller gave them but with every entity as
    ``{"$e": ecs_id}`` (the version read, after tracing) and every ``@`` reference pinned to
    the version it read (``pinned``). A reference to a plain value stays a reference: a
    personal field's value is never copied into the log in clear. ConfigEntity parameters
    are recorded as the config entity each call used (keywords that built one are dropped
    with it); one left at its default ``None`` is not recorded. A value with no JSON form
    is recorded as its type and repr (``unstorable``). A plain value given to a ``Personal``
    parameter is withheld (``WITHHELD``): there is no lineage whose key could seal it, and
    the log keeps nothing erasure cannot reach (``docs/run-record.md``)."""
    out = {
        name: _withheld(value, pinned) if _personal(params[name].annotation) else _encode(value, pinned)
        for name, value in kwargs.items()
        if name in params and not params[name].is_config
    }
    for name, cfg in configs.items():
        if cfg is not None:
            out[name] = {"$e": str(cfg.ecs_id)}
    return out


def arguments_to_kwargs(arguments: dict[str, Any]) -> dict[str, Any]:
    """Recorded arguments as keyword arguments for ``execute``: each entity as a reference to
    exactly its recorded version (``"@<ecs_id>"``); strings (pinned references, ``@@``
    escapes) as they were given."""

    def leaf(v: Any) -> Any:
        return f"@{v.ecs_id}" if type(v) is Ref else v

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
        [i["param_name"], i["ecs_id"]] for i in inputs if i["param_name"] not in configs
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
