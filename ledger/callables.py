"""``CallableRegistry``: register typed functions, run them as recorded executions.

Registered functions belong to the process (``connect()`` switches the data,
not the functions): the table below is module state, and every execution
writes to the default ledger current at call time.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Literal, TypeVar

from .errors import FunctionRegistrationError, ReturnTypeError, UnknownFunctionError, UnstorableValueError
from .execution import Call, failure_text, finish, prepare, record_failure
from .isolation import ChildFailure, run_in_child
from .ledger import Ledger, get_ledger
from .signatures import Signature, analyze_signature

__all__ = ["CallableRegistry", "FunctionMetadata"]

F = TypeVar("F", bound=Callable[..., Any])
Isolation = Literal["inline", "process"]


@dataclass(frozen=True, slots=True)
class FunctionMetadata:
    """What registration learned about one function."""

    name: str
    func: Callable[..., Any]
    signature: Signature
    is_async: bool
    isolation: str
    unpack: bool
    timeout: float | None

    @property
    def input_model(self) -> type[Any] | None:
        return self.signature.input_model

    @property
    def return_annotation(self) -> Any:
        return self.signature.return_annotation

    @property
    def config_params(self) -> dict[str, type[Any]]:
        return dict(self.signature.config_params)


_functions: dict[str, FunctionMetadata] = {}
_functions_lock = threading.Lock()


class CallableRegistry:
    """The process's table of registered functions and the entry points that run them."""

    @classmethod
    def register(
        cls,
        name: str,
        *,
        isolation: Isolation = "inline",
        unpack: bool = True,
        timeout: float | None = 300.0,
    ) -> Callable[[F], F]:
        """Decorator: register ``func`` under ``name``; the function itself is returned unchanged.

        ``isolation="process"`` runs each call in a forked child (``timeout``
        seconds at most); ``unpack=False`` keeps a returned tuple / list / dict
        of entities as one container entity.
        """
        if not isinstance(name, str) or not name:
            raise FunctionRegistrationError(f"name: expected a non-empty string, got {name!r}")
        if isolation not in ("inline", "process"):
            raise FunctionRegistrationError(
                f"isolation: expected 'inline' or 'process', got {isolation!r}"
            )
        if timeout is not None and not timeout > 0:
            raise FunctionRegistrationError(f"timeout: expected seconds > 0 or None, got {timeout!r}")

        def decorator(func: F) -> F:
            if not callable(func):
                raise FunctionRegistrationError(f"function {name!r}: {func!r} is not callable")
            signature = analyze_signature(func, name)
            meta = FunctionMetadata(
                name=name,
                func=func,
                signature=signature,
                is_async=inspect.iscoroutinefunction(func),
                isolation=isolation,
                unpack=unpack,
                timeout=timeout,
            )
            with _functions_lock:
                _functions[name] = meta
            return func

        return decorator

    @classmethod
    def get_metadata(cls, name: str) -> FunctionMetadata:
        """The registration facts of ``name`` (``UnknownFunctionError`` if none)."""
        return _lookup(name)

    @classmethod
    def list_functions(cls) -> list[str]:
        """Names of the registered functions, sorted."""
        with _functions_lock:
            return sorted(_functions)

    @classmethod
    def unregister(cls, name: str) -> None:
        """Forget ``name`` (tests; stored executions are untouched)."""
        with _functions_lock:
            _functions.pop(name, None)

    @classmethod
    def execute(cls, name: str, /, **kwargs: Any) -> Any:
        """Run ``name`` on isolated copies of its inputs and record the execution."""
        return execute_on(get_ledger(), name, **kwargs)

    @classmethod
    def map(
        cls,
        name: str,
        kwargs_list: Iterable[Mapping[str, Any]],
        /,
        *,
        executor: Executor | None = None,
        progress: bool = False,
    ) -> list[Any]:
        """Run ``name`` once per keyword dict, through ``executor`` if given; results in input order.

        Worker processes write to the default ledger's store themselves; see
        ``ledger.batch_map`` for what comes back and how failures are raised.
        """
        from .batch_map import map_calls  # imports this module

        return map_calls(get_ledger(), name, kwargs_list, executor=executor, progress=progress)

    @classmethod
    async def aexecute(cls, name: str, /, **kwargs: Any) -> Any:
        """``execute`` for event loops: awaits async functions, runs sync ones in a thread."""
        return await aexecute_on(get_ledger(), name, **kwargs)


def _lookup(name: str) -> FunctionMetadata:
    if not isinstance(name, str):
        raise UnknownFunctionError(f"name: a function name is a str, got {type(name).__name__} {name!r:.80}")
    meta = _functions.get(name)
    if meta is None:
        known = ", ".join(sorted(_functions)) or "none"
        raise UnknownFunctionError(f"name: no function registered as {name!r} (registered: {known})")
    return meta


# ------------------------------------------------------------------ running
def execute_on(ledger: Ledger, name: str, /, **kwargs: Any) -> Any:
    """``CallableRegistry.execute`` against a given ledger."""
    meta = _lookup(name)
    call = prepare(ledger, meta, kwargs)
    fn = call.bound()
    start = perf_counter()
    try:
        if meta.isolation == "process":
            result = _run_in_child(call, fn)
        elif meta.is_async:
            result = _run_coroutine(fn(**call.kwargs))
        else:
            result = fn(**call.kwargs)
    except ChildFailure as failure:
        _fail(call, failure, start)
        raise failure.error from None
    except BaseException as exc:
        _fail(call, exc, start)
        raise
    return _finish(call, result, start)


async def aexecute_on(ledger: Ledger, name: str, /, **kwargs: Any) -> Any:
    """``CallableRegistry.aexecute`` against a given ledger."""
    meta = _lookup(name)
    call = prepare(ledger, meta, kwargs)
    fn = call.bound()
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
    try:
        return finish(call, result, duration_ms, by_ids=call.meta.isolation == "process")
    except (ReturnTypeError, UnstorableValueError) as exc:
        error_type, message, tb = failure_text(exc)
        record_failure(call, error_type, message, tb, duration_ms)
        raise


def _fail(call: Call, exc: BaseException, start: float) -> None:
    duration_ms = (perf_counter() - start) * 1000.0
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
