"""Erasing one lineage's personal data: one chained event, then the key is destroyed.

The order matters. The ``entity.erased`` event is appended first, so the log
always says why data became unreadable; the key row is deleted after. If the
deletion fails, the lineage already reads as erased everywhere (the index
ignores keys of erased lineages) and calling ``erase`` again finishes the job:
a repeated erasure appends nothing and only retries the key deletion and the
shredding of its bytes (``ledger/store/keys.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from ledger.errors import EntityNotFoundError, InputValidationError
from ledger.events.bodies import ENTITY_ERASED, entity_erased_body
from ledger.model.address import as_uuid
from ledger.write.batch import Batch
from ledger.write.host import WriteHost
from projections.inline import InlineIndex, VersionRecord

__all__ = ["Erasure", "erase_lineage", "personal_changes"]


@dataclass(frozen=True)
class Erasure:
    """What ``Ledger.erase`` did.

    ``position`` is the log position of the lineage's ``entity.erased`` event;
    ``already_erased`` is True when an earlier call had appended it (nothing new
    was written). ``key_destroyed`` is True only when no copy of the lineage's
    key is left in the store's files (also for a lineage that never had one).
    False means the key row is gone and the personal data reads as ``ERASED``,
    but another connection still holds a snapshot with the key's bytes: the
    shredding finishes on a later ``erase`` of the lineage or the next writable
    open of the store.
    """

    lineage_id: UUID
    position: int
    versions: int
    key_destroyed: bool
    already_erased: bool


def erase_lineage(ledger: WriteHost, lineage_id: Any, *, reason: str) -> Erasure:
    """Append ``entity.erased`` to the lineage's stream, then destroy its data key."""
    lineage = as_uuid(lineage_id, "lineage_id", "a lineage id")
    if not isinstance(reason, str) or not reason.strip():
        raise InputValidationError(f"reason: give a non-empty text, got {reason!r:.80}")
    with ledger.writing():
        ledger.refresh()  # another writer may have versioned or erased it meanwhile
        index = ledger.index
        versions = index.lineages.get(lineage)
        if not versions:
            raise EntityNotFoundError(f"lineage_id: no entity lineage {lineage}")
        keys = ledger.store.keys
        if lineage in index.erased:
            return Erasure(lineage, index.erased[lineage], len(versions), keys.destroy(lineage), True)
        batch = Batch(index)
        batch.add(
            lineage,
            ENTITY_ERASED,
            entity_erased_body(
                lineage_id=lineage, reason=reason, versions=len(versions),
                personal_changes=personal_changes(index, versions),
            ),
        )
        position = ledger.commit(batch)[0]  # applying entity.erased marks the lineage erased
        return Erasure(lineage, position, len(versions), keys.destroy(lineage), False)


def personal_changes(index: InlineIndex, versions: Sequence[VersionRecord]) -> dict[str, list[str]]:
    """Per version, the personal fields whose value differs from the version it was made from.

    Read while the key still exists: once it is destroyed both sides of such a change read
    ``ERASED`` (each version's ciphertext has a fresh nonce, so the ciphertexts cannot tell
    either), and history would call a change of a name no change at all. Field names are
    schema, not personal data, so they may stay in the log.
    """
    out: dict[str, list[str]] = {}
    previous: VersionRecord | None = None
    for rec in versions:
        base = index.records.get(rec.previous_ecs_id) if rec.previous_ecs_id is not None else previous
        if base is not None and rec.personal:
            now, before = rec.values_data(), base.values_data()
            changed = [name for name in rec.personal if now.get(name) != before.get(name)]
            if changed:
                out[str(rec.ecs_id)] = changed
        previous = rec
    return out
