"""Every Python block under ``docs/`` runs as a reader would run it.

A page is read in sessions: one interpreter in which a session's blocks run in order, sharing
their names, in a fresh directory. A page is one session unless it says otherwise: a line
``<!-- session: NAME -->`` starts a new session for the blocks after it. A block whose first
line is ``# NAME.py`` is a file the reader saves beside the others (a module a later block or a
worker process imports); one whose first line is ``# NAME.py: python NAME.py`` is also a
script the reader runs, after the page's files are saved (the process-pool and Dask examples).
A session whose code names the PostgreSQL URL ``PG_EXAMPLE`` runs against a throw-away schema
where a server answers and is otherwise skipped with the reason; nothing is skipped silently.
Blocks show what the reader sees with ``print`` and a comment, or with ``assert``; ``EXPECTED``
holds the printed lines a session must show.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import PG_BASE, PG_SKIP_REASON, drop_pg_schema

DOCS = Path(__file__).resolve().parent.parent / "docs"
PG_EXAMPLE = "postgresql://postgres@127.0.0.1:5432/test?schema=audit"
BLOCK = re.compile(r"^<!-- session: (?P<session>[\w-]+) -->$|^```python\n(?P<code>.*?)^```", re.S | re.M)
FILE_LINE = re.compile(r"^# (?P<name>\w+\.py)(?P<script>: python \1)?$")

#: (page, session) -> lines its run must print.
EXPECTED: dict[tuple[str, str], list[str]] = {
    ("python-api.md", "main"): [
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
        "6 [1, 3, 6]",
    ],
    ("python-api.md", "run_map.py"): ["[3.25, 4.0]"],
    ("python-api.md", "run_dask.py"): ["[3.0, 3.25, 3.5]"],
    ("reactions.md", "main"): [
        "report at position 16",
        "report at position 34",
        "14 ['execution.completed', 'student.processed']",
    ],
}


@dataclass
class Page:
    """One docs page cut into what the reader saves, runs in sessions, and runs as scripts."""

    path: Path
    sessions: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    scripts: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Page:
        page = cls(path)
        session = "main"
        for match in BLOCK.finditer(path.read_text()):
            if match["session"]:
                session = match["session"]
                continue
            code = match["code"]
            first = FILE_LINE.match(code.splitlines()[0]) if code.strip() else None
            if first:
                page.files[first["name"]] = code
                if first["script"]:
                    page.scripts.append(first["name"])
            else:
                page.sessions.setdefault(session, []).append(code)
        return page


PAGES = [Page.read(p) for p in sorted(DOCS.glob("*.md"))]
SESSIONS = [(page, name) for page in PAGES for name in page.sessions]
SCRIPTS = [(page, name) for page in PAGES for name in page.scripts]


def _run(argv: list[str], cwd: Path, what: str) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{what}:\n{result.stderr}"
    return result.stdout


def _check_expected(page: Page, name: str, out: str) -> None:
    lines = out.splitlines()
    for line in EXPECTED.get((page.path.name, name), []):
        assert line in lines, f"{page.path.name} [{name}] should print {line!r}; printed:\n{out}"


@pytest.mark.parametrize(("page", "session"), SESSIONS, ids=[f"{p.path.name}:{s}" for p, s in SESSIONS])
def test_session_runs_in_one_interpreter(page: Page, session: str, tmp_path: Path) -> None:
    code = "\n".join(page.sessions[session])
    for name, text in page.files.items():
        (tmp_path / name).write_text(text)
    if PG_EXAMPLE not in code:
        _check_expected(page, session, _run([sys.executable, "-c", code], tmp_path, f"{page.path.name} [{session}]"))
        return
    if PG_SKIP_REASON is not None:
        pytest.skip(f"{page.path.name} [{session}] needs PostgreSQL: {PG_SKIP_REASON}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        code = code.replace(PG_EXAMPLE, f"{PG_BASE.split('?')[0]}?schema={schema}")
        _check_expected(page, session, _run([sys.executable, "-c", code], tmp_path, f"{page.path.name} [{session}]"))
    finally:
        drop_pg_schema(schema)


@pytest.mark.parametrize(("page", "script"), SCRIPTS, ids=[f"{p.path.name}:{s}" for p, s in SCRIPTS])
def test_script_runs_beside_the_page_files(page: Page, script: str, tmp_path: Path) -> None:
    for name, text in page.files.items():
        (tmp_path / name).write_text(text)
    _check_expected(page, script, _run([sys.executable, script], tmp_path, f"{page.path.name} {script}"))


def test_every_expectation_names_a_session_or_script() -> None:
    known = {(p.path.name, s) for p, s in SESSIONS} | {(p.path.name, s) for p, s in SCRIPTS}
    assert set(EXPECTED) <= known, set(EXPECTED) - known


def test_every_test_file_the_docs_name_exists() -> None:
    """A page that cites a test as proof names a file that is there (tests move with their modules)."""
    root = DOCS.parent
    cited = {m for page in [root / "README.md", *DOCS.glob("*.md")] for m in re.findall(r"tests/test_\w+\.py", page.read_text())}
    assert cited and not [c for c in sorted(cited) if not (root / c).exists()]
