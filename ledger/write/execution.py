"""The execution pipeline: one path for every input and return pattern, as named stages.

    prepare   resolve    ``@`` references → stored copies; ConfigEntity arguments split
                         off and built; plain arguments validated (``inputs.py``; nothing
                         is recorded for a rejected call)
              trace      register or version live inputs that are new or diverged
                         (their own batch)
              isolate    fresh copies of the inputs' stored trees
              bind       the keyword arguments the function will see
    run       inline, awaited, or in a forked child (``calls.py``, ``isolation.py``)
    finish    unpack     the return value into outputs (B1–B7, ``returns.py``)
              classify   MUTATION / DETACHMENT / CREATION per output (``outputs.py``)
              record     plan every output tree (``planning.py``) → one batch: output
                         versions, the ``FunctionExecution`` entity, ``execution.completed``
    fail      one batch holding ``execution.failed``; the caller re-raises

All per-call state lives in a ``Call`` (``call.py``) created per call, so concurrent
``aexecute`` calls never share anything but the ledger (whose writes are locked).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any
from uuid import UUID

from ledger import _process
from ledger.errors import KeyIntegrityError
from ledger.events.bodies import EXECUTION_FAILED, execution_failed_body
from ledger.events.sealed_failure import personal_lineages, seal_failure
from ledger.model.entity import Entity
from ledger.write.arguments import cache_key, has_unstorable, record_arguments
from ledger.write.batch import Batch
from ledger.write.call import Call
from ledger.write.functions import FunctionMetadata
from ledger.write.host import WriteHost
from ledger.write.inputs import bind, input_entities, isolate, resolve_arguments, trace
from ledger.write.outputs import (
    attribute_creations,
    classify,
    group_trees,
    record,
    returned,
)
from ledger.write.returns import shape_return

__all__ = ["Call", "failure_text", "finish", "prepare", "record_failure"]


# =================================================================== prepare
def prepare(ledger: WriteHost, meta: FunctionMetadata, kwargs: dict[str, Any]) -> Call:
    """resolve → trace → isolate → bind; raises before anything is recorded if invalid."""
    call = Call(ledger, meta, _process.mint(), read_at=ledger.index.position, actor=ledger.actor)
    values, configs, resolved_ids = resolve_arguments(call, kwargs)
    entities = input_entities(call, values, configs, resolved_ids)
    if entities:
        trace(ledger, entities, resolved_ids)
    copy_of = isolate(call, entities, resolved_ids)
    bind(call, values, configs, entities, copy_of)
    call.configs = configs
    call.arguments = record_arguments(kwargs, meta.signature.params, configs, call.pinned)
    if meta.cache and has_unstorable(call.arguments) is None:  # a repr is not the value: not memoized
        assert meta.version is not None
        call.cache_key = cache_key(meta.version, call.arguments, configs, call.input_records())
    return call


# ==================================================================== finish
def finish(call: Call, result: Any, duration_ms: float, *, by_ids: bool = False) -> Any:
    """unpack → classify → record; returns what the caller gets.

    ``by_ids``: the result was rebuilt from another process, so identity is gone
    and ecs_ids decide what is an input copy or a node of an input tree.
    """
    meta = call.meta
    shape = shape_return(result, meta.signature.return_annotation, meta.unpack, meta.name)
    key: Callable[[Entity], Any] = (lambda o: o.ecs_id) if by_ids else id
    by_obj = classify(call, shape, key, by_ids)
    outputs = list(by_obj.values())
    roots, trees = group_trees(outputs, key, by_ids)
    attribute_creations(call, outputs)
    ordered = record(call, shape, by_obj, roots, trees, duration_ms)
    return returned(shape, ordered)


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
        arguments=call.arguments,
        run=call.run_record(),
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

