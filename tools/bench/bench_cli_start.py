"""Whole-process start-up of the reading commands against the interpreter's own start.

Issue 28's target: a reading command (``ledger log``, ``show``, ``history``) takes at most
5x ``python -c pass``, whole process (start, imports, the command's work, exit). Each
command runs paired with the floor (floor, command, floor, command, ...) so a drift in the
machine's speed hits both; the ratio is taken pair by pair and its median printed, with
the range. The store is the demo's (``ledger demo``), made once in a temporary directory.
Also prints, per command, which heavy modules its process imported (none expected).

    .venv/bin/python tools/bench/bench_cli_start.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGET = 5.0
HEAVY = ("duckdb", "pyarrow", "starlette", "uvicorn", "pydantic", "eventsourcing", "rich", "typer")
#: Runs ``ledger`` in-process as its console script does, then reports the heavy modules it loaded.
PROBE = (
    "import sys, json\nfrom ledger.cli import main\nsys.argv = ['ledger', *sys.argv[1:]]\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    f"sys.stderr.write('LOADED ' + json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one whole run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    try:
        from _benchutil import machine  # type: ignore[import-not-found]

        print(machine())
    except Exception:  # noqa: BLE001 - the helper is optional
        pass
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    env.pop("LEDGER_URL", None)
    tmp = tempfile.mkdtemp(prefix="bench-cli-start-")
    url = f"sqlite:///{tmp}/demo.db"
    from ledger.cli.demo import build_demo

    demo = build_demo(url)
    lineage = str(demo.featured_lineage)
    demo.ledger.close()
    script = Path(sys.executable).with_name("ledger")
    ledger_cmd = [str(script)] if script.exists() else [sys.executable, "-m", "ledger.cli.commands"]
    commands = {
        "ledger log": ["log", "--db", url],
        "ledger show": ["show", f"@{lineage}", "--db", url],
        "ledger history": ["history", lineage, "--db", url],
    }
    floor_cmd = [sys.executable, "-c", "pass"]
    print(
        f"\nTarget (issue 28): a reading command <= {TARGET:g}x `python -c pass`, whole process; "
        f"{args.runs} paired runs each (after one warm-up), medians [min–max]; ratio taken pair by pair.\n"
    )
    print("| command | wall | floor wall | wall ratio | CPU | floor CPU | CPU ratio | heavy modules imported | target |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for name, argv in commands.items():
        probe = subprocess.run([sys.executable, "-c", PROBE, *argv], env=env, capture_output=True, text=True)
        loaded = probe.stderr.rsplit("LOADED ", 1)[-1].strip() if "LOADED " in probe.stderr else "?"
        timed(floor_cmd, env), timed([*ledger_cmd, *argv], env)  # warm-up: page cache, .pyc files
        walls, cpus, fwalls, fcpus = [], [], [], []
        for _ in range(args.runs):
            fw, fc = timed(floor_cmd, env)
            w, c = timed([*ledger_cmd, *argv], env)
            fwalls.append(fw), fcpus.append(fc), walls.append(w), cpus.append(c)
        wr = [w / f for w, f in zip(walls, fwalls)]
        cr = [c / f for c, f in zip(cpus, fcpus) if f > 0]
        ratio = statistics.median(wr)
        print(
            f"| `{name}` | {statistics.median(walls) * 1e3:.0f} ms [{min(walls) * 1e3:.0f}–{max(walls) * 1e3:.0f}] "
            f"| {statistics.median(fwalls) * 1e3:.0f} ms | {ratio:.1f}× [{min(wr):.1f}–{max(wr):.1f}] "
            f"| {statistics.median(cpus) * 1e3:.0f} ms | {statistics.median(fcpus) * 1e3:.0f} ms "
            f"| {statistics.median(cr) if cr else float('nan'):.1f}× | {', '.join(json.loads(loaded)) if loaded != '?' else '?'} "
            f"| {'met' if ratio <= TARGET else 'NOT met'} |"
        )


if __name__ == "__main__":
    main()
