"""Functions, entities and a writer process for the many-writer and crash tests.

Registered at import, so any process that imports this module (a subprocess, a
process pool or a Dask worker) can run them. ``python -m tests.scale_worker
MODE URL ...`` is one writer process; it prints ``ready``, waits for a line on
stdin (so several writers start at the same moment), works, and prints one JSON
line saying what it wrote.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any
from uuid import UUID

from ledger import CallableRegistry, Entity, Ledger, set_default_ledger
from ledger.write.batch import Batch
from ledger.errors import ConcurrencyError


class Counter(Entity):
    value: int = 0


class Tally(Entity):
    worker: int
    n: int


@CallableRegistry.register("scale.make")
def make(worker: int, n: int) -> Tally:
    return Tally(worker=worker, n=n)


@CallableRegistry.register("scale.bump")
def bump(t: Tally) -> Tally:
    t.n += 1
    return t


@CallableRegistry.register("scale.spin")
def spin(x: int, rounds: int = 200_000) -> int:
    """CPU-bound: what a process pool is for."""
    acc = x
    for i in range(rounds):
        acc = (acc * 31 + i) % 1_000_003
    return acc


@CallableRegistry.register("scale.whoami")
def whoami(x: int) -> list[int]:
    """Which process ran the call (a map test proves the work left the parent)."""
    return [x, os.getpid()]


@CallableRegistry.register("scale.fail")
def fail(x: int) -> int:
    if x < 0:
        raise ValueError(f"x: negative input {x}")
    return x


class CountingLedger(Ledger):
    """A ledger that remembers the positions the store gave its own batches."""

    def __init__(self, url: str) -> None:
        self.positions: list[int] = []
        super().__init__(url)

    def commit(self, batch: Batch) -> list[int]:
        positions = super().commit(batch)
        self.positions.extend(positions)
        return positions


def increment(led: Ledger, lineage: UUID) -> int:
    """Add one to the shared counter; the caller's retry loop on ConcurrencyError. Returns retries."""
    retries = 0
    while True:
        c = led.registry.get_latest(lineage)
        c.value += 1
        try:
            led.registry.version_entity(c)
            return retries
        except ConcurrencyError:
            retries += 1  # commit() refreshed the index: the next get_latest sees the winner


def writers(led: CountingLedger, worker: int, n: int, counter: UUID, increments: int) -> dict[str, Any]:
    executions = retries = 0
    for i in range(n):
        t = CallableRegistry.execute("scale.make", worker=worker, n=i)
        CallableRegistry.execute("scale.bump", t=t)
        executions += 2
        if i < increments:
            retries += increment(led, counter)
    return {"positions": led.positions, "executions": executions, "retries": retries}


def race(led: CountingLedger, counter: UUID, worker: int) -> dict[str, Any]:
    c = led.registry.get_latest(counter)  # loaded before the start signal: both see the same head
    _wait_for_start()
    c.value = 100 + worker
    try:
        led.registry.version_entity(c)
        return {"outcome": "won"}
    except ConcurrencyError as exc:
        return {"outcome": "lost", "error": str(exc)}


def stream(worker: int) -> None:
    """Execute forever, one line per finished execution, until killed."""
    i = 0
    while True:
        t = CallableRegistry.execute("scale.make", worker=worker, n=i)
        CallableRegistry.execute("scale.bump", t=t)
        i += 1
        print(i, flush=True)


def follow(led: Ledger, marker: UUID, page: int) -> dict[str, Any]:
    """Read the log as a follower does (from the last position seen + 1, small pages) while
    writers commit, until the marker stream appears; report every position, in reading order."""
    import time

    seen: list[int] = []
    last = 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        got = led.store.read(start=last + 1, limit=page)
        for n in got:
            seen.append(n.id)
            last = n.id
            if n.originator_id == marker:
                return {"seen": seen}
        if not got:
            time.sleep(0.001)
    return {"seen": seen, "timeout": True}


def _wait_for_start() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def main(argv: list[str]) -> None:
    mode, url = argv[0], argv[1]
    if mode == "open":  # opening itself is what runs concurrently: tables are created here
        _wait_for_start()
    led = CountingLedger(url)
    set_default_ledger(led)
    if mode == "writers":
        worker, n, counter, increments = int(argv[2]), int(argv[3]), UUID(argv[4]), int(argv[5])
        _wait_for_start()
        out = writers(led, worker, n, counter, increments)
    elif mode == "race":
        out = race(led, UUID(argv[2]), int(argv[3]))
    elif mode == "open":
        led.registry.register_entity(Counter(value=int(argv[2])))
        out = {"positions": led.positions}
    elif mode == "follow":
        marker, page = UUID(argv[2]), int(argv[3])
        _wait_for_start()
        out = follow(led, marker, page)
    elif mode == "stream":
        stream(int(argv[2]))
        return
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(out), flush=True)
    led.close()


if __name__ == "__main__":
    main(sys.argv[1:])
