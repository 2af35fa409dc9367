"""The event bodies: names, their Pydantic schemas, and the builders every writer uses.

This is the one place the stored format of each event is spelled out. Writers build bodies
with the functions below (never a hand-made dict), the inline projection reads them back
by these field names, the DuckDB tables parse them with :func:`duckdb_struct` (types taken
from the models here), and tests validate stored records against the models.

Streams: one per entity lineage (``stream_id = lineage_id``, one event per new version),
one per function execution (``stream_id = execution_id``).
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict

from ledger.events.shape import shape_to_json

__all__ = [
    "ENTITY_ERASED",
    "ENTITY_VERSION",
    "EVENT_MODELS",
    "EXECUTION_COMPLETED",
    "EXECUTION_FAILED",
    "EXECUTION_REEXECUTED",
    "EntityErased",
    "EntityVersionRecorded",
    "ExecutionCompleted",
    "ExecutionFailed",
    "ExecutionReexecuted",
    "InputRecord",
    "OutputRecord",
    "REACTION_EMITTED",
    "RUN_FIELDS",
    "ReactionEmitted",
    "duckdb_struct",
    "entity_erased_body",
    "entity_version_body",
    "execution_completed_body",
    "execution_failed_body",
    "execution_reexecuted_body",
    "input_record",
    "output_record",
    "reaction_emitted_body",
]

ENTITY_VERSION = "entity.version"
ENTITY_ERASED = "entity.erased"
EXECUTION_COMPLETED = "execution.completed"
EXECUTION_FAILED = "execution.failed"
REACTION_EMITTED = "reaction.emitted"
EXECUTION_REEXECUTED = "execution.reexecuted"

Cause = Literal["register", "version", "detach", "attach", "execution", "put"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    recorded_at: datetime
    batch_id: UUID
    batch_size: int
    prev_hash: str | None = None
    log_prev: str | None = None  # seal v2: the previous record in the log
    position: int | None = None  # seal v2: the position the store gave this record
    hash: str | None = None


class EntityVersionRecorded(_Event):
    """One new immutable version of one entity.

    ``values`` holds the plain fields; ``children`` the tree fields with each
    child as ``{"$e": ecs_id}`` (tuples as ``{"$t": [...]}``), so a tree version
    is a small DAG of these events and unchanged subtrees are never rewritten.
    ``tree_root`` is the root version of the tree this batch recorded.
    ``personal`` names the fields of ``values`` stored encrypted with the
    lineage's key (absent when there are none; see ledger/model/personal.py).
    ``key_check`` (the lineage's first personal version only) commits to that
    key (``ledger.store.keys.key_check``), so verify can tell a deleted or swapped key
    row from an erasure; events written before it existed have none.
    """

    ecs_id: UUID
    lineage_id: UUID
    previous_ecs_id: UUID | None
    entity_type: str
    schema_version: int
    is_root: bool
    tree_root: UUID
    cause: str
    values: dict[str, Any]
    children: dict[str, Any]
    meta: dict[str, Any]
    created_at: datetime
    forked_at: datetime | None
    detached_from: UUID | None = None  # the root version of the tree this entity left
    attached_to: UUID | None = None  # the root version of the tree this entity joined
    personal: list[str] = []
    key_check: str | None = None


class EntityErased(_Event):
    """The personal data of one lineage was erased (its key destroyed).

    Appended in the lineage's own stream, after its last version, so the
    erasure is ordered, chained and verifiable like every other fact. The
    versions keep their ciphertext; without the key it reads as ``ERASED``.
    """

    lineage_id: UUID
    reason: str
    versions: int
    #: Per version (ecs_id), the personal fields whose value differs from its parent's, read
    #: just before the key went: afterwards both sides read ``ERASED`` and could not tell.
    personal_changes: dict[str, list[str]] = {}


class OutputRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    ecs_id: UUID
    lineage_id: UUID
    semantic: Literal["mutation", "creation", "detachment"]
    output_index: int | None = None


class InputRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    param_name: str
    ecs_id: UUID | None
    address: str | None = None


class _RunRecorded(_Event):
    """The run record every execution event carries (``ledger/write/run_record.py``).

    Which code ran (``function_version``: the hex SHA-256 of name and source, the importable
    ``module``/``qualname``, the source file's git commit and whether its tree was dirty), who
    ran it (``actor``), where (``host``, ``pid``, Python and entity-ledger versions) and when
    (``started_at``/``finished_at``, UTC, microseconds). Events recorded before the run record
    existed have none of these: they read as None (unknown), never as a guess.
    """

    function_version: str | None = None
    module: str | None = None
    qualname: str | None = None
    source_file: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    actor: str | None = None
    host: str | None = None
    pid: int | None = None
    python_version: str | None = None
    ledger_version: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


#: The run record's fields, in the order ``run_record.run_fields`` fills them.
RUN_FIELDS: tuple[str, ...] = tuple(
    name for name in _RunRecorded.model_fields if name not in _Event.model_fields
)


class ExecutionCompleted(_RunRecorded):
    """A function returned and its outputs were recorded (or, ``cache_hit``, reused).

    ``arguments`` are the call's arguments as the function's input model accepted them
    (``ledger/write/arguments.py``: entities as ``{"$e": ecs_id}``), what re-execution
    runs on again. ``cache_key`` (functions registered with ``cache=True``) is what the
    store's memo index files this execution under. A cache hit names the execution whose
    outputs it returned in ``reused_execution_id`` and writes no new versions.
    Executions recorded before these fields existed have none of them.
    """

    execution_id: UUID
    function_name: str
    inputs: list[InputRecord]
    outputs: list[OutputRecord]
    config_ids: list[UUID]
    sibling_group: list[UUID]
    duration_ms: float
    isolation: str
    execution_ecs_id: UUID | None = None
    return_pattern: str | None = None
    arguments: dict[str, Any] | None = None
    cache_key: str | None = None
    cache_hit: bool = False
    reused_execution_id: UUID | None = None


class ExecutionFailed(_RunRecorded):
    """A function raised (or returned what cannot be recorded).

    ``arguments`` are recorded as for ``execution.completed`` (what the failure can be
    re-executed on); failures recorded before they were kept have none.

    When an input belonged to a lineage with personal fields, ``error_message``
    and ``traceback`` hold ciphertext that opens only while every lineage in
    ``sealed_with`` still has its key (``ledger/events/sealed_failure.py``);
    ``error_type`` always stays readable.
    """

    execution_id: UUID
    function_name: str
    inputs: list[InputRecord]
    config_ids: list[UUID]
    error_type: str
    error_message: str
    traceback: str
    duration_ms: float
    isolation: str
    sealed_with: list[UUID] = []
    key_shares: list[str] = []
    arguments: dict[str, Any] | None = None


class ReactionEmitted(_Event):
    """A user event passed to ``ledger.reactions.emit(event, record=True)``.

    One stream per emitted event (``stream_id = event_id``). ``event_type`` is the
    event's routing ``type``; ``event_class`` the import path of its class
    (``module:qualname``), so a follower in another process can rebuild it;
    ``subject_type`` the name of its subject's class; ``event`` the event's own
    fields as JSON. Nothing in the ledger's state depends on it: projections keep
    it in the ``events`` table only.
    """

    event_id: UUID
    event_type: str
    event_class: str
    subject_type: str | None
    subject_id: UUID | None
    event: dict[str, Any]


class ExecutionReexecuted(_RunRecorded):
    """A recorded execution was run again on its recorded inputs and its outputs compared.

    Its own stream (``reexecution_id``): the execution's stream stays as it was. ``matches``
    says whether every output's domain values equal the recorded ones (floats exactly);
    ``differences`` lists ``{"path", "recorded", "now"}`` for each that does not (paths
    prefixed by output index). ``error_type`` names the exception when the run raised
    (its message is not kept: it may quote personal data). No entity versions are written.
    """

    execution_id: UUID
    reexecution_id: UUID
    function_name: str
    matches: bool
    differences: list[dict[str, Any]]
    duration_ms: float
    isolation: str
    error_type: str | None = None
    recorded_error_type: str | None = None


EVENT_MODELS: dict[str, type[_Event]] = {
    ENTITY_VERSION: EntityVersionRecorded,
    ENTITY_ERASED: EntityErased,
    EXECUTION_COMPLETED: ExecutionCompleted,
    EXECUTION_FAILED: ExecutionFailed,
    REACTION_EMITTED: ReactionEmitted,
    EXECUTION_REEXECUTED: ExecutionReexecuted,
}


# ------------------------------------------------------------------ builders
# Keyword-only, one parameter per field of the model above: a writer cannot forget a field
# or misspell one, and tests/test_event_codec.py checks each builder against its model.


def entity_version_body(
    *,
    ecs_id: UUID,
    lineage_id: UUID,
    previous_ecs_id: UUID | None,
    entity_type: str,
    schema_version: int,
    is_root: bool,
    tree_root: UUID,
    cause: str,
    values_json: bytes,
    children: dict[str, Any],
    meta: dict[str, Any],
    created_at: datetime,
    forked_at: datetime | None,
    personal: tuple[str, ...] = (),
    key_check: str | None = None,
    link: tuple[str, UUID] | None = None,
) -> dict[str, Any]:
    """An ``entity.version`` body. ``values_json`` is the already serialised plain fields
    (sealed where personal) and goes in as it is; ``children`` is the version's shape;
    ``link`` is ``("detached_from" | "attached_to", root ecs_id)``."""
    body: dict[str, Any] = {
        "ecs_id": ecs_id,
        "lineage_id": lineage_id,
        "previous_ecs_id": previous_ecs_id,
        "entity_type": entity_type,
        "schema_version": schema_version,
        "is_root": is_root,
        "tree_root": tree_root,
        "cause": cause,
        "values": orjson.Fragment(values_json or b"{}"),
        "children": {k: shape_to_json(v) for k, v in children.items()},
        "meta": meta,
        "created_at": created_at,
        "forked_at": forked_at,
    }
    if link is not None:
        body[link[0]] = link[1]
    if personal:
        body["personal"] = list(personal)
        if key_check is not None:  # the lineage's first personal version commits to its key
            body["key_check"] = key_check
    return body


def entity_erased_body(
    *, lineage_id: UUID, reason: str, versions: int, personal_changes: dict[str, list[str]]
) -> dict[str, Any]:
    return {"lineage_id": lineage_id, "reason": reason, "versions": versions, "personal_changes": personal_changes}


def input_record(*, param_name: str, ecs_id: UUID | None, address: str | None) -> dict[str, Any]:
    return {"param_name": param_name, "ecs_id": ecs_id, "address": address}


def output_record(*, ecs_id: UUID, lineage_id: UUID, semantic: str, output_index: int | None) -> dict[str, Any]:
    return {"ecs_id": ecs_id, "lineage_id": lineage_id, "semantic": semantic, "output_index": output_index}


def execution_completed_body(
    *,
    execution_id: UUID,
    function_name: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    config_ids: list[UUID],
    sibling_group: list[UUID],
    duration_ms: float,
    isolation: str,
    execution_ecs_id: UUID | None,
    return_pattern: str,
    arguments: dict[str, Any] | None = None,
    cache_key: str | None = None,
    reused_execution_id: UUID | None = None,
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``execution.completed`` body; the memo fields only where they apply (older readers skip them).
    ``run`` is the run record (``run_record.run_fields``; its None values are left out)."""
    body: dict[str, Any] = {
        "execution_id": execution_id,
        "function_name": function_name,
        "inputs": inputs,
        "outputs": outputs,
        "config_ids": config_ids,
        "sibling_group": sibling_group,
        "duration_ms": duration_ms,
        "isolation": isolation,
        "execution_ecs_id": execution_ecs_id,
        "return_pattern": return_pattern,
    }
    if arguments is not None:
        body["arguments"] = arguments
    if cache_key is not None:
        body["cache_key"] = cache_key
    if reused_execution_id is not None:
        body["cache_hit"] = True
        body["reused_execution_id"] = reused_execution_id
    _add_run(body, run)
    return body


def _add_run(body: dict[str, Any], run: dict[str, Any] | None) -> None:
    """The run record's known fields into ``body`` (an unknown one is absent, as on old events)."""
    if run:
        for name in RUN_FIELDS:
            value = run.get(name)
            if value is not None:
                body[name] = value


def execution_failed_body(
    *,
    execution_id: UUID,
    function_name: str,
    inputs: list[dict[str, Any]],
    config_ids: list[UUID],
    error_type: str,
    error_message: str,
    traceback: str,
    duration_ms: float,
    isolation: str,
    sealed: dict[str, Any] | None = None,
    arguments: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``execution.failed`` body; ``sealed`` is what ``sealed_failure.seal_failure`` returned
    (ciphertext replacing ``error_message``/``traceback``, plus ``sealed_with``/``key_shares``)."""
    body: dict[str, Any] = {
        "execution_id": execution_id,
        "function_name": function_name,
        "inputs": inputs,
        "config_ids": config_ids,
        "error_type": error_type,
        "error_message": error_message,
        "traceback": traceback,
        "duration_ms": duration_ms,
        "isolation": isolation,
    }
    if sealed:
        body.update(sealed)
    if arguments is not None:
        body["arguments"] = arguments
    _add_run(body, run)
    return body


def reaction_emitted_body(
    *,
    event_id: UUID,
    event_type: str,
    event_class: str,
    subject_type: str | None,
    subject_id: UUID | None,
    event: dict[str, Any],
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": event_type,
        "event_class": event_class,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "event": event,
    }


def execution_reexecuted_body(
    *,
    execution_id: UUID,
    reexecution_id: UUID,
    function_name: str,
    matches: bool,
    differences: list[dict[str, Any]],
    duration_ms: float,
    isolation: str,
    error_type: str | None,
    recorded_error_type: str | None = None,
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "execution_id": execution_id,
        "reexecution_id": reexecution_id,
        "function_name": function_name,
        "matches": matches,
        "differences": differences,
        "duration_ms": duration_ms,
        "isolation": isolation,
        "error_type": error_type,
    }
    if recorded_error_type is not None:
        body["recorded_error_type"] = recorded_error_type
    _add_run(body, run)
    return body


# ------------------------------------------------------------------ DuckDB reading
_DUCKDB_SCALARS: dict[Any, str] = {
    UUID: "VARCHAR",
    str: "VARCHAR",
    datetime: "TIMESTAMPTZ",
    bool: "BOOLEAN",
    int: "INTEGER",
    float: "DOUBLE",
}


def _duckdb_type(annotation: Any) -> Any:
    """A model field's type as a ``json_transform`` structure (JSON-ready)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _duckdb_type(inner)
    if origin is Literal:
        return "VARCHAR"
    if origin is dict or annotation is dict:
        return "JSON"
    if origin is list:
        (item,) = typing.get_args(annotation)
        return [_duckdb_type(item)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {name: _duckdb_type(f.annotation) for name, f in annotation.model_fields.items()}
    return _DUCKDB_SCALARS[annotation]


def duckdb_struct(fields: list[str]) -> str:
    """The ``json_transform`` structure that parses every event type's payload at once.

    ``fields`` names what the reader uses; each one's type comes from the first event model
    that has it (the models agree where they share a name), so a payload key an event type
    does not have comes out NULL.
    """
    struct: dict[str, Any] = {}
    for name in fields:
        for model in EVENT_MODELS.values():
            field = model.model_fields.get(name)
            if field is not None:
                struct[name] = _duckdb_type(field.annotation)
                break
        else:
            raise KeyError(f"no event model has a field {name!r}")
    return orjson.dumps(struct).decode()
