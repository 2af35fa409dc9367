"""The run record: which code ran, who ran it, where and when, for every execution.

An auditor asking "who ran which code on what, and why did it fail" needs, on every
``execution.completed`` / ``execution.failed`` / ``execution.reexecuted`` record, the facts
built here (stored flat in the event body; ``ledger.events.bodies._RunRecorded``):

- the code: ``function_version`` (the SHA-256 of name and source memoization already uses),
  the importable ``module`` and ``qualname``, the ``source_file``, and where that file sits in
  a git checkout, the ``git_commit`` of HEAD and ``git_dirty`` (the checkout had uncommitted
  changes to tracked files);
- the actor (``Ledger(url, actor=...)``, ``Ledger.acting_as``; default ``"<OS user>@<host>"``)
  and the process: ``host``, ``pid``, ``python_version``, ``ledger_version``;
- ``started_at`` / ``finished_at`` (UTC, microseconds), set by the caller of ``run_fields``.

Cost: ``execute`` is a hot path, so everything that does not change within a process is
computed once. The code facts are cached per function (reading the source, hashing it and
asking git cost milliseconds once); git is asked once per checkout per process (HEAD and its
ref read from ``.git`` directly, one ``git status`` subprocess for dirtiness), so a file edited
and committed while the process runs is still reported as it was when first asked: the record
says what the process loaded, which is what ran. The process facts are cached per pid (a
forked worker has its own). Per call this module only builds one dict.
"""

from __future__ import annotations

import getpass
import inspect
import os
import platform
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from ledger import _process
from ledger.write.arguments import function_version
from ledger.write.functions import FunctionMetadata

__all__ = ["code_facts", "default_actor", "git_facts", "process_facts", "run_fields"]

_lock = threading.Lock()


def default_actor() -> str:
    """``"<OS user>@<host>"``: who runs executions when no actor was given."""
    facts = process_facts()
    return f"{facts['user']}@{facts['host']}"


def process_facts() -> dict[str, Any]:
    """host, pid, Python and entity-ledger versions of this process (cached per pid)."""
    pid = os.getpid()
    cached = _process.run_process_facts
    if cached.get("pid") == pid:
        return cached
    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container with an unknown uid): say so rather than fail the call
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ledger_version: str | None = version("entity-ledger")
        except PackageNotFoundError:  # running from a source tree that was never installed
            ledger_version = None
    except ImportError:  # pragma: no cover - importlib.metadata is in every supported Python
        ledger_version = None
    facts = {
        "pid": pid,
        "user": user,
        "host": socket.gethostname(),
        "python_version": platform.python_version(),
        "ledger_version": ledger_version,
    }
    _process.run_process_facts.clear()
    _process.run_process_facts.update(facts)
    return _process.run_process_facts


def code_facts(meta: FunctionMetadata) -> dict[str, Any]:
    """function_version, module, qualname, source_file, git_commit, git_dirty of one
    registered function; computed on its first call and cached with the function."""
    key = (meta.name, id(meta.func), meta.unpack)
    found = _process.run_code_facts.get(key)
    if found is not None and found[0] is meta.func:
        return found[1]
    target = inspect.unwrap(meta.func)
    try:
        source_file: str | None = inspect.getsourcefile(target)
    except TypeError:  # a builtin or a callable object without a file
        source_file = None
    if source_file is not None:  # "<string>" (python -c), "<stdin>": no file to point at
        source_file = os.path.abspath(source_file) if os.path.isfile(source_file) else None
    facts: dict[str, Any] = {
        "function_version": meta.version or function_version(meta.name, meta.func, meta.unpack),
        "module": getattr(target, "__module__", None),
        "qualname": getattr(target, "__qualname__", None),
        "source_file": source_file,
        "git_commit": None,
        "git_dirty": None,
    }
    if source_file is not None:
        facts.update(git_facts(source_file))
    with _lock:
        _process.run_code_facts[key] = (meta.func, facts)
    return facts


def git_facts(path: str) -> dict[str, Any]:
    """``git_commit`` (HEAD of the checkout holding ``path``) and ``git_dirty`` (tracked files
    changed in that checkout); both None outside a checkout. Cached per checkout per process."""
    root = _checkout_of(Path(path).resolve().parent)
    if root is None:
        return {"git_commit": None, "git_dirty": None}
    key = str(root)
    found = _process.run_git_facts.get(key)
    if found is not None:
        return found
    facts = {"git_commit": _head_commit(root), "git_dirty": _dirty(root)}
    with _lock:
        _process.run_git_facts[key] = facts
    return facts


def _checkout_of(directory: Path) -> Path | None:
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _git_dirs(root: Path) -> tuple[Path, Path] | None:
    """(the checkout's git directory, the common one holding shared refs): differ in a worktree."""
    dot_git = root / ".git"
    if dot_git.is_dir():
        return dot_git, dot_git
    try:
        text = dot_git.read_text().strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    git_dir = (root / text.partition(":")[2].strip()).resolve()
    common = git_dir
    try:
        common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
    except OSError:
        pass
    return git_dir, common


def _head_commit(root: Path) -> str | None:
    """HEAD's commit, read from the files (no subprocess): a loose ref, then packed-refs."""
    dirs = _git_dirs(root)
    if dirs is None:
        return None
    git_dir, common = dirs
    try:
        head = (git_dir / "HEAD").read_text().strip()
    except OSError:
        return None
    if not head.startswith("ref:"):
        return head or None  # a detached HEAD holds the commit itself
    ref = head.partition(":")[2].strip()
    for base in (git_dir, common):
        try:
            return (base / ref).read_text().strip() or None
        except OSError:
            continue
    try:
        for line in (common / "packed-refs").read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha
    except OSError:
        pass
    return None


def _dirty(root: Path) -> bool | None:
    """Whether tracked files differ from HEAD (one ``git status``); None when git cannot say."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return bool(done.stdout.strip())


def run_fields(meta: FunctionMetadata, actor: str, started_at: Any, finished_at: Any) -> dict[str, Any]:
    """The run record of one call of ``meta`` (``bodies.RUN_FIELDS``)."""
    proc = process_facts()
    return {
        **code_facts(meta),
        "actor": actor,
        "host": proc["host"],
        "pid": proc["pid"],
        "python_version": proc["python_version"],
        "ledger_version": proc["ledger_version"],
        "started_at": started_at,
        "finished_at": finished_at,
    }
