"""The library type-checks: ``mypy --strict`` on ``ledger`` and ``projections`` (issue 27).

The settings live in ``pyproject.toml`` (``[tool.mypy]``), so this runs the same check a
maintainer runs with a bare ``mypy`` at the repository root. It is slow (a cold run reads
the typeshed and every dependency's stubs), so it is in ``conftest.SLOW``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_strict_finds_nothing() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout, done.stdout
