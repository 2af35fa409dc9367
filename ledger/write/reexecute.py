"""Re-execution: is a recorded result reproducible?

``reexecute`` reads one ``execution.completed``, rebuilds its call from what was recorded
(``arguments``: each entity argument as a reference to exactly the version it read, plain
and config values as they were) and runs the function again through the same preparation
and isolation as ``execute`` (inline, awaited or in a forked child, as registered). Nothing
of that run is recorded as an execution and no entity version is written: its outputs are
compared, by domain values only (``arguments.domain_data``: identity and derivation fields
never count), with the recorded outputs, and one ``execution.reexecuted`` event records
the verdict and the differences.

Values compare with ``==`` after JSON storage: floats exactly (``0.1 + 0.2`` is not ``0.3``;
a result that drifts in the last bit is a difference), NaN equal to NaN. A function that
raises on the re-run is a mismatch with its error type recorded (not its message, which
may quote personal data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any
from uuid import UUID

from pydantic_core import to_jsonable_python

from ledger import _process
from ledger.errors import (
    EntityNotFoundError,
    ErasedInputError,
    NotReexecutableError,
    ReturnTypeError,
    UnknownFunctionError,
)
from ledger.events.bodies import (
    EXECUTION_COMPLETED,
    EXECUTION_FAILED,
    EXECUTION_REEXECUTED,
    execution_reexecuted_body,
)
from ledger.events.sealed_failure import is_sealed, open_failure
from ledger.model.address import as_uuid, parse_address
from ledger.model.personal import ERASED
from ledger.write.arguments import arguments_to_kwargs, domain_data, ecs_ids_in, has_unstorable
from ledger.write.batch import Batch
from ledger.write.calls import run
from ledger.write.execution import prepare
from ledger.write.functions import lookup
from ledger.write.host import WriteHost
from ledger.write.isolation import ChildFailure
from ledger.write.returns import shape_return
from projections.addresses import resolve_address
from projections.live import materialize_in_context
from projections.stored_reads import read_checked

__all__ = ["Reexecution", "compare_outputs", "reexecute_on"]


@dataclass(frozen=True)
class Reexecution:
    """The verdict of one re-execution.

    ``differences`` maps a dotted path, prefixed by the output index (``"0.gpa"``), to
    (recorded value, value now); ``error_type`` names what the function raised, if it did.
    """

    execution_id: UUID
    reexecution_id: UUID
    function_name: str
    matches: bool
    differences: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    position: int = 0
    error_type: str | None = None


def reexecute_on(ledger: WriteHost, execution_id: UUID | str) -> Reexecution:
    """Run execution ``execution_id`` again on its recorded inputs and record the verdict.

    A completed execution matches when its outputs' domain values come out the same; a
    failed one when the run raises the same error type with the same message again.
    """
    uuid = as_uuid(execution_id, "execution_id", "an execution id")
    topic, payload = _recorded(ledger, uuid)
    try:
        meta = lookup(payload["function_name"])
    except UnknownFunctionError as exc:
        raise UnknownFunctionError(
            f"execution_id: execution {uuid} ran {payload['function_name']!r}, which is not registered in this "
            f"process ({str(exc).rpartition('(')[2].rstrip(')')}); import the module that registers it "
            f"(ledger reexecute --import {payload.get('module') or 'MODULE'})"
        ) from None
    arguments = payload.get("arguments")
    if arguments is None:
        raise NotReexecutableError(
            f"execution_id: execution {uuid} ({payload['function_name']}) has no recorded arguments "
            "(recorded before executions kept them); it cannot be run again"
        )
    unstorable = has_unstorable(arguments)
    if unstorable is not None:
        raise NotReexecutableError(
            f"execution_id: execution {uuid} ({payload['function_name']}): argument {unstorable!r} had no JSON "
            "form (recorded as its type and repr) or was personal data given as a plain value (withheld); "
            "it cannot be run again"
        )
    _refuse_erased(ledger, uuid, payload, arguments)
    recorded_failure = _recorded_failure(ledger, payload) if topic == EXECUTION_FAILED else None
    call = prepare(ledger, meta, arguments_to_kwargs(arguments))
    call.start()
    start = perf_counter()
    error_type: str | None = None
    message = ""
    differences: dict[str, tuple[Any, Any]] = {}
    personal: set[str] = set()
    try:
        result = run(call)
    except ChildFailure as failure:
        error_type, message = failure.error_type, failure.message
    except Exception as exc:  # the verdict is the record; the caller gets it, not the exception
        error_type, message = type(exc).__name__, str(exc)
    duration_ms = (perf_counter() - start) * 1000.0
    call.stop()
    if error_type is None:
        try:
            shape = shape_return(result, meta.signature.return_annotation, meta.unpack, meta.name)
        except ReturnTypeError as exc:  # returned what execute would have refused
            error_type, message = type(exc).__name__, str(exc)
    if recorded_failure is not None:
        differences = _compare_failure(recorded_failure, error_type, message)
    elif error_type is None:
        index = ledger.index
        recorded = [materialize_in_context(index, index.get(UUID(o["ecs_id"]))) for o in payload["outputs"]]
        differences = compare_outputs(recorded, shape.outputs, personal)
    else:
        differences = {"<error>": (None, error_type)}
    reexecution_id = _process.mint()
    matches = not differences
    body = execution_reexecuted_body(
        execution_id=uuid,
        reexecution_id=reexecution_id,
        function_name=meta.name,
        matches=matches,
        differences=[
            {"path": p, "recorded": _stored(p, r, personal), "now": _stored(p, n, personal)}
            for p, (r, n) in differences.items()
        ],
        duration_ms=duration_ms,
        isolation=meta.isolation,
        error_type=error_type,
        recorded_error_type=recorded_failure[0] if recorded_failure is not None else None,
        run=call.run_record(),
    )
    with ledger.writing():
        batch = Batch(ledger.index)
        batch.add(reexecution_id, EXECUTION_REEXECUTED, body)
        (position,) = ledger.commit(batch)
    return Reexecution(uuid, reexecution_id, meta.name, matches, differences, position, error_type)


def _recorded_failure(ledger: WriteHost, payload: dict[str, Any]) -> tuple[str, str | None, bool]:
    """(error type, message or None when it can no longer be read, whether it was sealed)."""
    sealed = is_sealed(payload)
    message: Any = payload.get("error_message")
    if sealed:
        erased = ledger.index.erased
        keys = ledger.store.keys
        message = open_failure(payload, lambda lineage: None if lineage in erased else keys.fetch(lineage)).get(
            "error_message"
        )
    return str(payload["error_type"]), None if message is ERASED else str(message), sealed


def _compare_failure(
    recorded: tuple[str, str | None, bool], error_type: str | None, message: str
) -> dict[str, tuple[Any, Any]]:
    """A failure's re-run matches when it raises the same type with the same message.

    A sealed message (it may quote personal data) is compared but never written into the
    verdict's differences: those read ``<personal>``. A message no longer readable (a key
    lost) is not compared: the type decides."""
    recorded_type, recorded_message, sealed = recorded
    if error_type != recorded_type:
        return {"<error>": (recorded_type, error_type)}
    if recorded_message is not None and message != recorded_message:
        if sealed:
            return {"<error message>": ("<personal>", "<personal>")}
        return {"<error message>": (recorded_message, message)}
    return {}


def _recorded(ledger: WriteHost, execution_id: UUID) -> tuple[str, dict[str, Any]]:
    """The topic and payload of ``execution_id``'s record (completed or failed);
    ``EntityNotFoundError`` if none."""
    store = ledger.store
    found = store.streams_with_prefix(execution_id.hex, 1)
    if not found or found[0][0] != execution_id:
        raise EntityNotFoundError(f"execution_id: no execution {execution_id}")
    _, _, topic, payload = read_checked(store, found[0][1])
    if topic in (EXECUTION_COMPLETED, EXECUTION_FAILED):
        return topic, payload
    if topic.startswith("execution."):
        raise NotReexecutableError(
            f"execution_id: {execution_id} ({payload.get('function_name')}) is a {topic} "
            "record; only a completed or failed execution can be run again"
        )
    raise EntityNotFoundError(f"execution_id: {execution_id} names no execution (it is an entity lineage)")


def _refuse_erased(ledger: WriteHost, execution_id: UUID, payload: dict[str, Any], arguments: dict[str, Any]) -> None:
    """``ErasedInputError`` when the execution read personal data erased since.

    What it read decides, not which lineages it touched: an entity argument (or a reference
    to an entity) read the whole tree below it, so an erased lineage with personal fields
    anywhere in it refuses; a reference to a plain field read only that value, which refuses
    only when the field itself is personal in an erased lineage.
    """
    index = ledger.index
    erased = index.erased
    whole: list[UUID] = [UUID(str(c)) for c in payload.get("config_ids", ())]
    whole += ecs_ids_in(arguments)
    for i in payload["inputs"]:
        if not i.get("ecs_id"):
            continue
        ecs_id = UUID(str(i["ecs_id"]))
        rec = index.records.get(ecs_id)
        if rec is None:
            raise EntityNotFoundError(f"execution_id: execution {execution_id} read version {ecs_id}, which is not stored")
        address = i.get("address")
        if address is None or not erased:
            whole.append(ecs_id)
            continue
        resolved = resolve_address(index, parse_address(address, argument=i["param_name"]), argument=i["param_name"])
        if not resolved.field_path:
            whole.append(resolved.source_ecs_id)
            continue
        source = index.records[resolved.source_ecs_id]
        if source.lineage_id in erased and resolved.field_path[0] in source.personal:
            raise ErasedInputError(
                f"execution_id: execution {execution_id} read personal field {resolved.field_path[0]!r} of "
                f"lineage {source.lineage_id}, which was erased; it cannot be run again"
            )
    for ecs_id in dict.fromkeys(whole):
        if index.records.get(ecs_id) is None:
            raise EntityNotFoundError(f"execution_id: execution {execution_id} read version {ecs_id}, which is not stored")
        if not erased:
            continue
        for version in index.subtree_ids(ecs_id):
            rec = index.records.get(version)
            if rec is not None and rec.lineage_id in erased and rec.personal:
                raise ErasedInputError(
                    f"execution_id: execution {execution_id} read version {version} of lineage {rec.lineage_id}, "
                    "whose personal data was erased; it cannot be run again"
                )


def compare_outputs(
    recorded: list[Any], now: list[Any], personal: set[str] | None = None
) -> dict[str, tuple[Any, Any]]:
    """Differences between recorded and new outputs by domain value, keyed by ``"<index>.<path>"``;
    ``personal`` collects the paths of personal fields met on the way."""
    out: dict[str, tuple[Any, Any]] = {}
    for i in range(max(len(recorded), len(now))):
        a = domain_data(recorded[i], personal, str(i)) if i < len(recorded) else None
        b = domain_data(now[i], personal, str(i)) if i < len(now) else None
        _compare(str(i), a, b, out)
    return out


def _stored(path: str, value: Any, personal: set[str]) -> Any:
    """A difference's value as the event keeps it: JSON, and never a personal value in clear."""
    if value is not None and any(path == p or path.startswith(p + ".") for p in personal):
        return "<personal>"
    return to_jsonable_python(value, fallback=repr)


def _same(a: Any, b: Any) -> bool:
    if type(a) is float and type(b) is float and math.isnan(a) and math.isnan(b):
        return True
    return bool(type(a) is type(b) and a == b) or (
        isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
        and not isinstance(b, bool) and a == b
    )


def _compare(path: str, a: Any, b: Any, out: dict[str, tuple[Any, Any]]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in dict.fromkeys([*a, *b]):
            _compare(f"{path}.{key}", a.get(key), b.get(key), out)
        return
    if isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            _compare(f"{path}.{i}", a[i] if i < len(a) else None, b[i] if i < len(b) else None, out)
        return
    if not _same(a, b):
        out[path] = (a, b)
