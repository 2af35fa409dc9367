"""A lineage of hundreds of versions, for the lineage picture's tests, screenshot and benchmark.

One ``Account`` is changed ``versions - 1`` times in a pattern a real pipeline has: long
runs of the same function (``apply_discount``), a few hand edits between them, a stretch
where two functions alternate (runs of one, which do not collapse) and a failed execution.
Each change is an execution of a registered function (or a hand edit), so the graph around
every version holds the executions that wrote it, as the demo's do.

    .venv/bin/python tools/long_lineage.py sqlite:///long.db [--versions 300]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ledger  # noqa: E402
from ledger import CallableRegistry, Entity, Ledger  # noqa: E402

__all__ = ["Account", "build_long_lineage"]


class Account(Entity):
    owner: str
    balance: float = 100.0
    discount: float = 0.0
    notes: str = ""


def apply_discount(account: Account) -> Account:
    account.discount = round(account.discount + 0.01, 4)
    return account


def charge_fee(account: Account) -> Account:
    account.balance = round(account.balance - 1.5, 4)
    return account


def audit_account(account: Account) -> Account:
    raise ValueError(f"audit of {account.owner} refused: balance {account.balance} below threshold")


def _register() -> None:
    """Registered when used, not at import: tests reset the process's function table."""
    CallableRegistry.register("billing.apply_discount")(apply_discount)
    CallableRegistry.register("billing.charge_fee")(charge_fee)
    CallableRegistry.register("billing.audit_account")(audit_account)


def build_long_lineage(url: str, versions: int = 300, *, led: Ledger | None = None) -> UUID:
    """Write one ``Account`` lineage of ``versions`` versions into the store at ``url`` (or into
    ``led``); returns its lineage id."""
    own = led is None
    led = led or Ledger(url)
    ledger.set_default_ledger(led)
    try:
        _register()
        acc = Account(owner="Ada")
        led.registry.register_entity(acc)
        for i in range(1, versions):
            phase = i * 10 // versions
            if i % 47 == 0 or i == versions - 1:  # a hand edit now and then, and the last version
                acc.notes = f"checked by hand at step {i}"
                led.registry.version_entity(acc)
            elif phase in (3, 4):  # two functions taking turns: runs of one, nothing collapses
                acc = CallableRegistry.execute("billing.charge_fee" if i % 2 else "billing.apply_discount", account=acc)
            else:
                acc = CallableRegistry.execute("billing.apply_discount", account=acc)
            if i == versions // 2:
                try:
                    CallableRegistry.execute("billing.audit_account", account=acc)
                except ValueError:
                    pass  # recorded as a failed execution, as it should be
        return acc.lineage_id
    finally:
        ledger.set_default_ledger(None)
        if own:
            led.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--versions", type=int, default=300)
    args = ap.parse_args()
    print(build_long_lineage(args.url, args.versions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
