"""ledger/write/returns.py: a function that returns an iterator anyway (its hint said otherwise) is a
recorded ``ReturnTypeError``, and nothing else of the call is stored.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ledger import CallableRegistry, Ledger
from ledger.errors import ReturnTypeError

from .holes import RUN_IDS, RUNS, HBag, events, failures


def make_iterator(kind: str) -> Any:
    if kind == "generator":
        return (i for i in range(3))
    if kind == "list_iterator":
        return iter([1, 2, 3])
    if kind == "map":
        return map(str, [1, 2])
    if kind == "nested":
        return [1, (i for i in range(2))]
    if kind == "entity_field":
        return HBag(stuff={"a": [1, (i for i in range(2))]})

    async def agen() -> Any:
        yield 1

    return agen()


class TestIteratorReturnedAnyway:
    @pytest.mark.parametrize("kind", ["generator", "list_iterator", "map", "nested", "entity_field", "async_generator"])
    @pytest.mark.parametrize("isolation,is_async", RUNS, ids=RUN_IDS)
    @pytest.mark.parametrize("via", ["execute", "aexecute"])
    def test_every_kind_every_way(self, mem: Ledger, kind: str, isolation: str, is_async: bool, via: str) -> None:
        """Any iterator returned for an ``Any`` hint, run any way, is a ReturnTypeError recorded as execution.failed."""
        self.check(mem, kind, isolation, is_async, via)

    @pytest.mark.parametrize("isolation,is_async", RUNS, ids=RUN_IDS)
    def test_recorded_on_every_store(self, led: Ledger, isolation: str, is_async: bool) -> None:
        """The failure of a returned generator is recorded on memory, SQLite and PostgreSQL alike."""
        self.check(led, "generator", isolation, is_async, "execute")

    @staticmethod
    def check(led: Ledger, kind: str, isolation: str, is_async: bool, via: str) -> None:
        name = f"holes_iter_{kind}_{isolation}_{is_async}"
        if is_async:
            async def fn(n: int) -> Any:
                return make_iterator(kind)
        else:
            def fn(n: int) -> Any:
                return make_iterator(kind)
        CallableRegistry.register(name, isolation=isolation)(fn)
        before = led.store.head()
        with pytest.raises(ReturnTypeError, match=f"{name!r}") as info:
            if via == "execute":
                CallableRegistry.execute(name, n=1)
            else:
                asyncio.run(CallableRegistry.aexecute(name, n=1))
        assert "iterator" in str(info.value) or "generator" in str(info.value)
        after = events(led)[before:]
        assert [t for _, t, _ in after] == ["execution.failed"]
        failed = after[0][2]
        assert failed["function_name"] == name and failed["error_type"] == "ReturnTypeError"
        assert led.verify().ok
        assert CallableRegistry.execute("holes_upper", text="ok").result == "OK"

    def test_generator_in_a_field_versioned_by_hand(self, led: Ledger) -> None:
        """A generator in an entity field is an UnstorableValueError naming the field, not a raw TypeError."""
        from ledger.errors import UnstorableValueError

        bag = HBag(stuff=[(i for i in range(2))])
        before = events(led)
        with pytest.raises(UnstorableValueError, match=r"root\.stuff\[0\]: a generator value cannot be stored"):
            bag.promote_to_root()
        assert events(led) == before

    @pytest.mark.parametrize("isolation", ["inline", "process"])
    def test_generator_for_a_list_hint(self, led: Ledger, isolation: str) -> None:
        """A generator returned for ``list[int]`` is refused inline as in a process (not silently consumed)."""
        name = f"holes_listgen_{isolation}"

        @CallableRegistry.register(name, isolation=isolation)
        def listgen(n: int) -> list[int]:
            return (i for i in range(n))  # type: ignore[return-value]

        with pytest.raises(ReturnTypeError, match=name):
            CallableRegistry.execute(name, n=3)
        assert [p["error_type"] for p in failures(led)] == ["ReturnTypeError"]
        assert not [t for _, t, _ in events(led) if t == "execution.completed"]
