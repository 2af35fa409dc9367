"""What a registered function's signature means to the ledger.

Registration reads the type hints once and builds, with ``pydantic.create_model``:

* an **input model** (an ``Entity`` subclass) whose fields are the parameters,
  without top-level ``ConfigEntity`` parameters (those are built and recorded
  separately, then bound with ``functools.partial``);
* **output models** (``Entity`` subclasses) that wrap non-entity return values
  in ``result`` / ``field_0, field_1, ...`` or keep a nested structure in
  ``wrapped_value``.

The two kinds live in separate caches keyed by the part of the signature they
depend on, so two functions with the same parameters and different return
types never share an output model (and vice versa). Output models get a stable
topic derived from the return annotation, so stored outputs read back in a new
process once a function with that return type is registered again.
"""

from __future__ import annotations

import collections.abc
import hashlib
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import create_model

from ledger import _process
from ledger.errors import FunctionRegistrationError
from ledger.model.entity import ConfigEntity, Entity
from ledger.model.schema import IDENTITY_FIELDS, topics

__all__ = [
    "ParamSpec",
    "Signature",
    "analyze_signature",
    "input_model_for",
    "output_model_for",
]

_EMPTY = inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    annotation: Any
    default: Any  # inspect.Parameter.empty when required
    is_config: bool


@dataclass(slots=True)
class Signature:
    """The typed parameters and return annotation of one function."""

    params: dict[str, ParamSpec]
    return_annotation: Any
    config_params: dict[str, type[ConfigEntity]] = field(default_factory=dict)
    input_model: type[Entity] | None = None

    @property
    def plain_params(self) -> list[str]:
        return [n for n, p in self.params.items() if not p.is_config]


def _type_hints(func: Callable[..., Any], name: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # NameError for unresolvable forward references, mostly
        raise FunctionRegistrationError(
            f"function {name!r}: its type hints cannot be resolved ({type(exc).__name__}: {exc}); "
            "define the annotated classes at module level or import them"
        ) from None


def analyze_signature(func: Callable[..., Any], name: str) -> Signature:
    """Read parameters and hints; every parameter and the return need a type hint."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise FunctionRegistrationError(f"function {name!r}: no inspectable signature ({exc})") from None
    hints = _type_hints(func, name)
    params: dict[str, ParamSpec] = {}
    configs: dict[str, type[ConfigEntity]] = {}
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise FunctionRegistrationError(
                f"function {name!r}: parameter {p.name!r} is *args/**kwargs; registered "
                "functions take named, typed parameters only"
            )
        if p.kind is p.POSITIONAL_ONLY:
            raise FunctionRegistrationError(
                f"function {name!r}: parameter {p.name!r} is positional-only; execute() passes "
                "arguments by name"
            )
        if p.name not in hints:
            raise FunctionRegistrationError(
                f"function {name!r}: parameter {p.name!r} has no type hint; every parameter "
                "of a registered function needs one"
            )
        ann = hints[p.name]
        is_config = ConfigEntity.is_config_entity_type(ann)
        if not is_config and p.name in IDENTITY_FIELDS:
            raise FunctionRegistrationError(
                f"function {name!r}: parameter {p.name!r} has the name of an entity identity "
                "field; rename it"
            )
        params[p.name] = ParamSpec(p.name, ann, p.default, is_config)
        if is_config:
            configs[p.name] = ann
    if "return" not in hints:
        raise FunctionRegistrationError(
            f"function {name!r}: no return type hint; annotate what it returns "
            "(use '-> None' for nothing)"
        )
    unstorable = unstorable_part(hints["return"])
    if unstorable is not None:
        raise FunctionRegistrationError(
            f"function {name!r}: return type hint {_hint_text(hints['return'])} promises "
            f"{_hint_text(unstorable)}, which the ledger cannot store (an iterator, generator or "
            "callable is consumed or lost, not recorded); return a list, tuple or dict instead"
        )
    out = Signature(params, hints["return"], configs)
    out.input_model = input_model_for(name, out)
    return out


# ------------------------------------------------------------- return hints
#: Return types whose values cannot be recorded: a lazy sequence is consumed (or never
#: run) and a callable has no stored form. Pydantic accepts some of them as hints
#: (``Iterator[int]`` validates lazily), so they would fail later, unrecorded.
_UNSTORABLE_ORIGINS: frozenset[Any] = frozenset(
    {
        collections.abc.Iterator,
        collections.abc.Iterable,
        collections.abc.Generator,
        collections.abc.AsyncIterator,
        collections.abc.AsyncIterable,
        collections.abc.AsyncGenerator,
        collections.abc.Awaitable,
        collections.abc.Coroutine,
        collections.abc.Callable,
        types.GeneratorType,
        types.AsyncGeneratorType,
        types.CoroutineType,
        types.FunctionType,
    }
)


def unstorable_part(hint: Any) -> Any | None:
    """The first part of a return hint that names an iterator, generator or callable, else None.

    Looks inside unions, containers and ``Annotated``: ``list[Iterator[int]]`` is
    refused as ``Iterator[int]`` is. ``typing.Iterator`` and ``collections.abc.Iterator``
    (bare or subscripted) are the same origin.
    """
    stack = [hint]
    while stack:
        h = stack.pop()
        origin = typing.get_origin(h)
        try:
            if (origin if origin is not None else h) in _UNSTORABLE_ORIGINS:
                return h
        except TypeError:  # an unhashable argument (a Literal value, say): not a type
            continue
        if origin is typing.Annotated:
            stack.append(typing.get_args(h)[0])
            continue
        if origin is not None:
            stack.extend(a for a in typing.get_args(h) if a is not Ellipsis and not isinstance(a, list))
    return None


def _hint_text(hint: Any) -> str:
    if isinstance(hint, type) and not typing.get_args(hint):
        return f"{hint.__module__}.{hint.__qualname__}" if hint.__module__ != "builtins" else hint.__name__
    return repr(hint)


# ------------------------------------------------------------------ caches
_input_cache = _process.input_models
_output_cache = _process.output_models


def _key(parts: Any) -> Any:
    """A cache key holding the annotation objects themselves (hash), else their reprs."""
    try:
        hash(parts)
        return parts
    except TypeError:
        return repr(parts)


def input_model_for(function_name: str, sig: Signature) -> type[Entity]:
    """The input entity model of a signature (top-level ConfigEntity parameters excluded)."""
    fields: dict[str, Any] = {}
    key_parts = []
    for p in sig.params.values():
        if p.is_config:
            continue
        default = ... if p.default is _EMPTY else p.default
        fields[p.name] = (p.annotation, default)
        key_parts.append((p.name, p.annotation, repr(default)))
    key = _key(tuple(key_parts))
    model = _input_cache.get(key)
    if model is None:
        try:
            model = create_model(
                f"{_ident(function_name)}Input",
                __base__=Entity,
                __module__=__name__,
                **fields,
            )
        except Exception as exc:
            raise FunctionRegistrationError(
                f"function {function_name!r}: cannot build its input model: {exc}"
            ) from None
        _set_topic(model, f"ledger.inputs:{_digest(key)}")
        _input_cache[key] = model
    return model


def output_model_for(kind: str, annotation: Any) -> type[Entity]:
    """An output entity model: ``kind`` is ``result``, ``fields`` (a tuple) or ``wrapped``."""
    key = _key((kind, annotation))
    model = _output_cache.get(key)
    if model is not None:
        return model
    fields: dict[str, Any]
    if kind == "fields":
        args = typing.get_args(annotation)
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            args = ()
        fields = {f"field_{i}": (a, ...) for i, a in enumerate(args)}
        name = "TupleOutput"
    elif kind == "wrapped":
        fields = {"wrapped_value": (annotation, ...)}
        name = "ContainerOutput"
    else:
        fields = {"result": (annotation, ...)}
        name = "ResultOutput"
    model = create_model(
        name,
        __base__=Entity,
        __module__=__name__,
        **fields,
    )
    _set_topic(model, f"ledger.outputs:{kind}:{_digest(repr(annotation))}")
    _output_cache[key] = model
    return model


def dynamic_tuple_model(size: int) -> type[Entity]:
    """``field_0 … field_{n-1}`` typed Any, for tuples whose hint gives no element types."""
    key = ("anytuple", size)
    model = _output_cache.get(key)
    if model is None:
        model = create_model(  # type: ignore[call-overload]
            "TupleOutput",
            __base__=Entity,
            __module__=__name__,
            **{f"field_{i}": (Any, ...) for i in range(size)},
        )
        _set_topic(model, f"ledger.outputs:anytuple:{size}")
        _output_cache[key] = model
    return model


def _set_topic(model: type[Entity], topic: str) -> None:
    # Before the schema is first built, so stored versions carry this topic.
    type.__setattr__(model, "__ledger_topic__", topic)
    topics.add(topic, model)


def _digest(value: Any) -> str:
    return hashlib.sha1(repr(value).encode()).hexdigest()[:16]


def _ident(name: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in name)
    return cleaned[:1].upper() + cleaned[1:] if cleaned else "Function"

