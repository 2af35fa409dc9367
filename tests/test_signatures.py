"""ledger/write/signatures.py: a return hint the ledger cannot store (an iterator, generator or
callable, alone or nested) is refused when the function is registered.
"""

from __future__ import annotations

import collections.abc as abc
import typing
from typing import Any, Optional
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import CallableRegistry
from ledger.errors import FunctionRegistrationError

from .holes import HNote


# ============================================================ 2. iterator returns
#: Return hints whose values cannot be stored: iterators, generators, callables.
REFUSED_LEAVES: list[Any] = [
    typing.Iterator[int], typing.Generator[int, None, None], typing.Iterable[int],
    typing.AsyncIterator[int], typing.AsyncGenerator[int, None], typing.AsyncIterable[int],
    typing.Callable[[int], int], typing.Callable[..., HNote],
    abc.Iterator[int], abc.Generator[int, None, None], abc.Iterable[HNote],
    abc.AsyncIterator[int], abc.AsyncGenerator[int, None], abc.Callable[[], int],
    typing.Iterator, typing.Generator, typing.Iterable, typing.AsyncIterator,
    typing.AsyncGenerator, typing.Callable,
    abc.Iterator, abc.Generator, abc.Iterable, abc.AsyncIterator, abc.AsyncGenerator, abc.AsyncIterable,
    abc.Callable,
]


def nested_hints() -> st.SearchStrategy[Any]:
    """A refused hint, alone or inside lists, optionals, dict values, tuples and Annotated."""
    return st.recursive(
        st.sampled_from(REFUSED_LEAVES),
        lambda inner: st.one_of(
            inner.map(lambda h: list[h]),  # type: ignore[valid-type]
            inner.map(lambda h: Optional[h]),  # type: ignore[valid-type]
            inner.map(lambda h: dict[str, h]),  # type: ignore[valid-type]
            inner.map(lambda h: tuple[int, h]),  # type: ignore[valid-type]
            inner.map(lambda h: h | None),
            inner.map(lambda h: typing.Annotated[h, "doc"]),
        ),
        max_leaves=3,
    )


def function_with_return(hint: Any) -> Any:
    def fn() -> None:  # the hint is set below: a test cannot spell every hint in source
        return None

    fn.__annotations__["return"] = hint
    return fn


class TestUnstorableReturnHints:
    @pytest.mark.parametrize("hint", REFUSED_LEAVES, ids=repr)
    def test_refused_at_registration(self, hint: Any) -> None:
        """Iterator, generator, iterable and callable return hints are refused, naming the function and hint."""
        name = f"holes_refused_{uuid4().hex[:8]}"
        with pytest.raises(FunctionRegistrationError) as info:
            CallableRegistry.register(name)(function_with_return(hint))
        assert repr(name) in str(info.value) and "return type hint" in str(info.value)
        origin = typing.get_origin(hint) or hint
        assert getattr(origin, "__name__", repr(origin)) in str(info.value)
        assert name not in CallableRegistry.list_functions()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(nested_hints())
    def test_refused_anywhere_inside_the_hint(self, hint: Any) -> None:
        """A refused hint nested in containers, unions or Annotated is refused too."""
        with pytest.raises(FunctionRegistrationError, match="return type hint"):
            CallableRegistry.register("holes_refused_nested")(function_with_return(hint))

    def test_async_generator_function_refused(self) -> None:
        """An async generator function with an AsyncIterator hint is refused like a sync one."""

        async def agen() -> abc.AsyncIterator[int]:
            yield 1

        with pytest.raises(FunctionRegistrationError, match="'holes_agen'"):
            CallableRegistry.register("holes_agen")(agen)

    @pytest.mark.parametrize(
        "hint", [int, list[int], tuple[int, ...], dict[str, HNote], HNote, Optional[HNote], Any, None,
                 abc.Sequence[int], abc.Mapping[str, int]],
        ids=repr,
    )
    def test_storable_hints_still_register(self, hint: Any) -> None:
        """Hints of values the ledger can store keep registering."""
        name = f"holes_ok_{uuid4().hex[:8]}"
        CallableRegistry.register(name)(function_with_return(hint))
        try:
            assert name in CallableRegistry.list_functions()
        finally:
            CallableRegistry.unregister(name)
