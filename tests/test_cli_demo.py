"""``ledger demo`` fills the store every command reads, and docs/cli.md's walkthrough is a real run.

The walkthrough (docs/cli.md, from "### `ledger demo`" to the end of the page) is a list of
``$ ledger ...`` lines, each followed by its output. ``test_readme_walkthrough_runs_literally``
types those lines, in order, through the installed console script, piped, at COLUMNS=80, in a
new directory with ``LEDGER_URL=sqlite:///demo.db`` (the README's ``export``), and compares each
printed output with the page: line for line after masking clock values (timestamps, durations,
events/s); a ``...`` line on the page stands for any number of lines left out. The demo's ids
are seeded (``ledger.cli.demo.SEED``), so every id the page prints must work.

To regenerate the page's outputs after changing the demo or a command's output:
``python tests/test_cli_demo.py`` prints each command with its real output.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
SCRIPT = Path(sys.executable).parent / "ledger"
WALKTHROUGH_START = "### `ledger demo`"
_CLOCK = [
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"\d+(\.\d+)? (µs|ms|s)\b"), "<duration>"),
    (re.compile(r"\([\d,]+ events/s\)"), "(<rate>)"),
]


def mask(text: str) -> str:
    for pattern, repl in _CLOCK:
        text = pattern.sub(repl, text)
    return text


def walkthrough() -> list[tuple[str, list[str]]]:
    """(command line after ``$ ``, the page's output lines) for each ``$ ledger`` line, in order."""
    text = PAGE.read_text()
    body = text[text.index(WALKTHROUGH_START) :]
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"^```\n(.*?)^```", body, re.S | re.M):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
    for _, out in steps:
        while out and not out[-1].strip():
            out.pop()
    return steps


def environment(url: str | None = "sqlite:///demo.db") -> dict[str, str]:
    drop = ("TTY_COMPATIBLE", "FORCE_COLOR", "LEDGER_ANALYTICS", "LEDGER_URL")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["COLUMNS"] = "80"
    if url:
        env["LEDGER_URL"] = url
    return env


def export(command: str, env: dict[str, str]) -> bool:
    """A typed ``export NAME=VALUE`` line: set it in ``env`` as the shell would."""
    if not command.startswith("export "):
        return False
    name, _, value = command.removeprefix("export ").partition("=")
    env[name.strip()] = value.strip()
    return True


def run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One typed line: ``ledger ...`` through the console script (quotes as a shell reads them)."""
    import shlex

    argv = shlex.split(command)
    assert argv[0] == "ledger", command
    return subprocess.run([str(SCRIPT), *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def matches(expected: list[str], actual: list[str]) -> bool:
    """``expected`` (masked) equals ``actual`` (masked), a ``...`` line matching any run of lines."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(matches(rest, actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and mask(head) == mask(actual[0]) and matches(rest, actual[1:])


# --------------------------------------------------------------------- the demo's store
class TestDemoStore:
    def test_fills_the_store_named_by_ledger_url_and_log_reads_it(self, tmp_path: Path) -> None:
        env = environment()
        first = run("ledger demo", tmp_path, env)
        assert first.returncode == 0, first.stderr
        assert (tmp_path / "demo.db").exists()
        log = run("ledger log --type execution.failed", tmp_path, env)
        assert log.returncode == 0 and "school.enroll" in log.stdout, log.stderr

    def test_default_store_is_ledger_db(self, tmp_path: Path) -> None:
        env = environment(None)
        assert run("ledger demo", tmp_path, env).returncode == 0
        assert (tmp_path / "ledger.db").exists()
        assert "school.enroll" in run("ledger log -n 100", tmp_path, env).stdout

    def test_db_option_wins_over_ledger_url(self, tmp_path: Path) -> None:
        result = run("ledger demo --db sqlite:///other.db", tmp_path, environment())
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "other.db").exists() and not (tmp_path / "demo.db").exists()
        assert result.stdout.rstrip().endswith("--db sqlite:///other.db")

    def test_a_store_with_events_is_refused_in_one_line_and_left_as_it_was(self, tmp_path: Path) -> None:
        env = environment()
        assert run("ledger demo", tmp_path, env).returncode == 0
        files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
        again = run("ledger demo", tmp_path, env)
        assert again.returncode == 1 and again.stdout == ""
        assert again.stderr.count("\n") == 1 and "already holds 81 events" in again.stderr
        assert "Traceback" not in again.stderr
        assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()} == files

    def test_ids_are_the_same_on_every_fresh_run_and_the_id_source_is_put_back(self, tmp_path: Path) -> None:
        from ledger import _process
        from ledger.cli.demo import build_demo

        def ids(name: str) -> list[str]:
            before = _process._new_id
            result = build_demo(f"sqlite:///{tmp_path / name}")
            assert _process._new_id is before
            with result.ledger as led:
                return [str(row[0]) for row in led.sql("select ecs_id from entity_versions order by position").fetchall()]

        first, second = ids("a.db"), ids("b.db")
        assert first == second and len(set(first)) == len(first) == 67
        assert _process.mint() not in {_process.mint() for _ in range(3)}  # random again afterwards


# --------------------------------------------------------------------- the docs/cli.md walkthrough
def test_readme_walkthrough_runs_literally(tmp_path: Path) -> None:
    steps = walkthrough()
    assert [c for c, _ in steps[:2]] == ["export LEDGER_URL=sqlite:///demo.db", "ledger demo"] and len(steps) >= 15
    env = environment(None)
    failures = []
    for command, expected in steps:
        if export(command, env):
            continue
        result = run(command, tmp_path, env)
        want_error = bool(expected) and expected[0].startswith("error:")
        printed = (result.stderr if want_error else result.stdout).splitlines()
        assert result.returncode == (1 if want_error else 0), f"$ {command}\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        if not matches(expected, printed):
            failures.append(f"$ {command}\n--- docs/cli.md\n" + "\n".join(expected) + "\n--- real run\n" + "\n".join(printed))
    assert not failures, "\n\n".join(failures)


def _print_real_outputs() -> None:  # pragma: no cover - a tool for whoever edits docs/cli.md
    import tempfile

    env = environment(None)
    with tempfile.TemporaryDirectory() as tmp:
        for command, _ in walkthrough():
            if export(command, env):
                print(f"$ {command}")
                continue
            result = run(command, Path(tmp), env)
            print(f"$ {command}")
            print((result.stdout + result.stderr).rstrip())
            print()


if __name__ == "__main__":  # pragma: no cover
    _print_real_outputs()
