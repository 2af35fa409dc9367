"""The argument model is validated with stand-ins for its own ``Entity`` fields
(``ledger.write.inputs._stand_ins``): the arguments' validation and the minted ids are as before."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import ledger
from ledger import CallableRegistry, Ledger, _process
from ledger.errors import InputValidationError
from ledger.write.inputs import _stand_ins

from .models import Student


def scaled(s: Student, factor: float) -> Student:
    s.gpa = s.gpa * factor
    return s


@pytest.fixture
def mem() -> Iterator[Ledger]:
    CallableRegistry.register("stand_in_scaled")(scaled)
    led = ledger.connect("memory://")
    try:
        yield led
    finally:
        led.close()
        ledger.set_default_ledger(None)
        CallableRegistry.unregister("stand_in_scaled")


def test_arguments_are_validated_and_coerced_as_before(mem: Ledger) -> None:
    s = Student(name="Ann", gpa=1.0)
    out = CallableRegistry.execute("stand_in_scaled", s=s, factor="2")  # lax: "2" -> 2.0
    assert out.gpa == 2.0
    with pytest.raises(InputValidationError, match="'factor'"):
        CallableRegistry.execute("stand_in_scaled", s=s, factor="not a number")


def test_stand_ins_are_made_once_and_validating_mints_no_ids(mem: Ledger) -> None:
    model = CallableRegistry.get_metadata("stand_in_scaled").input_model
    assert model is not None
    fixed = _stand_ins(model)
    assert _stand_ins(model) is fixed
    assert set(fixed) == {n for n, f in model.model_fields.items() if f.default_factory is not None}
    assert not any(v.int in _process.minted for v in fixed.values() if hasattr(v, "int"))
    s = Student(name="Di", gpa=1.0)
    CallableRegistry.execute("stand_in_scaled", s=s, factor=1.0)  # registers s
    before = set(_process.minted)
    CallableRegistry.execute("stand_in_scaled", s=s, factor=1.0)
    assert not any(v.int in _process.minted for v in fixed.values() if hasattr(v, "int"))
    assert not set(_process.minted) - before  # what the execution minted it stored; the model minted nothing
