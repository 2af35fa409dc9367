"""Running one registered function as a recorded execution, against a given ledger.

The pipeline stages live in ``ledger.write.execution`` (prepare → run → finish, or
record the failure); this module runs the function itself: inline, in a
thread for sync functions called from async code, or in a forked child.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any

from ledger.errors import ReturnTypeError, UnstorableValueError
from ledger.write.execution import Call, failure_text, finish, prepare, record_failure
from ledger.write.functions import lookup
from ledger.write.host import WriteHost
from ledger.write.isolation import ChildFailure, run_in_child
from ledger.write.memo import find_reusable, record_hit

__all__ = ["aexecute_on", "execute_on", "run"]


def execute_on(ledger: WriteHost, name: str, /, **kwargs: Any) -> Any:
    """``CallableRegistry.execute`` against a given ledger."""
    meta = lookup(name)
    call = prepare(ledger, meta, kwargs)
    if call.cache_key is not None:
        call.start()
        start = perf_counter()
        reused = find_reusable(call)
        if reused is not None:
            return record_hit(call, reused, (perf_counter() - start) * 1000.0)
    call.start()
    start = perf_counter()
    try:
        result = run(call)
    except ChildFailure as failure:
        _fail(call, failure, start)
        raise failure.error from None
    except BaseException as exc:
        _fail(call, exc, start)
        raise
    return _finish(call, result, start)


def run(call: Call) -> Any:
    """Run the prepared call's function as registered: in a forked child, awaited, or inline.

    A child's failure comes back as ``ChildFailure``; anything the function raises inline
    propagates as it is. Nothing is recorded here (``execute_on`` and re-execution do that).
    """
    meta = call.meta
    fn = call.bound()
    if meta.isolation == "process":
        return _run_in_child(call, fn)
    if meta.is_async:
        return _run_coroutine(fn(**call.kwargs))
    return fn(**call.kwargs)


async def aexecute_on(ledger: WriteHost, name: str, /, **kwargs: Any) -> Any:
    """``CallableRegistry.aexecute`` against a given ledger."""
    meta = lookup(name)
    call = prepare(ledger, meta, kwargs)
    if call.cache_key is not None:
        call.start()
        start = perf_counter()
        reused = find_reusable(call)
        if reused is not None:
            return record_hit(call, reused, (perf_counter() - start) * 1000.0)
    fn = call.bound()
    call.start()
    start = perf_counter()
    try:
        if meta.isolation == "process":
            result = await asyncio.to_thread(_run_in_child, call, fn)
        elif meta.is_async:
            result = await fn(**call.kwargs)
        else:
            result = await asyncio.to_thread(fn, **call.kwargs)
    except ChildFailure as failure:
        _fail(call, failure, start)
        raise failure.error from None
    except BaseException as exc:
        _fail(call, exc, start)
        raise
    return _finish(call, result, start)


def _finish(call: Call, result: Any, start: float) -> Any:
    duration_ms = (perf_counter() - start) * 1000.0
    call.stop()
    try:
        return finish(call, result, duration_ms, by_ids=call.meta.isolation == "process")
    except (ReturnTypeError, UnstorableValueError) as exc:
        error_type, message, tb = failure_text(exc)
        record_failure(call, error_type, message, tb, duration_ms)
        raise


def _fail(call: Call, exc: BaseException, start: float) -> None:
    duration_ms = (perf_counter() - start) * 1000.0
    call.stop()
    if isinstance(exc, ChildFailure):
        record_failure(call, exc.error_type, exc.message, exc.tb, duration_ms)
        return
    # KeyboardInterrupt and SystemExit too: the execution started and did not finish,
    # and an audit trail that drops interrupted calls hides them. The caller re-raises.
    error_type, message, tb = failure_text(exc)
    record_failure(call, error_type, message, tb, duration_ms)


def _run_in_child(call: Call, fn: Callable[..., Any]) -> Any:
    meta = call.meta
    target = fn
    if meta.is_async:
        def target(**kw: Any) -> Any:
            return asyncio.run(fn(**kw))
    return run_in_child(
        target,
        call.kwargs,
        meta.signature.return_annotation,
        function_name=meta.name,
        timeout=meta.timeout,
    )


def _run_coroutine(coro: Any) -> Any:
    """Run an async function's coroutine to completion from synchronous code."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, name="ledger-execute")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
