"""Start ``tests.scale_worker`` processes together and collect what each reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from ledger import Ledger
from ledger.store import EventStore

ROOT = Path(__file__).resolve().parent.parent


def spawn(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.scale_worker", *map(str, args)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_together(arg_lists: list[list[object]], timeout: float = 300) -> list[dict[str, Any]]:
    """Start one process per argument list, release them at once, return their JSON reports."""
    procs = [spawn(*args) for args in arg_lists]
    try:
        for p in procs:
            line = p.stdout.readline()  # type: ignore[union-attr]
            assert line.strip() == "ready", f"worker did not start: {line!r} {p.stderr.read()}"  # type: ignore[union-attr]
        for p in procs:
            p.stdin.write("go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        reports = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


# ------------------------------------------------------------ killed writers (crash tests)
def kill_after(proc: subprocess.Popen[str], count: int, *, timeout: float, pause: float = 0.0) -> int:
    """Read the worker's progress lines (a running count) until it reports ``count``, wait ``pause``
    seconds (to land inside its next write), SIGKILL it and check that the kill is what ended it;
    returns the last count it reported."""
    try:
        done = 0
        deadline = time.monotonic() + timeout
        while done < count and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, proc.stderr.read()  # type: ignore[union-attr]
            done = int(line)
        if pause:
            time.sleep(pause)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return done


def assert_index_whole(url: str) -> None:
    """The killed writer's index rows went with its events: before anything catches up (a read-only
    open writes nothing), the stored index is whole and matches the log."""
    store = EventStore(url, create=False)
    try:
        assert store.index_caught_up()
        assert store.stored_index() == store.rebuilt_index()
    finally:
        store.close()


def batches(led: Ledger) -> tuple[Counter[str], dict[str, int]]:
    """Per batch id: how many records the log holds, and how many the batch said it had."""
    seen: Counter[str] = Counter()
    sizes: dict[str, int] = {}
    for n in led.store.iter_all():
        body = orjson.loads(n.state)
        seen[body["batch_id"]] += 1
        sizes[body["batch_id"]] = body["batch_size"]
    return seen, sizes


def whole_batches(led: Ledger) -> bool:
    """The log holds some batches, each whole."""
    seen, sizes = batches(led)
    return bool(seen) and all(seen[b] == sizes[b] for b in seen)
