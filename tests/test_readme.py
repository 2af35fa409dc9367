"""The README's Python examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _section(start: str, end: str) -> str:
    body = README[README.index(start) : README.index(end)]
    return "\n".join(re.findall(r"```python\n(.*?)```", body, re.S))


@pytest.mark.parametrize(
    "start, end",
    [("## The library", "What the foundation gives you"), ("## Functions", "## The `ledger` command")],
    ids=["library", "functions"],
)
def test_readme_examples_run(start: str, end: str, tmp_path: Path) -> None:
    code = _section(start, end).replace("sqlite:///audit.db", f"sqlite:///{tmp_path / 'audit.db'}")
    assert code.strip()
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
