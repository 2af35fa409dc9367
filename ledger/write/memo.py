"""Memoization by content: a call that matches an earlier successful execution reuses its outputs.

A function registered with ``cache=True`` gets a memo key per call (``arguments.cache_key``:
its version, its arguments, its input versions). A successful execution records the key in
its ``execution.completed``; the store files it in its memo index in the same transaction
(``ledger.store.version_index``: a keyed table on SQLite and PostgreSQL, a dict of the
in-memory index for ``memory://``), so a lookup is one indexed read whatever the log's size,
and ``ledger replay`` rebuilds and compares it like the version index. The first execution
filed under a key is the one reused. Failures carry no key: they are never reused.

A hit runs nothing and writes no entity version: it appends one ``execution.completed``
(``cache_hit``, ``reused_execution_id``, the reused execution's outputs, sibling group and
return pattern) and returns fresh copies of those stored outputs (same ecs_ids), shaped as
the first call returned them. A reused execution one of whose outputs was erased since is
not reused (its outputs could only come back as tombstones): the call runs again.

The memo index is derived state that anyone who can write the store can edit: a row pointed
at another execution would serve that execution's outputs as a sealed hit. So a hit is held
to the reused execution's own sealed record: it must be a successful first run (not itself a
hit) of this function that carries this call's memo key (the key hashes the function's
version, arguments and input versions). A record that does not is a miss: the call runs
again, with one warning (``ledger verify`` names the row). A miss rather than an error,
because the caller asked for a result, and running the function gives the right one.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from ledger.events.bodies import EXECUTION_COMPLETED, execution_completed_body
from ledger.events.decode import checked_record, corrupt
from ledger.write.batch import Batch
from ledger.write.call import Call
from projections.live import materialize_in_context
from projections.stored_reads import read_checked

__all__ = ["find_reusable", "record_hit"]

log = logging.getLogger("ledger.memo")


#: Reused executions' payloads kept per ledger (``InlineIndex.memo_payloads``).
_PAYLOADS_KEPT = 4096


def find_reusable(call: Call) -> dict[str, Any] | None:
    """The ``execution.completed`` payload filed under the call's memo key, if it can be reused.

    One keyed read of the memo index (the record comes with it); a key met before in this
    ledger costs none: the first execution filed under a key never changes.
    """
    key = call.cache_key
    if key is None:
        return None
    ledger = call.ledger
    index = ledger.index
    payload = index.memo_payloads.get(key)
    if payload is None:
        found = index.memo_lookup(key)
        if found is None:
            return None
        execution_id, position = found[0], found[1]
        if len(found) > 2 and found[5] is not None:
            _, _, topic, payload = checked_record(position, *found[2:])
        else:
            _, _, topic, payload = read_checked(ledger.store, position)
        if topic != EXECUTION_COMPLETED or payload.get("execution_id") != str(execution_id):
            raise corrupt(position, f"the memo index names execution {execution_id} here, the record holds something else")
        if not _sealed_for(payload, key, call.meta.name):
            log.warning(
                "memo index row for %s names execution %s (position %d), whose sealed record does not carry "
                "this call's memo key: running the function instead; run ledger verify",
                call.meta.name, execution_id, position,
            )
            return None
        index.memo_payloads[key] = payload
        if len(index.memo_payloads) > _PAYLOADS_KEPT:
            index.memo_payloads.popitem(last=False)
    erased = index.erased
    if any(UUID(o["lineage_id"]) in erased for o in payload["outputs"]):
        return None
    return payload


def _sealed_for(payload: dict[str, Any], key: str, function_name: str) -> bool:
    """Whether a sealed ``execution.completed`` is a first run of ``function_name`` filed under ``key``."""
    return (
        payload.get("cache_key") == key
        and payload.get("function_name") == function_name
        and not payload.get("cache_hit")
    )


def record_hit(call: Call, reused: dict[str, Any], duration_ms: float) -> Any:
    """Append the cache hit's ``execution.completed`` and return copies of the reused outputs."""
    ledger = call.ledger
    index = ledger.index
    outputs = reused["outputs"]
    with ledger.writing():
        index.prefetch([UUID(o["ecs_id"]) for o in outputs])  # one query for the versions not cached
        copies = [materialize_in_context(index, index.get(UUID(o["ecs_id"]))) for o in outputs]
        batch = Batch(index)
        batch.add(
            call.execution_id,
            EXECUTION_COMPLETED,
            execution_completed_body(
                execution_id=call.execution_id,
                function_name=call.meta.name,
                inputs=call.input_records(),
                outputs=outputs,
                config_ids=call.config_ids,
                sibling_group=reused["sibling_group"],
                duration_ms=duration_ms,
                isolation=call.meta.isolation,
                execution_ecs_id=None,
                return_pattern=reused.get("return_pattern") or "",
                arguments=call.arguments,
                reused_execution_id=UUID(reused["execution_id"]),
                run=call.run_record(),
            ),
        )
        ledger.commit(batch)
    if not outputs or outputs[0].get("output_index") is not None:
        return copies  # the first call's result was unpacked into a list of entities
    return copies[0]
