"""The ``ledger`` command sits on the public API: it imports nothing the library keeps internal.

Issue 10: a CLI that reads the inline index or the store directly breaks whenever
they change, and hides what the public API lacks. So every import in
``ledger/cli/*.py`` (late ones included) must name the ``ledger`` package's
exports, ``ledger.errors``, ``ledger.cli.*``, ``projections.*``, or a module
outside this project (the standard library, typer, rich, duckdb, ...).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import ledger

ROOT = Path(__file__).resolve().parents[1]
CLI_FILES = sorted((ROOT / "ledger" / "cli").rglob("*.py"))  # ledger/cli/ui/ too
#: The project's own top-level packages; anything else is stdlib or third-party.
OWN_PACKAGES = {path.parent.name for path in ROOT.glob("*/__init__.py")}
#: Attributes of a ``Ledger`` that are its internals, however public their spelling.
LEDGER_INTERNALS = {"index", "store", "registry"}


def imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names) for every import statement in the file; names empty for ``import m``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            yield node.lineno, module, [alias.name for alias in node.names]


def problem(module: str, names: list[str]) -> str | None:
    """Why this import is not allowed in the CLI, or None when it is."""
    if module.startswith("."):
        return "relative import (the project uses absolute imports)"
    top = module.split(".")[0]
    if top not in OWN_PACKAGES:
        return None  # stdlib or third-party
    if module == "ledger":
        hidden = [n for n in names if n not in ledger.__all__]
        return f"names not in ledger.__all__: {hidden}" if hidden else None
    if module in ("ledger.errors", "ledger.proofs") or module.startswith("ledger.cli"):  # ledger.proofs: public (API.md, "Proofs")
        return None
    if module == "projections" or module.startswith("projections."):
        private = [n for n in names if n.startswith("_")]
        return f"private names {private}" if private else None
    return "an internal module (use names exported by `ledger`, `ledger.errors` or `projections.*`)"


class TestCliImports:
    def test_the_cli_modules_are_found(self) -> None:
        """The check looks at the real files (an empty glob would pass anything)."""
        assert {p.name for p in CLI_FILES} >= {"commands.py", "render.py", "demo.py", "demo_pipeline.py"}
        assert {"ledger", "projections"} <= OWN_PACKAGES

    @pytest.mark.parametrize("path", CLI_FILES, ids=lambda p: p.name)
    def test_only_public_api_and_projections(self, path: Path) -> None:
        """Every import, late ones included, names a public module or a module outside the project."""
        bad = [
            f"{path.name}:{line}: {module} ({why})"
            for line, module, names in imports(path)
            if (why := problem(module, names)) is not None
        ]
        assert not bad, "\n".join(bad)

    @pytest.mark.parametrize("path", CLI_FILES, ids=lambda p: p.name)
    def test_no_ledger_internals_are_read(self, path: Path) -> None:
        """No ``led.index`` / ``led.store`` / ``led.registry``: reads go through ``projections.audit``."""
        tree = ast.parse(path.read_text(), str(path))
        bad = [
            f"{path.name}:{node.lineno}: .{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in LEDGER_INTERNALS
        ]
        assert not bad, "\n".join(bad)

    @pytest.mark.parametrize(
        "module, names, allowed",
        [
            ("typer", [], True),
            ("rich.table", ["Table"], True),
            ("ledger", ["Ledger", "Digest"], True),
            ("ledger.errors", ["LedgerError"], True),
            ("ledger.cli.render", [], True),
            ("projections.audit", ["history"], True),
            ("ledger", ["Ledger", "InlineIndex"], False),
            ("ledger.registry", ["as_uuid"], False),
            ("ledger.store.event_store", ["EventStore"], False),
            ("ledger.write.calls", ["execute_on"], False),
            ("projections.inline", ["_uuid"], False),
            ("tools.bench", [], False),
            (".render", ["history_table"], False),
        ],
    )
    def test_the_rule_itself(self, module: str, names: list[str], allowed: bool) -> None:
        """The rule accepts the public surface and refuses the imports the CLI used to make."""
        assert (problem(module, names) is None) is allowed
