"""The input stages of an execution: resolve → trace → isolate → bind.

Everything here runs before the function does, and a refused call raises before anything
is recorded (only *trace* writes: live inputs that were never stored, or changed since).
"""

from __future__ import annotations

import inspect
from typing import Any
from uuid import UUID
from weakref import WeakKeyDictionary

from pydantic import ValidationError

from ledger.errors import ErasedError, InputValidationError
from ledger.model.address import parse_address
from ledger.model.entity import ConfigEntity, Entity
from ledger.model.personal import ERASED
from ledger.model.schema import IDENTITY_FIELDS
from ledger.model.tree import (
    IMMUTABLE_TYPES,
    MAX_NESTING,
    EntityTree,
    build_entity_tree,
    copy_value,
    too_deep,
)
from ledger.model.walk import iter_leaves, map_leaves
from ledger.write.batch import Batch
from ledger.write.call import Call, CallInput
from ledger.write.commands import live_root_for
from ledger.write.functions import FunctionMetadata
from ledger.write.host import WriteHost
from ledger.write.planning import add_plan, apply_plan, plan_tree
from projections.addresses import resolve_address
from projections.live import materialize

__all__ = ["bind", "input_entities", "isolate", "resolve_arguments", "trace"]

_EMPTY = inspect.Parameter.empty


def resolve_arguments(call: Call, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, ConfigEntity | None], set[int]]:
    """Stage *resolve*: ``@`` references → stored copies, ConfigEntity arguments split off and
    built, plain arguments validated against the function's input model.

    Returns (validated values, config entities, ids of objects that resolving produced).
    Raises before anything is recorded.
    """
    meta = call.meta
    sig = meta.signature
    params = sig.params
    index = call.ledger.index
    resolved_ids: set[int] = set()  # entities created by resolving references (already stored copies)

    def resolve(value: Any, param: str) -> Any:
        t = type(value)
        if t is str:
            if value[:1] != "@":
                return value
            if value[:2] == "@@":
                return value[1:]
            address = parse_address(value, argument=param)
            res = resolve_address(index, address, argument=param)
            found = res.value
            if found is ERASED:
                raise ErasedError(
                    f"argument {param!r}: address {value!r} is personal data that was erased"
                )
            below = "".join(f".{segment}" for segment in res.field_path)
            call.pinned[value] = f"@{found.ecs_id}" if isinstance(found, Entity) else f"@{res.source_ecs_id}{below}"
            if isinstance(found, Entity):
                resolved_ids.add(id(found))
                call.inputs.append(CallInput(param, found, None, value))
            else:
                call.inputs.append(CallInput(param, None, res.source_ecs_id, value))
                for e in _entities(found):
                    resolved_ids.add(id(e))
            return found
        if t in IMMUTABLE_TYPES:
            return value
        if t is list:
            return [resolve(v, param) for v in value]
        if t is tuple:
            return tuple(resolve(v, param) for v in value)
        if t is dict:
            return {k: resolve(v, f"{param}[{k!r}]") for k, v in value.items()}
        return value

    args: dict[str, Any] = {}
    given_configs: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for key, value in kwargs.items():
        if type(value) in (list, tuple, dict) and too_deep(value):
            raise InputValidationError(
                f"argument {key!r}: nested deeper than {MAX_NESTING} levels (or contains itself)"
            )
    for key, value in kwargs.items():
        spec = params.get(key)
        if spec is None:
            extras[key] = resolve(value, key)
        elif spec.is_config:
            given_configs[key] = resolve(value, key)
        else:
            args[key] = resolve(value, key)

    configs = _build_configs(meta, given_configs, extras)
    if extras:
        names = ", ".join(sorted(extras))
        raise InputValidationError(
            f"function {meta.name!r}: unexpected argument(s) {names}; it takes "
            f"{', '.join(params) or 'no arguments'}"
        )
    values = _validate(meta, args)

    return values, configs, resolved_ids


def input_entities(
    call: Call, values: dict[str, Any], configs: dict[str, ConfigEntity | None], resolved_ids: set[int]
) -> list[tuple[str, Entity]]:
    """Which entities are inputs (validated values, then config entities), noted on ``call``."""
    entities: list[tuple[str, Entity]] = []
    for name, value in values.items():
        if isinstance(value, Entity):
            entities.append((name, value))
        elif type(value) not in IMMUTABLE_TYPES:
            entities.extend((name, e) for e in _entities(value))
    for name, cfg in configs.items():
        if cfg is not None:
            entities.append((name, cfg))
    direct = {id(i.entity) for i in call.inputs if i.entity is not None}
    for name, e in entities:
        if id(e) not in resolved_ids and id(e) not in direct:
            call.inputs.append(CallInput(name, e, None, None))
            direct.add(id(e))

    return entities


def isolate(call: Call, entities: list[tuple[str, Entity]], resolved_ids: set[int]) -> dict[int, Entity]:
    """Stage *isolate*: a fresh copy of each input's stored tree (inputs of one tree share one
    copy), refusing inputs whose personal data was erased. Returns id(input) -> its copy."""
    if not entities:
        return {}
    copy_of = _copy_trees(call, entities, resolved_ids)
    for name, e in entities:
        if copy_of[id(e)].is_erased():
            raise ErasedError(
                f"argument {name!r}: {type(e).__name__} of lineage {e.lineage_id} was "
                "erased; its personal fields cannot be a function's input"
            )
    return copy_of


def bind(
    call: Call,
    values: dict[str, Any],
    configs: dict[str, ConfigEntity | None],
    entities: list[tuple[str, Entity]],
    copy_of: dict[int, Entity],
) -> None:
    """The keyword arguments the function is called with: copies in place of inputs."""
    seen: set[UUID] = set()
    for _, e in entities:
        if e.ecs_id not in seen:
            seen.add(e.ecs_id)
            call.input_entity_ids.append(e.ecs_id)
    for name, cfg in configs.items():
        if cfg is None:
            call.config_kwargs[name] = None
        else:
            call.config_ids.append(cfg.ecs_id)
            call.config_kwargs[name] = copy_of[id(cfg)]
    call.kwargs = {name: _substitute(v, copy_of) for name, v in values.items()}




def _entities(value: Any) -> list[Entity]:
    """Entities inside lists, tuples and dict values (not below other entities)."""
    return [v for v in iter_leaves(value) if isinstance(v, Entity)]


def _build_configs(
    meta: FunctionMetadata, given: dict[str, Any], extras: dict[str, Any]
) -> dict[str, ConfigEntity | None]:
    """An instance per ConfigEntity parameter: passed, or built from primitive keywords."""
    out: dict[str, ConfigEntity | None] = {}
    for name, cls in meta.signature.config_params.items():
        if name in given:
            value = given[name]
            if isinstance(value, cls):
                out[name] = value
                continue
            if isinstance(value, dict):
                out[name] = _make_config(meta, name, cls, value)
                continue
            raise InputValidationError(
                f"argument {name!r}: expected a {cls.__name__} (or a dict of its fields), "
                f"got {type(value).__name__}"
            )
        fields = {
            k: extras.pop(k)
            for k in list(extras)
            if k in cls.model_fields and k not in IDENTITY_FIELDS
        }
        default = meta.signature.params[name].default
        if not fields and default is not _EMPTY:
            out[name] = default
            continue
        out[name] = _make_config(meta, name, cls, fields)
    return out


def _make_config(meta: FunctionMetadata, name: str, cls: type[ConfigEntity], data: dict[str, Any]) -> ConfigEntity:
    try:
        return cls(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InputValidationError(
            f"argument {loc or name!r} (for {cls.__name__} parameter {name!r} of "
            f"{meta.name!r}): {err['msg']}"
        ) from None


#: Per input model: a value for each ``Entity`` field made by a default factory that no parameter
#: overrides (``_stand_ins``).
_stand_in_cache: WeakKeyDictionary[type[Entity], dict[str, Any]] = WeakKeyDictionary()
#: The id every stand-in id field gets (the argument model is thrown away; nothing is stored under it).
_STAND_IN_ID = UUID(int=0)


def _stand_ins(model: type[Entity]) -> dict[str, Any]:
    """Values for the input model's own ``Entity`` fields, validated in place of their factories.

    Why: the argument model is an ``Entity`` (``signatures.input_model_for``) that is validated
    on every call and thrown away after its parameters are read. Left to pydantic, every
    validation calls each of the entity's default factories (two minted ids, a random id, the
    clock, four containers), each after inspecting its signature: 5-15 µs of a call, against
    ~2 µs to validate fixed values of the right types (measured). The values are made once per
    model. An id field gets a constant, never a minted id: minting would draw from the process's
    id source, and whether a model's stand-ins were already made would then change every later
    id (the demo's ids are seeded and must be the same on every run, in one process or many).
    """
    fixed = _stand_in_cache.get(model)
    if fixed is None:
        fixed = {}
        for name, field in Entity.model_fields.items():
            factory = field.default_factory
            if factory is None or model.model_fields[name].default_factory is not factory:  # a parameter of that name
                continue
            fixed[name] = _STAND_IN_ID if field.annotation is UUID else factory()  # type: ignore[call-arg]
        _stand_in_cache[model] = fixed
    return fixed


def _validate(meta: FunctionMetadata, args: dict[str, Any]) -> dict[str, Any]:
    model = meta.signature.input_model
    assert model is not None
    try:
        inst = model.model_validate({**_stand_ins(model), **args})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err["loc"]
        param = str(loc[0]) if loc else "?"
        where = "".join(f"[{p!r}]" for p in loc[1:])
        got = args.get(param, "<missing>")
        raise InputValidationError(
            f"argument {param!r}{where} of {meta.name!r}: {err['msg']} (got {got!r:.200})"
        ) from None
    d = inst.__dict__
    return {name: d[name] for name in meta.signature.plain_params}


def trace(ledger: WriteHost, entities: list[tuple[str, Entity]], resolved_ids: set[int]) -> None:
    """Stage *trace*: register never-seen live inputs and version diverged ones, in their own
    batch before the run, so every input the function sees is a stored version."""
    with ledger.writing():
        batch: Batch | None = None
        roots: set[int] = set()
        for name, e in entities:
            if id(e) in resolved_ids:
                continue
            root = live_root_for(ledger.index, e, name)
            if id(root) in roots:
                continue
            roots.add(id(root))
            plan = plan_tree(ledger.index, build_entity_tree(root))
            if plan:
                if batch is None:
                    batch = Batch(ledger.index)
                stored = ledger.index.records.get(root.ecs_id)
                add_plan(batch, plan, "version" if stored is not None else "register")
            elif root.root_ecs_id != root.ecs_id:
                apply_plan(ledger.index, plan)  # stored exactly like this: point the objects at it
        if batch is not None:
            ledger.commit(batch)


def _copy_trees(call: Call, entities: list[tuple[str, Entity]], resolved_ids: set[int]) -> dict[int, Entity]:
    """A fresh copy of each input's stored tree; inputs of one tree share one copy."""
    ledger = call.ledger
    index = ledger.index
    records = index.records
    trees: dict[UUID, EntityTree] = {}
    copy_of: dict[int, Entity] = {}
    for _, e in entities:
        if id(e) in copy_of:
            continue
        root_id = e.root_ecs_id
        if root_id is None or root_id not in records or not records[root_id].is_root:
            root_id = index.root_of.get(e.ecs_id, e.ecs_id)
        tree = trees.get(root_id)
        if tree is None:
            if id(e) in resolved_ids and e.ecs_id == root_id:
                root_copy = e  # a reference already produced a fresh copy of this root
            else:
                root_copy = materialize(index, root_id, root_id)
            tree = trees[root_id] = build_entity_tree(root_copy)
            call.trees.append(tree)
        node = tree.nodes.get(e.ecs_id)
        if node is None:  # pragma: no cover - a traced input is always in its stored tree
            node = materialize(index, e.ecs_id, root_id)
        copy_of[id(e)] = node
        call.copies.append(node)
    return copy_of


def _substitute(value: Any, copy_of: dict[int, Entity]) -> Any:
    """The argument as the function sees it: copies for entities, copied containers."""
    if type(value) in IMMUTABLE_TYPES:
        return value
    return map_leaves(value, lambda v: copy_of[id(v)] if isinstance(v, Entity) else copy_value(v))


