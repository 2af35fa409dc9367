"""All process-wide state lives in ledger/_process.py, and reset() forgets it."""

from __future__ import annotations

import pytest

import ledger
from ledger import CallableRegistry, Entity, _process, get_ledger, set_default_ledger


class Item(Entity):
    n: int = 0


@pytest.fixture
def saved_state():
    """reset() wipes the table every test module registers into: put it back afterwards."""
    functions = dict(_process.functions)
    default = _process._default_ledger
    yield
    _process.reset()
    _process.functions.update(functions)
    set_default_ledger(default)


def test_reset_forgets_the_default_ledger_functions_and_caches(saved_state) -> None:
    first = ledger.connect("memory://")
    def process_double(item: Item) -> Item:
        return Item(n=item.n * 2)

    CallableRegistry.register("process_double")(process_double)
    assert "process_double" in CallableRegistry.list_functions()
    assert get_ledger() is first
    _process.sql_verdicts["SELECT 1"] = None

    _process.reset()

    assert "process_double" not in CallableRegistry.list_functions()
    assert get_ledger() is not first  # a fresh in-memory default
    assert not _process.sql_verdicts and not _process.input_models and not _process.output_models


def test_topics_are_found_again_by_import_path_after_reset(saved_state) -> None:
    led = ledger.connect("memory://")
    item = Item(n=3)
    led.registry.register_entity(item)
    _process.reset()
    set_default_ledger(led)
    again = led.registry.get_latest(item.lineage_id)
    assert type(again) is Item and again.n == 3


def test_a_pinned_topic_stays_known_after_reset(saved_state) -> None:
    """The demo's classes keep the topic they were first recorded under (``tools.demo_pipeline:…``,
    a module that is gone): no import path finds them again, so a reset keeps them."""
    from ledger.cli.demo_pipeline import Grade

    led = ledger.connect("memory://")
    grade = Grade(course="math", score=3.0)
    led.registry.register_entity(grade)
    _process.reset()
    set_default_ledger(led)
    again = led.registry.get_latest(grade.lineage_id)
    assert type(again) is Grade and again.score == 3.0


def test_a_closed_default_is_replaced() -> None:
    led = ledger.connect("memory://")
    led.close()
    assert get_ledger() is not led


def test_no_other_module_keeps_module_level_mutable_state() -> None:
    """A cheap guard: library modules bind caches to _process rather than creating their own."""
    import ast
    from pathlib import Path

    root = Path(ledger.__file__).resolve().parent.parent
    offenders = []
    for path in [*root.joinpath("ledger").rglob("*.py"), *root.joinpath("projections").rglob("*.py")]:
        if path.name == "_process.py":
            continue
        for node in ast.parse(path.read_text()).body:
            value = getattr(node, "value", None)
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(value, (ast.Dict, ast.List, ast.Set)):
                empty = not getattr(value, "keys", None) and not getattr(value, "elts", None)
                if empty:
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
            if isinstance(node, ast.FunctionDef) and any(
                getattr(d, "id", getattr(getattr(d, "func", None), "id", None)) in ("lru_cache", "cache")
                for d in node.decorator_list
            ):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []
