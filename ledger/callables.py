"""``CallableRegistry``: register typed functions, run them as recorded executions.

Registered functions belong to the process (``connect()`` switches the data,
not the functions): the table is ``ledger.write.functions`` (held in ``ledger._process``), and every execution
writes to the default ledger current at call time.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from typing import Any, TypeVar
from uuid import UUID

from ledger.errors import FunctionRegistrationError
from ledger.ledger import get_ledger
from ledger.write import functions
from ledger.write.arguments import function_version
from ledger.write.batch_map import map_calls
from ledger.write.calls import aexecute_on, execute_on
from ledger.write.functions import FunctionMetadata, Isolation
from ledger.write.reexecute import Reexecution
from ledger.write.signatures import analyze_signature

__all__ = ["CallableRegistry", "FunctionMetadata", "Reexecution", "aexecute_on", "execute_on"]

F = TypeVar("F", bound=Callable[..., Any])


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
        cache: bool = False,
    ) -> Callable[[F], F]:
        """Decorator: register ``func`` under ``name``; the function itself is returned unchanged.

        ``isolation="process"`` runs each call in a forked child (``timeout``
        seconds at most); ``unpack=False`` keeps a returned tuple / list / dict
        of entities as one container entity. ``cache=True`` memoizes calls by
        content (``ledger/write/memo.py``): a call whose function version (a hash
        of its name and source), input versions, plain values and config values
        equal an earlier successful execution's returns copies of that
        execution's outputs without running, and is recorded as a cache hit.
        """
        if not isinstance(name, str) or not name:
            raise FunctionRegistrationError(f"name: expected a non-empty string, got {name!r}")
        if isolation not in ("inline", "process"):
            raise FunctionRegistrationError(
                f"isolation: expected 'inline' or 'process', got {isolation!r}"
            )
        if timeout is not None and not timeout > 0:
            raise FunctionRegistrationError(f"timeout: expected seconds > 0 or None, got {timeout!r}")
        if not isinstance(cache, bool):
            raise FunctionRegistrationError(f"cache: expected True or False, got {cache!r}")

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
                cache=cache,
                version=function_version(name, func, unpack) if cache else None,
            )
            functions.add(meta)
            return func

        return decorator

    @classmethod
    def get_metadata(cls, name: str) -> FunctionMetadata:
        """The registration facts of ``name`` (``UnknownFunctionError`` if none)."""
        return functions.lookup(name)

    @classmethod
    def list_functions(cls) -> list[str]:
        """Names of the registered functions, sorted."""
        return functions.names()

    @classmethod
    def unregister(cls, name: str) -> None:
        """Forget ``name`` (tests; stored executions are untouched)."""
        functions.remove(name)

    @classmethod
    def reexecute(cls, execution_id: UUID | str) -> Reexecution:
        """Run a recorded execution again on exactly its recorded inputs and compare its outputs.

        The function must be registered in this process. Outputs are compared by domain
        values (floats exactly); one ``execution.reexecuted`` event records the verdict
        and no entity version is written. ``EntityNotFoundError`` for an unknown id,
        ``UnknownFunctionError`` for a function not registered here, ``ErasedInputError``
        when an input's personal data was erased, ``NotReexecutableError`` for a failed
        execution or one recorded before executions kept their arguments.
        """
        return get_ledger().reexecute(execution_id)

    @classmethod
    def register_from_record(cls, record: Mapping[str, Any]) -> bool:
        """Register the function a run record names, from where the record says it lives.

        ``record`` is an execution's payload (``function_name``, ``module``, ``qualname``,
        ``function_version``, ``isolation``). A function already registered is left alone.
        Otherwise its module is imported, which may register it; if not, the function found
        at ``qualname`` is registered under the recorded name and isolation, with the
        ``unpack`` whose function version matches the recorded one (a function whose source
        changed since keeps ``unpack=True``: re-running it then shows what the change does).
        Returns whether the function is registered now. Nothing is tried for a ``__main__``
        function or a record without a location: such a function cannot be found again.
        Why here and not in ``reexecute``: importing user code is the caller's decision.
        """
        name, module, qualname = record.get("function_name"), record.get("module"), record.get("qualname")
        if not isinstance(name, str) or not name:
            return False
        if name in cls.list_functions():
            return True
        if not isinstance(module, str) or not isinstance(qualname, str) or module == "__main__":
            return False
        try:
            found: Any = importlib.import_module(module)
            if name in cls.list_functions():
                return True
            for part in qualname.split("."):
                found = getattr(found, part)
        except Exception:  # not importable here: reexecute then says the function is not registered
            return False
        if not callable(found):
            return False
        recorded = record.get("function_version")
        unpack = next((u for u in (True, False) if function_version(name, found, u) == recorded), True)
        isolation: Isolation = "process" if record.get("isolation") == "process" else "inline"
        cls.register(name, isolation=isolation, unpack=unpack)(found)
        return True

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
        return map_calls(get_ledger(), name, kwargs_list, executor=executor, progress=progress)

    @classmethod
    async def aexecute(cls, name: str, /, **kwargs: Any) -> Any:
        """``execute`` for event loops: awaits async functions, runs sync ones in a thread."""
        return await aexecute_on(get_ledger(), name, **kwargs)
