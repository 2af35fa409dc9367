"""Follower processes for tests/test_reactions.py (``spawn(MODE, URL, NAME)``).

- ``ship``: follow ``NAME`` and, for each ``Order`` registered, execute ``ship`` on it (a write
  to the same ledger: exactly once). Prints the order id after each shipment; exits 0 after
  ``follow`` returned (everything the log held was handled).
- ``watch``: follow ``NAME`` without writing; prints ``ready`` after the catch-up, reads a
  target position on stdin, waits until the follower has passed it, prints the JSON list of
  the positions it was handed, exits 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from ledger import CallableRegistry, Entity, connect
from ledger.reactions import LedgerFact


class Order(Entity):
    item: str


class Shipment(Entity):
    item: str


@CallableRegistry.register("ship")
def ship(order: Order) -> Shipment:
    return Shipment(item=order.item)


def run_ship(url: str, name: str) -> None:
    led = connect(url)

    def handle(fact: LedgerFact) -> None:
        if fact.subject_type is Order:
            CallableRegistry.execute("ship", order=f"@{fact.subject_id}")
            print(fact.subject_id, flush=True)

    led.follow(name, handle, types=["entity.registered"])
    led.close()


def run_watch(url: str, name: str) -> None:
    led = connect(url)
    positions: list[int] = []
    follower = led.follow(name, lambda fact: positions.append(fact.position))
    print("ready", flush=True)
    target = int(sys.stdin.readline())
    while follower.position < target:  # the follower's thread delivers the rest
        time.sleep(0.01)
    led.close()
    print(json.dumps(positions), flush=True)


def main() -> None:
    mode, url, name = sys.argv[1:4]
    {"ship": run_ship, "watch": run_watch}[mode](url, name)


def spawn(*args: str) -> subprocess.Popen[str]:
    """Start a worker; run through ``-c`` so its classes keep this module's topics (not ``__main__``)."""
    return subprocess.Popen(
        [sys.executable, "-c", "from tests.reaction_worker import main; main()", *args],
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
