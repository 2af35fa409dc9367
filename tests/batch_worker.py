"""A writer for the crash test of ``with led.batch():``: executions in one endless block,
committed every ``flush_events`` events; prints how many executions have run so far."""

from __future__ import annotations

import sys

from ledger import CallableRegistry, Entity, Ledger
from ledger.write.calls import execute_on


class CrashCounter(Entity):
    n: int = 0


@CallableRegistry.register("crash_make")
def crash_make(n: int) -> CrashCounter:
    return CrashCounter(n=n)


@CallableRegistry.register("crash_bump")
def crash_bump(c: CrashCounter) -> CrashCounter:
    c.n += 1
    return c


def main(url: str, flush_events: int) -> None:
    led = Ledger(url)
    done = 0
    with led.batch(flush_events=flush_events):
        while True:
            made = execute_on(led, "crash_make", n=done)
            execute_on(led, "crash_bump", c=made)
            done += 1
            print(done, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
