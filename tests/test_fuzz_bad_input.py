"""Hypothesis fuzzing of bad input: every rejection is a specific LedgerError, the log is
byte-for-byte unchanged (or gains exactly the failure record the design asks for), and the
ledger keeps working afterwards."""

from __future__ import annotations

import functools
import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

import ledger
from ledger import CallableRegistry, Entity, Ledger, errors
from ledger.events import EXECUTION_FAILED
from tests.models import Node, Student

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class FzBox(Entity):
    label: str
    anything: Any = None
    items: list = []


@CallableRegistry.register("fz_text")
def fz_text(s: str) -> int:
    return len(s)


@CallableRegistry.register("fz_sum")
def fz_sum(a: int, b: float) -> float:
    return a + b


@CallableRegistry.register("fz_list")
def fz_list(x: list) -> int:
    return len(x)


@CallableRegistry.register("fz_anything")
def fz_anything(x: Any) -> int:
    return 1


@CallableRegistry.register("fz_rename")
def fz_rename(student: Student, name: str) -> Student:
    student.name = name
    return student


class _Opaque:
    """Not JSON, not a model: what a careless function might return."""


@CallableRegistry.register("fz_returns_any")
def fz_returns_any(kind: int) -> Any:
    return [_Opaque(), {1, 2}, {"k": frozenset({3})}, complex(1, 2)][kind % 4]


@CallableRegistry.register("fz_returns_int")
def fz_returns_int(kind: int) -> int:
    return [_Opaque(), {1, 2}, "seven", None][kind % 4]  # type: ignore[return-value]


def _log(led: Ledger) -> list[tuple[Any, ...]]:
    return [(n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state)) for n in led.store.iter_all()]


@pytest.fixture
def fz(tmp_path) -> Iterator[tuple[Ledger, Student]]:
    """A SQLite ledger (real file) as the default, with one stored student."""
    lg = ledger.connect(f"sqlite:///{tmp_path / 'fuzz.db'}")
    s = Student(name="Ada", tags=["a"])
    lg.registry.register_entity(s)
    yield lg, s
    lg.close()
    ledger.set_default_ledger(None)


def _still_works(led: Ledger, s: Student) -> None:
    """After a rejection the ledger accepts writes and executions and verifies."""
    out = CallableRegistry.execute("fz_rename", student=s, name="Ada")
    assert out.name == "Ada"
    assert led.verify().ok


def _rejected(led: Ledger, call: Any, expected: type[errors.LedgerError]) -> errors.LedgerError:
    before = _log(led)
    with pytest.raises(expected) as info:
        call()
    assert _log(led) == before, "a rejected call wrote to the log"
    return info.value


class TestAddresses:
    @FUZZ
    @given(tail=st.text(max_size=60))
    def test_malformed_addresses_are_address_errors(self, fz, tail: str) -> None:
        """Any string starting with '@' that is not a stored entity's address is an AddressError."""
        led, s = fz
        text = "@" + tail
        if text.startswith("@@"):
            return  # an escaped literal '@': a plain string
        _rejected(led, lambda: CallableRegistry.execute("fz_text", s=text), errors.AddressError)
        _rejected(led, lambda: ledger.get(text), errors.AddressError)

    @FUZZ
    @given(path=st.lists(st.text(alphabet=string.printable, min_size=0, max_size=8), min_size=1, max_size=4))
    def test_bad_paths_into_a_stored_entity(self, fz, path: list[str]) -> None:
        """Random paths below a real entity either resolve or raise an AddressError; nothing is written."""
        led, s = fz
        text = f"@{s.ecs_id}." + ".".join(path)
        before = _log(led)
        try:
            led.resolve(text)
        except errors.AddressError:
            pass
        assert _log(led) == before


def _not_a_float(value: bytes) -> bool:
    """Pydantic's lax mode reads bytes such as b"0" as numbers; only others are wrong types."""
    try:
        TypeAdapter(float).validate_python(value)
    except ValidationError:
        return True
    return False


class TestArguments:
    @FUZZ
    @given(
        value=st.one_of(
            st.none(),
            st.binary(min_size=1).filter(_not_a_float),
            st.lists(st.integers(), min_size=1, max_size=3),
            st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=3),
            st.builds(_Opaque),
        )
    )
    def test_wrong_types_are_input_validation_errors(self, fz, value: Any) -> None:
        """A value that fits no hint is refused before anything runs or is written."""
        led, s = fz
        err = _rejected(led, lambda: CallableRegistry.execute("fz_sum", a=value, b=1.0), errors.InputValidationError)
        assert "'a'" in str(err)
        _rejected(led, lambda: CallableRegistry.execute("fz_rename", student=value, name="x"), errors.InputValidationError)

    @FUZZ
    @given(name=st.one_of(st.text(max_size=30), st.integers(), st.none(), st.lists(st.integers(), max_size=2)))
    def test_unknown_function_names(self, fz, name: Any) -> None:
        """An unregistered name, or not a str at all, is an UnknownFunctionError (a KeyError)."""
        led, s = fz
        if isinstance(name, str) and name in CallableRegistry.list_functions():
            return
        err = _rejected(led, lambda: CallableRegistry.execute(name, x=1), errors.UnknownFunctionError)
        assert isinstance(err, KeyError) and str(err).startswith("name:")

    @FUZZ
    @given(depth=st.integers(min_value=201, max_value=10_000), kind=st.sampled_from(["list", "dict", "tuple"]))
    def test_deeply_nested_arguments(self, fz, depth: int, kind: str) -> None:
        """Arguments nested 200+ deep are refused as input errors (regression: was RecursionError)."""
        led, s = fz
        wrap = {"list": lambda v: [v], "dict": lambda v: {"k": v}, "tuple": lambda v: (v,)}[kind]
        value = functools.reduce(lambda acc, _: wrap(acc), range(depth), 0)
        err = _rejected(led, lambda: CallableRegistry.execute("fz_anything", x=value), errors.InputValidationError)
        assert "'x'" in str(err) and "nested" in str(err)

    def test_arguments_containing_themselves(self, fz) -> None:
        """A list that contains itself is refused (regression: was RecursionError)."""
        led, s = fz
        loop: list[Any] = [1]
        loop.append([loop])
        _rejected(led, lambda: CallableRegistry.execute("fz_list", x=loop), errors.InputValidationError)
        _still_works(led, s)

    def test_a_shared_but_acyclic_argument_is_fine(self, fz) -> None:
        """The nesting check is about depth, not about the same list appearing twice."""
        led, s = fz
        shared = [1, 2]
        assert CallableRegistry.execute("fz_list", x=[shared, shared, [shared]]).result == 3

    @settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(size=st.integers(min_value=1_000_000, max_value=10_000_000))
    def test_huge_strings_are_ordinary_data(self, fz, size: int) -> None:
        """A 10 MB string is valid input: it runs and is recorded, nothing special."""
        led, s = fz
        assert CallableRegistry.execute("fz_text", s="x" * size).result == size
        assert led.verify().ok


class TestReturns:
    @FUZZ
    @given(kind=st.integers(min_value=0, max_value=3))
    def test_unstorable_returns_are_recorded_failures(self, fz, kind: int) -> None:
        """A return JSON cannot hold is an UnstorableValueError or ReturnTypeError, recorded as one
        execution.failed event and nothing else (regression: was a bare TypeError)."""
        led, s = fz
        for name in ("fz_returns_any", "fz_returns_int"):
            before = _log(led)
            with pytest.raises((errors.UnstorableValueError, errors.ReturnTypeError)):
                CallableRegistry.execute(name, kind=kind)
            after = _log(led)
            assert after[: len(before)] == before
            assert [e[3] for e in after[len(before):]] == [EXECUTION_FAILED]
        _still_works(led, s)


class TestEntityGraphs:
    @FUZZ
    @given(length=st.integers(min_value=1, max_value=6), back=st.integers(min_value=0, max_value=5))
    def test_cycles_are_tree_structure_errors(self, fz, length: int, back: int) -> None:
        """A chain of nodes whose last points back into the chain is refused, as root and as input."""
        led, s = fz
        nodes = [Node(label=f"n{i}") for i in range(length)]
        for a, b in zip(nodes, nodes[1:]):
            a.children.append(b)
        nodes[-1].children.append(nodes[back % length])
        _rejected(led, lambda: led.registry.register_entity(nodes[0]), errors.TreeStructureError)
        _rejected(led, lambda: CallableRegistry.execute("fz_anything", x=nodes[0]), errors.TreeStructureError)

    @FUZZ
    @given(depth=st.integers(min_value=300, max_value=5_000))
    def test_deep_or_self_containing_tree_fields(self, fz, depth: int) -> None:
        """Values nested past what the log can encode are refused whole (regression: RecursionError,
        TypeError)."""
        led, s = fz
        deep = functools.reduce(lambda acc, _: [acc], range(depth), [])
        _rejected(
            led,
            lambda: led.registry.register_entity(FzBox(label="d", items=deep)),
            (errors.TreeStructureError, errors.UnstorableValueError),  # type: ignore[arg-type]
        )

    def test_values_json_cannot_hold(self, fz) -> None:
        """A set or an arbitrary object in an entity is an UnstorableValueError naming the field."""
        led, s = fz
        err = _rejected(led, lambda: led.registry.register_entity(FzBox(label="s", anything={1, 2})), errors.UnstorableValueError)
        assert "FzBox.anything" in str(err)
        box = FzBox(label="o")
        box.label = _Opaque()  # type: ignore[assignment]  # assignment is not validated
        _rejected(led, lambda: led.registry.register_entity(box), errors.UnstorableValueError)
        _still_works(led, s)
