"""Every Python block of README.md runs as a reader would run it.

The README is the front door: one library example, run here in one interpreter in a fresh
directory, printing what its comments say. The blocks of the pages under ``docs/`` are run by
``tests/test_docs.py``, the CLI walkthrough's shell lines by ``tests/test_cli_demo.py``.
A block added to the README fails ``test_every_block_is_planned`` until this test says how
it runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)


def test_every_block_is_planned() -> None:
    assert len(BLOCKS) == 1
    assert BLOCKS[0].splitlines()[0] == "from ledger import Entity, EntityRegistry, connect"


def test_library_example_prints_what_its_comments_say(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", BLOCKS[0]], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["2", "{'grades.0.score': (3.0, 3.5)}", "3.0"]
    assert lines[-1] == "True"


def test_readme_is_a_front_door() -> None:
    """At most 300 lines, and every page it links to exists."""
    assert README.count("\n") <= 300
    root = Path(__file__).resolve().parent.parent
    for link in re.findall(r"\]\(((?:docs/)?[\w./-]+\.(?:md|png))\)", README):
        assert (root / link).exists(), link
