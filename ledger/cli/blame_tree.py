"""``ledger blame`` drawn as a tree: one line per value, its origin, and what it was computed from.

In a terminal it is a rich ``Tree`` (long lines wrap, nothing is cut). Piped, it is
plain text, one node per line with the same guides, never wrapped, so ``grep`` and
``> file`` see every id whole (the rules of ``ledger.cli.render``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.text import Text
from rich.tree import Tree

from ledger.cli.render import to_json
from projections.lineage import entity_label
from projections.provenance import Provenance

__all__ = ["BlameTree", "node_line", "value_text"]


def value_text(value: Any) -> str:
    """A blamed value for one line: an entity as ``<Type ecs_id>`` (its data is in ``--format json``), else compact JSON."""
    if isinstance(value, dict) and "entity_type" in value and "ecs_id" in value:
        return f"<{entity_label(str(value['entity_type']))} {value['ecs_id']}>"
    return to_json(value, indent=False)


def node_line(node: Provenance) -> str:
    """``param: @address = value  <- how it was written, in which version``."""
    what = f"{entity_label(node.entity_type)} version {node.version} at position {node.position}"
    if node.origin == "execution":
        how = f"written by {node.function}() execution {node.execution_id}: {what}"
    else:
        how = f"{node.origin}: {what}"
    head = f"{node.param}: " if node.param else ""
    tail = ""
    if node.truncated:
        tail = " (its inputs are deeper than --depth)"
    elif node.repeated:
        tail = " (its inputs are blamed above)"
    return f"{head}{node.address} = {value_text(node.value)}  <- {how}{tail}"


class BlameTree:
    """A rich renderable that picks its layout when printed (see the module docstring)."""

    def __init__(self, root: Provenance) -> None:
        self.root = root

    def plain_lines(self) -> Iterator[str]:
        """The tree as text lines with ``├── `` / ``└── `` guides."""
        yield node_line(self.root)
        yield from self._children(self.root, "")

    def _children(self, node: Provenance, indent: str) -> Iterator[str]:
        for i, child in enumerate(node.sources):
            last = i == len(node.sources) - 1
            yield f"{indent}{'└── ' if last else '├── '}{node_line(child)}"
            yield from self._children(child, indent + ("    " if last else "│   "))

    def _tree(self, node: Provenance, tree: Tree | None = None) -> Tree:
        label = Text(node_line(node))  # Text: a value is never read as rich markup
        branch = Tree(label, guide_style="dim") if tree is None else tree.add(label)
        for child in node.sources:
            self._tree(child, branch)
        return branch

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not console.is_terminal:
            for line in self.plain_lines():
                yield Segment(line)
                yield Segment.line()
            return
        yield self._tree(self.root)
