"""The execution pipeline: one path for every input and return pattern.

    prepare  resolve ``@`` references → split ConfigEntity arguments → validate
             (nothing is recorded for a rejected call) → trace: register or
             version live inputs that are new or diverged (their own batch) →
             copy stored versions for isolation
    run      inline, awaited, or in a forked child (``isolation.py``)
    finish   shape the return (B1–B7, ``returns.py``) → classify each output
             (MUTATION / DETACHMENT / CREATION) → plan every output tree with the
             tree planner (``planning.py``) → one batch: output versions, the
             ``FunctionExecution`` entity and ``execution.completed``
    fail     one batch holding ``execution.failed``; the caller re-raises

All per-call state lives in a ``Call`` object created per call, so concurrent
``aexecute`` calls never share anything but the ledger (whose writes are locked).
"""

from __future__ import annotations

import functools
import inspect
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable
from uuid import UUID, uuid4

from pydantic import ValidationError

from ledger.errors import ErasedError, InputValidationError, KeyIntegrityError
from ledger.events.bodies import (
    EXECUTION_COMPLETED,
    EXECUTION_FAILED,
    execution_completed_body,
    execution_failed_body,
    input_record,
    output_record,
)
from ledger.events.sealed_failure import personal_lineages, seal_failure
from ledger.model.address import parse_address
from ledger.model.entity import ConfigEntity, Entity
from ledger.model.function_execution import FunctionExecution
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
from ledger.write.batch import Batch
from ledger.write.commands import live_root_for
from ledger.write.host import WriteHost
from ledger.write.planning import TreePlan, add_plan, apply_plan, meta_of, plan_tree
from ledger.write.returns import ReturnShape, shape_return
from projections.addresses import resolve_address
from projections.live import materialize

if TYPE_CHECKING:
    from ledger.write.functions import FunctionMetadata

__all__ = ["Call", "failure_text", "finish", "prepare", "record_failure"]

MUTATION, CREATION, DETACHMENT = "mutation", "creation", "detachment"
_EMPTY = inspect.Parameter.empty


@dataclass(slots=True)
class _Input:
    param: str
    entity: Entity | None
    ecs_id: UUID | None
    address: str | None


@dataclass(slots=True)
class Call:
    """Everything one call needs, from preparation to recording."""

    ledger: WriteHost
    meta: FunctionMetadata
    execution_id: UUID
    kwargs: dict[str, Any] = field(default_factory=dict)  # what the function is called with
    config_kwargs: dict[str, Any] = field(default_factory=dict)
    inputs: list[_Input] = field(default_factory=list)
    input_entity_ids: list[UUID] = field(default_factory=list)
    config_ids: list[UUID] = field(default_factory=list)
    copies: list[Entity] = field(default_factory=list)  # the copies passed for entity arguments
    trees: list[EntityTree] = field(default_factory=list)  # pre-run trees of the root copies
    read_at: int = 0  # the index position when inputs were read (erasures up to it were tombstones)

    def bound(self) -> Callable[..., Any]:
        """The function with its ConfigEntity parameters bound (``functools.partial``)."""
        fn = self.meta.func
        return functools.partial(fn, **self.config_kwargs) if self.config_kwargs else fn

    def input_records(self) -> list[dict[str, Any]]:
        return [
            input_record(
                param_name=i.param,
                ecs_id=i.entity.ecs_id if i.entity is not None else i.ecs_id,
                address=i.address,
            )
            for i in self.inputs
        ]


# =================================================================== prepare
def prepare(ledger: WriteHost, meta: FunctionMetadata, kwargs: dict[str, Any]) -> Call:
    """Resolve, validate, trace and isolate; raises before anything is recorded if invalid."""
    call = Call(ledger, meta, uuid4(), read_at=ledger.index.position)
    sig = meta.signature
    params = sig.params
    index = ledger.index
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
            if isinstance(found, Entity):
                resolved_ids.add(id(found))
                call.inputs.append(_Input(param, found, None, value))
            else:
                call.inputs.append(_Input(param, None, res.source_ecs_id, value))
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

    # --- which entities are inputs (validated values, then config entities)
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
            call.inputs.append(_Input(name, e, None, None))
            direct.add(id(e))

    if entities:
        _trace(ledger, entities, resolved_ids)
        copy_of = _isolate(call, entities, resolved_ids)
        for name, e in entities:
            if copy_of[id(e)].is_erased():
                raise ErasedError(
                    f"argument {name!r}: {type(e).__name__} of lineage {e.lineage_id} was "
                    "erased; its personal fields cannot be a function's input"
                )
    else:
        copy_of = {}

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
    return call


def _entities(value: Any) -> list[Entity]:
    """Entities inside lists, tuples and dict values (not below other entities)."""
    out: list[Entity] = []
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t in IMMUTABLE_TYPES:
            continue
        if isinstance(v, Entity):
            out.append(v)
        elif t is list or t is tuple:
            stack.extend(reversed(v))
        elif t is dict:
            stack.extend(reversed(list(v.values())))
    return out


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


def _validate(meta: FunctionMetadata, args: dict[str, Any]) -> dict[str, Any]:
    model = meta.signature.input_model
    assert model is not None
    try:
        inst = model.model_validate(args)
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


def _trace(ledger: WriteHost, entities: list[tuple[str, Entity]], resolved_ids: set[int]) -> None:
    """Register never-seen inputs and version diverged ones: their own batch, before the run."""
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


def _isolate(call: Call, entities: list[tuple[str, Entity]], resolved_ids: set[int]) -> dict[int, Entity]:
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
    t = type(value)
    if t in IMMUTABLE_TYPES:
        return value
    if isinstance(value, Entity):
        return copy_of[id(value)]
    if t is list:
        return [_substitute(v, copy_of) for v in value]
    if t is tuple:
        return tuple(_substitute(v, copy_of) for v in value)
    if t is dict:
        return {k: _substitute(v, copy_of) for k, v in value.items()}
    return copy_value(value)


# ==================================================================== finish
class _Output:
    __slots__ = ("obj", "semantic", "record_root", "plan")

    def __init__(self, obj: Entity, semantic: str) -> None:
        self.obj = obj
        self.semantic = semantic
        self.record_root: Entity = obj
        self.plan: TreePlan | None = None


def finish(call: Call, result: Any, duration_ms: float, *, by_ids: bool = False) -> Any:
    """Record the outputs and the execution record in one batch; return what the caller gets.

    ``by_ids``: the result was rebuilt from another process, so identity is gone
    and ecs_ids decide what is an input copy or a node of an input tree.
    """
    meta = call.meta
    shape = shape_return(result, meta.signature.return_annotation, meta.unpack, meta.name)
    ledger = call.ledger
    key: Callable[[Entity], Any] = (lambda o: o.ecs_id) if by_ids else id
    copies = {key(c): c for c in call.copies}
    node_roots: dict[Any, EntityTree] = {}  # node of a pre-run input tree -> that tree
    for tree in call.trees:
        for node in tree.nodes.values():
            node_roots[key(node)] = tree

    # --- classify (semantic of each distinct output object)
    outputs: list[_Output] = []
    by_obj: dict[int, _Output] = {}
    for obj in shape.outputs:
        if id(obj) in by_obj:
            continue
        k = key(obj)
        if k in copies:
            out = _Output(obj, MUTATION)
            tree = node_roots[k]
            if tree.root is not copies[k] and not by_ids:
                out.record_root = tree.root  # a sub-entity input: its tree gets the new version
            elif by_ids and key(tree.root) != k:
                _graft(tree, copies[k], obj)
                out.record_root = tree.root
        elif k in node_roots:
            out = _Output(obj, DETACHMENT)
        else:
            out = _Output(obj, CREATION)
        by_obj[id(obj)] = out
        outputs.append(out)

    # --- trees to record: an output inside another output's tree is recorded with it
    candidates: dict[int, Entity] = {}
    for out in outputs:
        candidates.setdefault(id(out.record_root), out.record_root)
    trees: dict[int, EntityTree] = {rid: build_entity_tree(r) for rid, r in candidates.items()}
    inside: dict[Any, tuple[int, Entity]] = {}
    for rid, tree in trees.items():
        for node in tree.nodes.values():
            if node is not tree.root:
                inside[key(node)] = (rid, node)
    for out in outputs:
        rid = id(out.record_root)
        if out.record_root is not out.obj and key(out.obj) not in inside:
            # the sub-entity left its tree during the call: it is recorded on its own
            out.record_root = out.obj
            trees.setdefault(id(out.obj), build_entity_tree(out.obj))
            continue
        holder = inside.get(key(out.record_root))
        if holder is not None and holder[0] != rid:
            out.record_root = trees[holder[0]].root
            if by_ids:
                out.obj = holder[1]
            if out.semantic == DETACHMENT:
                out.semantic = MUTATION  # still in its (returned) parent: changed in place
    roots: dict[int, Entity] = {}
    for out in outputs:
        roots.setdefault(id(out.record_root), out.record_root)

    input_ids = call.input_entity_ids
    for out in outputs:
        if out.semantic == CREATION and out.record_root is out.obj:
            obj = out.obj
            obj.derived_from_function = meta.name
            obj.derived_from_execution_id = call.execution_id
            obj.function_input_entities = list(input_ids)

    with ledger.writing():
        plans: dict[int, TreePlan] = {}
        for rid, root in roots.items():
            tree = trees.get(rid) or build_entity_tree(root)
            plans[rid] = plan_tree(ledger.index, tree, written_by=(call.execution_id, meta.name))
        for out in outputs:
            out.plan = plans[id(out.record_root)]

        def final_id(obj: Entity, plan: TreePlan | None) -> UUID:
            return plan.new_ids.get(obj.ecs_id, obj.ecs_id) if plan is not None else obj.ecs_id

        ordered = [by_obj[id(o)] for o in shape.outputs]
        out_ids = [final_id(o.obj, o.plan) for o in ordered]
        sibling_group: list[UUID] = []
        if shape.unpacked:
            sibling_group = list(dict.fromkeys(out_ids))
            for i, out in enumerate(ordered):
                obj = out.obj
                obj.output_index = i
                obj.derived_from_execution_id = call.execution_id
                obj.sibling_output_entities = [x for j, x in enumerate(out_ids) if j != i]
                _refresh_meta(out.plan, obj, out_ids[i])
        elif shape.inner:
            plan = ordered[0].plan
            sibling_group = [final_id(e, plan) for e in shape.inner]

        outputs_body = [
            output_record(
                ecs_id=out_ids[i],
                lineage_id=out.obj.lineage_id,
                semantic=out.semantic,
                output_index=i if shape.unpacked else None,
            )
            for i, out in enumerate(ordered)
        ]
        inputs_body = call.input_records()
        fe = FunctionExecution(
            lineage_id=call.execution_id,
            function_name=meta.name,
            execution_id=call.execution_id,
            input_entity_ids=list(input_ids),
            input_params=[i["param_name"] for i in inputs_body],
            input_addresses=[i["address"] for i in inputs_body],
            output_entity_ids=out_ids,
            output_semantics=[o.semantic for o in ordered],
            config_entity_ids=list(call.config_ids),
            sibling_group=sibling_group,
            return_pattern=shape.pattern,
            unpacked=shape.unpacked,
            duration_ms=duration_ms,
            isolation=meta.isolation,
        )
        fe_plan = plan_tree(ledger.index, build_entity_tree(fe))
        for rec in fe_plan.records:
            rec._values = None  # never diffed again: keep only the JSON (decoded on demand)
        batch = Batch(ledger.index)
        for plan in plans.values():
            if plan:
                add_plan(batch, plan, "execution")
        add_plan(batch, fe_plan, "execution")
        batch.add(
            call.execution_id,
            EXECUTION_COMPLETED,
            execution_completed_body(
                execution_id=call.execution_id,
                function_name=meta.name,
                inputs=inputs_body,
                outputs=outputs_body,
                config_ids=call.config_ids,
                sibling_group=sibling_group,
                duration_ms=duration_ms,
                isolation=meta.isolation,
                execution_ecs_id=fe.ecs_id,
                return_pattern=shape.pattern,
            ),
        )
        ledger.commit(batch)
    return _returned(shape, ordered)


def _returned(shape: ReturnShape, ordered: list[_Output]) -> Any:
    if shape.unpacked:
        return [o.obj for o in ordered]
    return ordered[0].obj


def _refresh_meta(plan: TreePlan | None, obj: Entity, ecs_id: UUID) -> None:
    """Sibling metadata is only known after planning: rewrite the planned record's meta."""
    if plan is None:
        return
    for rec in plan.records:
        if rec.ecs_id == ecs_id:
            rec.meta = meta_of(obj)
            return


def _graft(tree: EntityTree, old: Entity, new: Entity) -> None:
    """Put ``new`` where ``old`` sits in ``tree`` (a sub-entity rebuilt from another process)."""
    edge = tree.edges[old.ecs_id]
    parent = tree.nodes[edge.parent]
    if not edge.path:
        setattr(parent, edge.field, new)
        return
    container = getattr(parent, edge.field)
    setattr(parent, edge.field, _replaced(container, edge.path, new))


def _replaced(container: Any, path: tuple[Any, ...], new: Any) -> Any:
    key, rest = path[0], path[1:]
    if isinstance(container, dict):
        out = dict(container)
        out[key] = _replaced(out[key], rest, new) if rest else new
        return out
    items = list(container)
    items[key] = _replaced(items[key], rest, new) if rest else new
    return tuple(items) if isinstance(container, tuple) else items


# ====================================================================== fail
def record_failure(
    call: Call,
    error_type: str,
    message: str,
    tb: str,
    duration_ms: float,
) -> None:
    """One batch with the ``execution.failed`` event; nothing else.

    The message and traceback are sealed with the keys of the personal lineages
    among the inputs (``sealed_failure.py``): they may quote personal values.
    """
    ledger = call.ledger
    index = ledger.index
    read = [*call.input_entity_ids, *call.config_ids, *(i.ecs_id for i in call.inputs)]
    # A lineage erased before the inputs were read gave the function only tombstones:
    # it cannot be quoted, and its missing key must not make the whole text unreadable.
    lineages = [
        lineage
        for lineage in personal_lineages(index, read)
        if index.erased.get(lineage, call.read_at + 1) > call.read_at
    ]
    sealed = None
    if lineages:
        keys = {lineage: _key_or_none(ledger, lineage) for lineage in lineages}
        sealed = seal_failure(call.execution_id, {"error_message": message, "traceback": tb}, keys)
    body = execution_failed_body(
        execution_id=call.execution_id,
        function_name=call.meta.name,
        inputs=call.input_records(),
        config_ids=call.config_ids,
        error_type=error_type,
        error_message=message,
        traceback=tb,
        duration_ms=duration_ms,
        isolation=call.meta.isolation,
        sealed=sealed,
    )
    batch = Batch(ledger.index)
    batch.add(call.execution_id, EXECUTION_FAILED, body)
    ledger.commit(batch)


def _key_or_none(ledger: WriteHost, lineage: UUID) -> bytes | None:
    """A key to seal failure text with; a damaged key row seals it unreadable rather than fail the record."""
    try:
        return ledger.index.key_for(lineage)
    except KeyIntegrityError:
        return None


def failure_text(exc: BaseException) -> tuple[str, str, str]:
    """(type name, message, formatted traceback) of an exception being handled."""
    return type(exc).__name__, str(exc), "".join(traceback.format_exception(exc))

