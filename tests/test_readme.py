"""Every Python block of README.md runs as a reader would run it.

A reader works in sessions: one interpreter in which the blocks of a section run in order,
sharing their names (the Functions section's blocks, then the thread-pool ``map`` example
that continues it). A block whose first line is ``# NAME.py`` is a file the reader saves;
one whose first line is ``# NAME.py: python NAME.py`` is also a script the reader runs
(the process-pool and Dask examples, whose workers import ``scores.py``). ``PLAN`` says how
each block runs, in README order; a block added, removed or moved fails
``test_every_block_is_planned`` until the plan says how it runs. No block is skipped
silently: the one PostgreSQL block runs when a server answers and is otherwise skipped
with the reason (``PLAN`` names it).

The CLI walkthrough's shell lines are run by ``tests/test_cli_demo.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import PG_BASE, PG_SKIP_REASON, drop_pg_schema

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)

#: (how, the block's first line) for each Python block, in README order. ``how``: a session
#: name (blocks of one session run in order in one interpreter), ``file``, ``script`` or
#: ``postgresql`` (runs only where LEDGER_TEST_PG answers).
PLAN: list[tuple[str, str]] = [
    ("library", "from ledger import Entity, EntityRegistry, connect"),
    ("upcasting", "from typing import ClassVar"),
    ("functions", "from typing import Optional"),
    ("functions", "# A1 pure references"),
    ("functions", '@CallableRegistry.register("curve")'),
    ("functions", '@CallableRegistry.register("honours", cache=True)'),
    ("functions", "from ledger import EntityRegistry, get_ledger"),
    ("reactions", "import asyncio"),
    ("reactions", "from ledger import get_ledger"),
    ("functions", "# Blame: where did a value come from?"),
    ("postgresql", "import ledger"),
    ("retry", "from ledger.errors import ConcurrencyError"),
    ("functions", "from concurrent.futures import ThreadPoolExecutor"),
    ("file", "# scores.py"),
    ("script", "# run_map.py: python run_map.py"),
    ("script", "# run_dask.py: python run_dask.py"),
    ("erasure", "import tempfile"),
]
SESSIONS = ["library", "upcasting", "functions", "retry", "erasure", "reactions"]


def test_every_block_is_planned() -> None:
    assert len(BLOCKS) == len(PLAN) == 17
    for block, (_, first) in zip(BLOCKS, PLAN):
        assert block.splitlines()[0].startswith(first), (block.splitlines()[0], first)


def _run(argv: list[str], cwd: Path) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("session", SESSIONS)
def test_session_runs_in_one_interpreter(session: str, tmp_path: Path) -> None:
    code = "\n".join(block for block, (how, _) in zip(BLOCKS, PLAN) if how == session)
    assert code.strip()
    out = _run([sys.executable, "-c", code], tmp_path)
    expected = {
        "library": ["2", "{'grades.0.score': (3.0, 3.5)}", "3.0"],
        "functions": [
            "4.0 -> 3.6",
            "{'gpa': (4.0, 3.6)}",
            "[3.5, 4.0]",
            "True Ada: honours",
            "[(False, False), (True, True), (False, False)]",
            "True {}",
            "False {'0.result': (0.19999999999999998, 0.20000000000000098)}",
            "3.75 execution mean",
            "scores score 3.5 registered",
            "True",
        ],
        "reactions": [
            "report at position 16",
            "report at position 34",
            "14 ['execution.completed', 'student.processed']",
        ],
    }.get(session, [])
    lines = out.splitlines()
    for line in expected:
        assert line in lines, out
    if session == "library":
        assert lines[-1] == "True"


def test_scripts_run_with_their_module(tmp_path: Path) -> None:
    """``scores.py`` saved beside the scripts; each script run as ``python NAME.py``."""
    outputs = {}
    for block, (how, first) in zip(BLOCKS, PLAN):
        if how in ("file", "script"):
            name = first.removeprefix("# ").split(":")[0]
            (tmp_path / name).write_text(block)
        if how == "script":
            outputs[name] = _run([sys.executable, name], tmp_path).splitlines()
    assert outputs["run_map.py"][-1] == "[3.25, 4.0]"
    assert outputs["run_dask.py"][-1] == "[3.0, 3.25, 3.5]"


@pytest.mark.skipif(PG_SKIP_REASON is not None, reason=f"README's PostgreSQL block needs a server: {PG_SKIP_REASON}")
def test_postgresql_block(tmp_path: Path) -> None:
    (block,) = [b for b, (how, _) in zip(BLOCKS, PLAN) if how == "postgresql"]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = "postgresql://postgres@127.0.0.1:5432/test?schema=audit"
    assert url in block
    try:
        _run([sys.executable, "-c", block.replace(url, f"{PG_BASE.split('?')[0]}?schema={schema}")], tmp_path)
    finally:
        drop_pg_schema(schema)
