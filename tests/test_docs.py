"""Every Python block of every page under ``docs/`` runs as a reader would run it.

A page is one reader session: its blocks run in order in one interpreter, in a fresh
directory, sharing their names. A block whose first line is ``# file: NAME.py`` is a file
the reader saves beside the others (a module a later block imports) rather than runs. A
block fails the test by raising (pages use ``assert`` to say what the reader sees).
A page whose blocks need PostgreSQL says so with a first line ``<!-- needs: postgresql -->``
and is skipped with the reason where no server answers; its blocks read the server's URL
from the ``LEDGER_TEST_PG`` environment variable, which the test sets.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_BASE, PG_SKIP_REASON

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def blocks_of(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)


@pytest.mark.parametrize("page", [p for p in PAGES if blocks_of(p)], ids=lambda p: p.name)
def test_page_runs_in_one_interpreter(page: Path, tmp_path: Path) -> None:
    text = page.read_text()
    if text.startswith("<!-- needs: postgresql -->") and PG_SKIP_REASON is not None:
        pytest.skip(f"{page.name} needs PostgreSQL: {PG_SKIP_REASON}")
    run: list[str] = []
    for block in blocks_of(page):
        first = block.splitlines()[0] if block.strip() else ""
        if first.startswith("# file: "):
            (tmp_path / first.removeprefix("# file: ").strip()).write_text(block)
        else:
            run.append(block)
    env = {**os.environ, "LEDGER_TEST_PG": PG_BASE}
    result = subprocess.run(
        [sys.executable, "-c", "\n".join(run)], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, f"{page.name}:\n{result.stderr}"
