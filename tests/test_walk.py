"""ledger/model/walk.py: the one walker over lists, tuples and dicts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.model.walk import REMOVE, iter_leaves, map_leaves, replace_at

leaves = st.one_of(st.integers(), st.text(max_size=5), st.none(), st.floats(allow_nan=False))
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), inner, max_size=4),
    ),
    max_leaves=30,
)


def _flatten(v):
    if type(v) in (list, tuple):
        return [x for item in v for x in _flatten(item)]
    if type(v) is dict:
        return [x for item in v.values() for x in _flatten(item)]
    return [v]


def _same_types(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(_same_types(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same_types(a[k], b[k]) for k in a)
    return True


@given(values)
def test_identity_map_rebuilds_an_equal_value_with_the_same_container_types(value) -> None:
    copy = map_leaves(value, lambda x: x)
    assert copy == value and _same_types(copy, value)
    if type(value) in (list, dict):
        assert copy is not value  # containers are new: editing the copy never edits the original


@given(values)
def test_iter_leaves_yields_every_leaf_in_order(value) -> None:
    assert list(iter_leaves(value)) == _flatten(value)


@given(values)
def test_json_shaped_output_has_no_tuples_and_only_string_keys(value) -> None:
    out = map_leaves(value, lambda x: x, tuples_as_lists=True, str_keys=True)

    def check(v) -> None:
        assert type(v) is not tuple
        if type(v) is dict:
            assert all(type(k) is str for k in v)
            for x in v.values():
                check(x)
        elif type(v) is list:
            for x in v:
                check(x)

    check(out)


def test_replace_at_keeps_container_types_and_leaves_the_original_alone() -> None:
    original = {"a": [1, (2, 3), {"k": 4}]}
    assert replace_at(original, ("a", 1, 0), 9) == {"a": [1, (9, 3), {"k": 4}]}
    assert replace_at(original, ("a", 2, "k"), REMOVE) == {"a": [1, (2, 3), {}]}
    assert replace_at(original, ("a", 1, 1), REMOVE) == {"a": [1, (2,), {"k": 4}]}
    assert original == {"a": [1, (2, 3), {"k": 4}]}
    with pytest.raises(TypeError, match="cannot step into int"):
        replace_at(original, ("a", 0, 0), 1)
