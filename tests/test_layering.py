"""Imports go one way (tools/check_imports.py), and the check itself can fail."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import check_imports  # noqa: E402


def test_the_library_has_no_import_cycle_and_no_upward_import() -> None:
    graph = check_imports.import_graph()
    assert "ledger.write.execution" in graph and "projections.inline" in graph  # it read the tree
    assert check_imports.cycles(graph) == []
    assert check_imports.upward_imports(graph) == []


def test_the_script_exits_zero_on_this_tree() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "check_imports.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_function_level_imports_count_and_type_checking_ones_do_not() -> None:
    source = """
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from ledger.ledger import Ledger
def late():
    from ledger.registry import EntityRegistry
    from . import errors
"""
    modules = {"ledger.registry": Path("x"), "ledger.errors": Path("y"), "ledger.ledger": Path("z")}
    named = check_imports._imports(ast.parse(source), "ledger.model.entity", False, modules)
    assert "ledger.registry" in named
    assert "ledger.model.errors" in named or "ledger.errors" not in named  # relative import resolved
    assert "ledger.ledger" not in named


def test_a_cycle_and_an_upward_import_are_reported() -> None:
    graph = {"ledger.model.entity": {"ledger.ledger"}, "ledger.ledger": {"ledger.model.entity"}, "ledger.errors": set()}
    assert check_imports.cycles(graph) == [["ledger.ledger", "ledger.model.entity"]]
    assert ("ledger.model.entity", "ledger.ledger") in check_imports.upward_imports(graph)


def test_layer_order_matches_the_design() -> None:
    order = ["ledger.errors", "ledger._process", "ledger.model.entity", "ledger.events.seal",
             "ledger.store.keys", "projections.inline", "ledger.write.execution", "ledger.ledger",
             "ledger.cli.commands"]
    ranks = [check_imports.layer_of(m) for m in order]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)


def test_a_wheel_holds_only_the_library_packages(tmp_path) -> None:
    """``pip install .`` must not put a top-level ``tools`` (or ``tests``) into site-packages."""
    # Build from a copy: setuptools reuses a build/ directory, and stale modules left in one
    # by an older checkout would end up in the wheel.
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", ".hypothesis", "*.db*"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {done.stderr.strip().splitlines()[-1:]}")
    (wheel,) = tmp_path.glob("*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"ledger", "projections"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "ledger/cli/__init__.py" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ledger = ledger.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
