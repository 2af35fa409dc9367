"""Small helpers shared by the benchmark scripts in this folder (not a test module)."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence

NS = 1_000_000_000


def machine() -> str:
    """One line naming the machine: cores, CPU model, Python and library versions."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for mod in ("eventsourcing", "pydantic", "orjson", "psycopg"):
        try:
            from importlib.metadata import version

            versions.append(f"{mod} {version(mod)}")
        except Exception:  # noqa: BLE001 - a missing package is only not reported
            pass
    import sqlite3

    return (
        f"nproc={os.cpu_count()} · CPU: {cpu} · Python {platform.python_version()} "
        f"({sys.implementation.name}) · SQLite {sqlite3.sqlite_version} · " + ", ".join(versions)
    )


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by nearest rank on sorted data."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_rate(x: float) -> str:
    if x != x:  # nan
        return "–"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def fmt_us(ns: float) -> str:
    if ns != ns:
        return "–"
    us = ns / 1000
    if us >= 10_000:
        return f"{us / 1000:.1f} ms"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


class Clock:
    """Wall time of a whole script, for the closing line."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter_ns()

    def elapsed_s(self) -> float:
        return (time.perf_counter_ns() - self.t0) / NS


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class GCTimer:
    """Time spent in the garbage collector while installed (via ``gc.callbacks``)."""

    def __init__(self) -> None:
        self.ns = 0
        self.count = 0
        self._t = 0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t = time.perf_counter_ns()
        else:
            self.ns += time.perf_counter_ns() - self._t
            self.count += 1

    def __enter__(self) -> GCTimer:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)
