"""Every piece of process-wide mutable state of the library, in one place.

Why one place: a reader who wonders "is this global?" reads this file and nothing else, and a
test or an embedding application that wants a clean process calls :func:`reset`. Nothing here
imports the rest of the library (only ``ledger.errors`` sits below): the facade installs the
factory that builds ledgers when it is imported, so the model and the write side can reach "the
default ledger" or "a ledger on this URL" without importing the facade above them.

What lives here:

- the default ledger (``ledger.connect`` / ``get_ledger`` / ``set_default_ledger``);
- the function table (name -> FunctionMetadata) behind ``CallableRegistry``;
- the topic table (topic string -> entity class, held weakly);
- caches that are pure functions of their keys: the generated input/output models, pydantic
  TypeAdapters for forked children, the read-only SQL verdicts and DuckDB's side-effect list;
- one ledger per (URL, pid) for ``batch_map`` worker processes;
- the ids this process minted and has not appended yet (``mint``), which a stored index
  then knows to be absent without asking the store;
- the reactions event bus (``ledger.reactions.get_event_bus``), which ledgers publish their
  facts to after each commit while it has subscribers.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from uuid import UUID, SafeUUID

__all__ = [
    "adapters",
    "default_ledger",
    "event_bus",
    "functions",
    "functions_lock",
    "input_models",
    "install_ledger_factory",
    "id_source",
    "mint",
    "random_id",
    "mint_mark",
    "minted",
    "new_ledger",
    "output_models",
    "reset",
    "run_code_facts",
    "run_git_facts",
    "run_process_facts",
    "set_default_ledger",
    "sql_verdicts",
    "topics",
    "worker_ledger",
]

#: name -> FunctionMetadata; guarded by functions_lock (registration may race with lookups).
functions: dict[str, Any] = {}
functions_lock = threading.Lock()

#: topic -> entity class. Weak: a class defined inside a test function goes away with it.
topics: weakref.WeakValueDictionary[str, type] = weakref.WeakValueDictionary()

#: Generated pydantic models, keyed by what they are built from (signatures.py).
input_models: dict[Any, type] = {}
output_models: dict[Any, type] = {}

#: pydantic TypeAdapters by annotation, for results sent back by forked children (isolation.py).
adapters: dict[Any, Any] = {}

#: read-only SQL: verdict by query text (bounded by its user), and DuckDB's side-effect functions.
sql_verdicts: dict[str, str | None] = {}
side_effect_functions: list[frozenset[str]] = []

#: Ids minted by ``mint`` (entity ecs_ids and lineage_ids, version and execution ids) that no
#: ledger of this process has appended yet, as int -> the sequence number of their minting.
#: A stored index asked for such an id answers "absent" without a query when it was minted
#: after the index last looked at the store (``mint_mark``): no writer can have stored an
#: id before it existed, and what other writers did since is invisible until ``refresh``, as
#: with the in-memory index. Bounded: the oldest are forgotten (they then cost a query).
minted: dict[int, int] = {}
_MINTED_MAX = 65_536
_mint_counter = itertools.count(1)
_minted_lock = threading.Lock()


#: Random ids waiting to be handed out by ``random_id`` (ints with the version-4 bits set).
_random_pool: list[int] = []
_RANDOM_BLOCK = 256
_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (4 << 76) | (0x8000 << 48)


def _discard_random_pool() -> None:
    """A forked child must not hand out the ids its parent will also hand out."""
    _random_pool.clear()


os.register_at_fork(after_in_child=_discard_random_pool)


def random_id() -> UUID:
    """A random (version 4) UUID, like ``uuid.uuid4()`` at about a third of its cost.

    Why: an execution makes a dozen ids, and ``uuid4`` pays one ``os.urandom`` system call
    and ``UUID.__init__``'s checks for each (issue 28). Here one ``os.urandom`` call fills
    256 ids, and the UUID is built the way ``uuid`` builds its own (``object.__setattr__`` on
    its slots) from an int whose version and variant bits are already set. The bytes come
    from the same source as uuid4's; a forked child drops the parent's pool, and ``list.pop``
    is atomic under the GIL, so two threads never take the same id.
    """
    try:
        value = _random_pool.pop()
    except IndexError:
        block = os.urandom(16 * _RANDOM_BLOCK)
        _random_pool.extend(
            (int.from_bytes(block[i : i + 16], "big") & _V4_CLEAR) | _V4_SET for i in range(0, len(block), 16)
        )
        value = _random_pool.pop()
    new = object.__new__(UUID)
    object.__setattr__(new, "int", value)
    object.__setattr__(new, "is_safe", SafeUUID.unknown)
    return new


#: Where ``mint`` takes new ids: ``random_id``, except while ``id_source`` has installed another
#: (``ledger demo`` installs a seeded one so its ids are the same on every run).
_new_id: Callable[[], UUID] = random_id


def id_source(source: Callable[[], UUID] | None) -> Callable[[], UUID]:
    """Install ``source`` as the maker of new ids (None: ``random_id`` again); returns the previous one,
    for the caller to put back. Why it exists: a reproducible run (the demo, whose ids the README
    prints) needs the same ids each time; nothing else should change it. A source must never give
    an id the store already holds: a repeated id would be read as already stored (no new version)
    or refused as a conflict, and the stored index takes an id minted here for one not yet stored.
    The demo uses it only on a store with no events."""
    global _new_id
    previous, _new_id = _new_id, (source or random_id)
    return previous


def mint() -> UUID:
    """A new id (``random_id`` unless ``id_source`` said otherwise), remembered as minted by this process."""
    new = _new_id()
    minted[new.int] = next(_mint_counter)
    if len(minted) > _MINTED_MAX:
        with _minted_lock:
            for key in list(itertools.islice(minted, _MINTED_MAX // 4)):
                minted.pop(key, None)
    return new


def mint_mark() -> int:
    """A sequence number every id minted from now on exceeds (an index takes one when it looks)."""
    return next(_mint_counter)


#: The run record's facts that do not change within a process (``ledger/write/run_record.py``):
#: per function (name, id, unpack) -> (function, its code facts); per git checkout -> commit and
#: dirtiness; this process's host, user, pid and versions (recomputed when the pid changes).
run_code_facts: dict[tuple[str, int, bool], tuple[Any, dict[str, Any]]] = {}
run_git_facts: dict[str, dict[str, Any]] = {}
run_process_facts: dict[str, Any] = {}


#: The reactions event bus (``ledger.reactions.bus.EventBus``), made on first use by
#: ``get_event_bus``. None until then: a commit then publishes nothing, at the cost of one read.
event_bus: Any = None

_ledger_lock = threading.Lock()
_default_ledger: Any = None
_ledger_factory: Callable[[str], Any] | None = None

_WORKER_LEDGERS_MAX = 8
_worker_ledgers: OrderedDict[tuple[str, int], Any] = OrderedDict()


def install_ledger_factory(factory: Callable[[str], Any]) -> None:
    """Called once by ``ledger.ledger`` at import: how to open a ledger on a URL."""
    global _ledger_factory
    _ledger_factory = factory


def new_ledger(url: str) -> Any:
    """A new ledger on ``url``, built by the installed factory (the ``Ledger`` class)."""
    if _ledger_factory is None:  # pragma: no cover - importing any ledger module imports the package first
        raise RuntimeError("ledger._process: no ledger factory installed (import ledger first)")
    return _ledger_factory(url)


def default_ledger() -> Any:
    """The default ledger; an in-memory one is created on first use or after it was closed."""
    global _default_ledger
    with _ledger_lock:
        if _default_ledger is None or getattr(_default_ledger, "_closed", False):
            _default_ledger = new_ledger("memory://")
        return _default_ledger


def set_default_ledger(ledger: Any) -> None:
    global _default_ledger
    with _ledger_lock:
        _default_ledger = ledger


def worker_ledger(url: str, pid: int) -> Any:
    """One ledger per worker process and URL (the pid keeps a forked child off its parent's)."""
    key = (url, pid)
    with _ledger_lock:
        ledger = _worker_ledgers.get(key)
        if ledger is not None:
            _worker_ledgers.move_to_end(key)
            return ledger
    ledger = new_ledger(url)
    with _ledger_lock:
        _worker_ledgers[key] = ledger
        while len(_worker_ledgers) > _WORKER_LEDGERS_MAX:
            _worker_ledgers.popitem(last=False)
    return ledger


def reset() -> None:
    """Forget all process-wide state: as if the library had just been imported.

    The default ledger and worker ledgers are dropped, not closed (their owners close them);
    registered functions and known topics are forgotten (classes defined at module level are
    found again by their import path); every cache is emptied. A class whose topic is pinned
    (``__ledger_topic__``, e.g. the demo's, kept under the module path it was first recorded
    with) stays known: no import path leads back to it.
    """
    global _default_ledger, _new_id, event_bus
    _new_id = random_id
    event_bus = None  # handlers are forgotten with the functions
    with _ledger_lock:
        _default_ledger = None
        _worker_ledgers.clear()
    with functions_lock:
        functions.clear()
    pinned = {t: c for t, c in topics.items() if isinstance(c, type) and c.__dict__.get("__ledger_topic__") == t}
    topics.clear()
    topics.update(pinned)
    input_models.clear()
    output_models.clear()
    adapters.clear()
    sql_verdicts.clear()
    side_effect_functions.clear()
    minted.clear()
    run_code_facts.clear()
    run_git_facts.clear()
    run_process_facts.clear()
