"""The one event codec: event names, payload bodies, the seal, and reading records back.

Every writer builds its payloads here and every reader (the inline projection, the DuckDB
tables, verify) reads them back through here, so the stored format is spelled out once.
"""

from ledger.events.bodies import (
    ENTITY_ERASED,
    ENTITY_VERSION,
    EVENT_MODELS,
    EXECUTION_COMPLETED,
    EXECUTION_FAILED,
    EXECUTION_REEXECUTED,
    REACTION_EMITTED,
    EntityErased,
    EntityVersionRecorded,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionReexecuted,
    InputRecord,
    OutputRecord,
    ReactionEmitted,
)
from ledger.events.seal import (
    GENESIS,
    NewEvent,
    SealCheck,
    check_seal,
    link_hash,
    open_sealed,
    seal_batch,
)
from ledger.events.shape import shape_from_json, shape_to_json

__all__ = [
    "ENTITY_ERASED",
    "ENTITY_VERSION",
    "EVENT_MODELS",
    "EXECUTION_COMPLETED",
    "EXECUTION_FAILED",
    "REACTION_EMITTED",
    "EXECUTION_REEXECUTED",
    "GENESIS",
    "EntityErased",
    "EntityVersionRecorded",
    "ExecutionCompleted",
    "ExecutionFailed",
    "ExecutionReexecuted",
    "InputRecord",
    "NewEvent",
    "OutputRecord",
    "ReactionEmitted",
    "SealCheck",
    "check_seal",
    "link_hash",
    "open_sealed",
    "seal_batch",
    "shape_from_json",
    "shape_to_json",
]
