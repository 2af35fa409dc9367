"""ledger/write/arguments.py: recorded arguments give back the arguments given (any plain value, from
its stored JSON form), and a non-finite float is recorded as its repr and marks the call not re-runnable."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.write.arguments import arguments_to_kwargs, has_unstorable, record_arguments
from ledger.write.signatures import ParamSpec


_text = st.text(max_size=8).filter(lambda t: not t.startswith("@") or t.startswith("@@"))


_plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=3)
    | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(_text, inner, max_size=3)
    | st.dictionaries(st.integers(-5, 5), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(value=_plain)
def test_recorded_arguments_give_back_the_arguments_given(value) -> None:
    """Any plain value (nested lists, tuples, dicts with str or int keys, marker-like keys,
    ``@@`` escapes) comes back as given from its stored JSON form: what re-execution passes."""
    import orjson

    spec = {"v": ParamSpec("v", object, None, False)}
    stored = orjson.loads(orjson.dumps(record_arguments({"v": value}, spec, {}, {})))
    assert arguments_to_kwargs(stored)["v"] == value


@pytest.mark.parametrize("value", [float("inf"), -float("inf"), float("nan"), [1.0, float("inf")]])
def test_a_non_finite_float_is_recorded_as_its_repr(value) -> None:
    """JSON has no inf or NaN (orjson would write null, which is another argument): the run
    record keeps its type and repr, marked so, and the call cannot be re-run from it."""
    spec = {"v": ParamSpec("v", object, None, False)}
    recorded = record_arguments({"v": value}, spec, {}, {})
    assert has_unstorable(recorded) == "v"
    assert {"$r": {"type": "builtins.float", "repr": repr(float(str(value).strip("[]").split(", ")[-1]))}} in (
        [recorded["v"]] if isinstance(recorded["v"], dict) else recorded["v"]
    )
