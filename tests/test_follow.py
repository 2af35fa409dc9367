"""A follower name is held by one follower at a time, across processes: no event is delivered twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.errors import FollowerHeldError

from .models import Student

ROOT = Path(__file__).resolve().parent.parent

#: Follows "ship" and writes each delivered position to OUT, one line each; prints "held" or
#: "refused: <error>"; then waits to be killed (or exits when told "stop" on stdin).
WORKER = textwrap.dedent(
    """
    import sys
    from ledger import Ledger
    from ledger.errors import FollowerHeldError
    url, out = sys.argv[1], sys.argv[2]
    led = Ledger(url)
    def ship(fact):
        with open(out, "a") as f:
            f.write(f"{fact.position}\\n")
    try:
        led.follow("ship", ship)
    except FollowerHeldError as exc:
        print("refused:", exc, flush=True)
        sys.exit(3)
    print("held", flush=True)
    sys.stdin.readline()
    led.close()
    """
)


def worker(url: str, out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, url, str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def append(url: str, n: int) -> int:
    with Ledger(url) as led:
        for i in range(n):
            led.registry.register_entity(Student(name=f"s{i}", gpa=1.0))
        return led.store.head()


def delivered(out: Path) -> list[int]:
    return [int(line) for line in out.read_text().split()] if out.exists() else []


def wait_for(predicate: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


class TestOneFollowerPerName:
    def test_a_second_process_is_refused_and_takes_over_after_a_kill(self, durable_url: str, tmp_path: Path) -> None:
        """The second follower of a name fails with one clear line; once the first is killed, it takes
        over from the last acknowledged position and delivers nothing twice."""
        head = append(durable_url, 5)
        out = tmp_path / "shipped.txt"
        first = worker(durable_url, out)
        try:
            assert first.stdout is not None and first.stdout.readline().strip() == "held"
            second = worker(durable_url, out)
            stdout, _ = second.communicate(timeout=120)
            assert second.returncode == 3
            assert stdout.startswith("refused: name: follower 'ship' of ") and "is held by another follower" in stdout
            head = append(durable_url, 3)
            wait_for(lambda: delivered(out)[-1:] == [head])
            with Ledger(durable_url) as led:  # acknowledged after the page
                wait_for(lambda: led.store.follower_position("ship") == head)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(60)
        third = worker(durable_url, out)
        try:
            assert third.stdout is not None and third.stdout.readline().strip() == "held"
            head = append(durable_url, 2)
            wait_for(lambda: delivered(out)[-1:] == [head])
        finally:
            assert third.stdin is not None
            third.stdin.write("stop\n")
            third.stdin.flush()
            third.wait(60)
        positions = delivered(out)
        assert positions == sorted(set(positions)) and len(positions) == head  # each once, in order

    def test_in_one_process_two_ledgers_cannot_follow_one_name(self, store_url: str) -> None:
        """Two Ledger objects on the same store: the second follow is refused; after close the name is free."""
        if store_url == "memory://":
            pytest.skip("two memory:// ledgers are two stores")
        append(store_url, 1)
        with Ledger(store_url) as a, Ledger(store_url) as b:
            a.follow("ship", lambda fact: None)
            with pytest.raises(FollowerHeldError, match="follower 'ship'"):
                b.follow("ship", lambda fact: None)
            a.unfollow("ship")
            assert b.follow("ship", lambda fact: None).running
