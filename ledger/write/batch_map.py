"""``CallableRegistry.map``: many calls of one function through any ``concurrent.futures.Executor``.

Why it works across processes: the store is the only shared state. A worker
process opens its own ``Ledger`` on the same URL (one per process and URL,
cached), catches up with the log, runs the call through the ordinary execution
pipeline (so the outputs, the execution record or the failure are appended by
the worker, atomically), and sends back only the ids of what it wrote. The
parent then catches up and reads those entities back from its own ledger, so
callers get the same kind of objects ``execute`` gives them.

* ``executor=None``: a plain loop in this process, ``MAP_CHUNK`` calls per transaction
  (``Ledger.batch``: each call still its own batch; a crash loses at most the chunk
  being run, never part of a call).
* a ``ThreadPoolExecutor``: calls run in this process, on this ledger.
* any other executor (a process pool, ``dask.distributed``'s
  ``Client.get_executor()``): calls run in worker processes, which need the
  registering module importable (it is imported by name) and a store they can
  reach: ``memory://`` is refused with ``ExecutorError``.

Every call runs; results come back in input order; then the first failure, in
input order, is re-raised (each failure was recorded as ``execution.failed``).
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from ledger import _process
from ledger.errors import ExecutorError, InputValidationError, UnknownFunctionError
from ledger.model.entity import Entity
from ledger.write.calls import execute_on
from ledger.write.functions import lookup
from ledger.write.host import WriteHost
from ledger.write.returns import declare_output_models
from projections import live

__all__ = ["MAP_CHUNK", "map_calls"]

#: Calls of ``executor=None`` whose records are appended in one transaction (``Ledger.batch``):
#: the transaction's fixed cost shared, and what a crash can lose bounded.
MAP_CHUNK = 256


def map_calls(
    ledger: WriteHost,
    name: str,
    kwargs_list: Iterable[Mapping[str, Any]],
    *,
    executor: Executor | None = None,
    progress: bool = False,
) -> list[Any]:
    """Run ``name`` once per keyword dict; see the module docstring for the semantics."""
    meta = lookup(name)
    calls = list(kwargs_list)
    for i, kw in enumerate(calls):
        if not isinstance(kw, Mapping):
            raise InputValidationError(f"kwargs_list[{i}]: expected a dict of arguments, got {type(kw).__name__}")
    if executor is not None and not isinstance(executor, Executor):
        raise ExecutorError(f"executor: expected a concurrent.futures.Executor, got {type(executor).__name__}")

    outcomes: list[tuple[bool, Any]] = [(False, None)] * len(calls)
    with _progress_bar(progress, len(calls), name) as advance:
        if executor is None:  # chunks of calls, each chunk's records in one transaction
            for first in range(0, len(calls), MAP_CHUNK):
                with ledger.batch():
                    for i in range(first, min(first + MAP_CHUNK, len(calls))):
                        outcomes[i] = _outcome(functools.partial(execute_on, ledger, name, **calls[i]))
                        advance()
        else:
            futures = _submit(ledger, name, meta.func.__module__, calls, executor)
            for future in as_completed(futures):
                outcomes[futures[future]] = _outcome(future.result)
                advance()
            if not isinstance(executor, ThreadPoolExecutor):
                ledger.refresh()  # the workers wrote through their own ledgers
                declare_output_models(meta.signature.return_annotation)
                outcomes = [(ok, _read_back(ledger, v) if ok else v) for ok, v in outcomes]
    for ok, value in outcomes:
        if not ok:
            raise value
    return [value for _, value in outcomes]


def _submit(
    ledger: WriteHost, name: str, module: str, calls: list[Mapping[str, Any]], executor: Executor
) -> dict[Future[Any], int]:
    if isinstance(executor, ThreadPoolExecutor):  # same process: share this ledger
        return {executor.submit(execute_on, ledger, name, **kw): i for i, kw in enumerate(calls)}
    if ledger.store.kind == "memory":
        raise ExecutorError(
            f"executor: {type(executor).__name__} runs calls in other processes, which cannot "
            f"reach this process's {ledger.url} store; use sqlite:///… or postgresql://…, "
            "a ThreadPoolExecutor, or executor=None"
        )
    url = ledger.url
    return {executor.submit(run_in_worker, url, name, module, dict(kw)): i for i, kw in enumerate(calls)}


def _outcome(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except Exception as exc:  # noqa: BLE001 - kept, and re-raised once every call has finished
        return False, exc


# ------------------------------------------------------------ worker side
def run_in_worker(url: str, name: str, module: str, kwargs: dict[str, Any]) -> Any:
    """Executed in a worker process: run one call against the shared store, return output ids."""
    try:
        lookup(name)
    except UnknownFunctionError:
        if module == "__main__":
            raise
        importlib.import_module(module)  # registers the function, as at the parent's import
    ledger = _process.worker_ledger(url, os.getpid())
    ledger.refresh()  # inputs may be entities that other processes just wrote
    return _ids(execute_on(ledger, name, **kwargs))


def _ids(result: Any) -> Any:
    if isinstance(result, Entity):
        return ("entity", result.ecs_id)
    if isinstance(result, list) and all(isinstance(e, Entity) for e in result):
        return ("entities", [e.ecs_id for e in result])
    return ("value", result)


def _read_back(ledger: WriteHost, ids: Any) -> Any:
    """The worker's output entities, as stored, from the parent's own ledger."""
    kind, value = ids
    index = ledger.index

    def one(ecs_id: UUID) -> Entity:
        return live.get_stored_entity(index, live.ecs_id_to_root_id(index, ecs_id), ecs_id)

    if kind == "entity":
        return one(value)
    if kind == "entities":
        return [one(e) for e in value]
    return value


@contextmanager
def _progress_bar(enabled: bool, total: int, name: str) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    ) as bar:
        task = bar.add_task(f"map {name}", total=total)
        yield lambda: bar.advance(task)
