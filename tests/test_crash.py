"""A writer SIGKILLed mid-stream leaves only whole batches; the ledger replays and goes on."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import orjson

from ledger import CallableRegistry, Ledger, set_default_ledger
from ledger.store import EventStore

from .scale_worker import Tally
from .writer_procs import spawn

KILL_AFTER = 15  # finished make+bump pairs before the kill


def batches(led: Ledger) -> tuple[Counter[str], dict[str, int]]:
    seen: Counter[str] = Counter()
    sizes: dict[str, int] = {}
    for n in led.store.iter_all():
        body = orjson.loads(n.state)
        seen[body["batch_id"]] += 1
        sizes[body["batch_id"]] = body["batch_size"]
    return seen, sizes


class TestCrashSafety:
    def test_sigkill_mid_stream(self, durable_url) -> None:
        Ledger(durable_url).close()  # tables exist before the writer starts
        proc = spawn("stream", durable_url, 7)
        try:
            done = 0
            deadline = time.monotonic() + 300
            while done < KILL_AFTER and time.monotonic() < deadline:
                line = proc.stdout.readline()  # type: ignore[union-attr]
                assert line, proc.stderr.read()  # type: ignore[union-attr]
                done = int(line)
            time.sleep(0.003)  # somewhere inside the next execution's writes
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
        assert proc.returncode == -signal.SIGKILL

        # The killed writer's index rows went with its events: before anything catches up
        # (a read-only open writes nothing), the stored index is whole and matches the log.
        store = EventStore(durable_url, create=False)
        try:
            assert store.index_caught_up()
            assert store.stored_index() == store.rebuilt_index()
        finally:
            store.close()

        led = Ledger(durable_url)  # replays what the killed writer left
        seen, sizes = batches(led)
        assert seen and all(seen[b] == sizes[b] for b in seen), "a partial batch was stored"
        report = led.verify()
        assert report.ok, report.problems
        tallies = {r.lineage_id for r in led.index.records.values() if r.topic.endswith("Tally")}
        assert len(tallies) >= KILL_AFTER

        set_default_ledger(led)  # a new writer continues the same log
        try:
            t = CallableRegistry.execute("scale.make", worker=8, n=0)
            assert isinstance(t, Tally)
            assert CallableRegistry.execute("scale.bump", t=t).n == 1
        finally:
            set_default_ledger(None)
        seen2, sizes2 = batches(led)
        assert len(seen2) > len(seen) and all(seen2[b] == sizes2[b] for b in seen2)
        assert led.verify().ok
        assert Ledger(durable_url).verify().ok
        led.close()
