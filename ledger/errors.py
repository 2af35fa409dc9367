"""One exception hierarchy for everything the ledger refuses.

Each class also derives from the builtin a caller would naturally catch
(``ValueError`` for bad values, ``LookupError`` for missing things, ``KeyError``
for an unknown function name) so code written against the seed design keeps
working, while ``except LedgerError`` catches everything the ledger raises.
Messages always name the offending argument, entity or address.
"""

from __future__ import annotations

from uuid import UUID

__all__ = [
    "ActorError",
    "AddressError",
    "AttachError",
    "BatchCommitError",
    "BadPathError",
    "ConcurrencyError",
    "CorruptLogError",
    "DetachError",
    "DigestError",
    "EntityDefinitionError",
    "EntityNotFoundError",
    "ErasedError",
    "ErasedInputError",
    "ExecutionError",
    "ExecutorError",
    "FunctionRegistrationError",
    "InputValidationError",
    "KeyIntegrityError",
    "LedgerError",
    "LedgerClosedError",
    "MalformedAddressError",
    "NotARootError",
    "ReactionError",
    "NotReexecutableError",
    "ProofError",
    "ReadOnlyError",
    "ReturnTypeError",
    "SchemaMismatchError",
    "StoreError",
    "StoreNotFoundError",
    "StoreURLError",
    "TreeStructureError",
    "UnknownEntityError",
    "UnknownEntityTypeError",
    "UnknownFunctionError",
    "UnstorableValueError",
]


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""


class StoreURLError(LedgerError, ValueError):
    """A store URL that names no supported backend or is malformed."""


class StoreError(LedgerError):
    """The underlying database failed; the batch being written was not recorded."""


class StoreNotFoundError(StoreError, LookupError):
    """``create=False`` named a store that holds no ledger (missing, empty or foreign); nothing was created."""


class CorruptLogError(StoreError):
    """A stored record cannot be decoded; ``position`` names it.

    Raised where the record must be understood to go on (opening, replay); the
    audit paths (``verify``) report it at its position instead.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class ReadOnlyError(LedgerError, ValueError):
    """``sql()`` was given a statement that could write, change a setting, or reach a file or the network."""


class SchemaMismatchError(LedgerError, TypeError):
    """A stored version no longer fits its entity class (fields changed without a version bump)."""


class LedgerClosedError(LedgerError, RuntimeError):
    """An operation on a ledger after ``close()``."""


class ConcurrencyError(LedgerError):
    """Another writer appended to the same stream first (optimistic concurrency).

    Nothing of the losing batch was written; reload the entity and retry.
    """


class EntityNotFoundError(LedgerError, LookupError):
    """No stored version has the given id."""


class UnknownEntityTypeError(LedgerError, LookupError):
    """A stored version names an entity class this process cannot resolve."""


class EntityDefinitionError(LedgerError, TypeError):
    """An entity class the ledger cannot store as declared (e.g. a personal tree field)."""


class ErasedError(LedgerError, ValueError):
    """The personal data involved was erased: it cannot be used as input or written again.

    Reading an erased version works (personal fields read as ``ERASED``); what is
    refused is anything that would need the destroyed key or would pass the
    tombstone on as if it were data.
    """


class ErasedInputError(ErasedError):
    """A recorded execution cannot be run again: one of its inputs' personal data was erased.

    Re-execution needs exactly the recorded input versions; an erased lineage's
    personal fields are gone for good, so the run could only see tombstones.
    """


class KeyIntegrityError(StoreError):
    """A lineage's data key row is damaged (malformed, or not the key its events committed to).

    Unlike an erasure, which is recorded by an ``entity.erased`` event, this is
    tampering or corruption of the key table: reads that need the key stop with
    this error instead of showing ``ERASED``, and ``verify()`` reports it.
    """


class NotARootError(LedgerError, ValueError):
    """An operation that needs a tree's root was given a child entity."""


class TreeStructureError(LedgerError, ValueError):
    """An entity graph that is not a tree (a cycle, or one entity in two places)."""


class DetachError(LedgerError, ValueError):
    """``detach()`` cannot take the entity out of its parent."""


class AttachError(LedgerError, ValueError):
    """``attach()`` was called in a state that cannot be recorded."""


class AddressError(LedgerError, ValueError):
    """Base of the ``@uuid.path`` reference errors."""


class MalformedAddressError(AddressError):
    """A string starting with ``@`` that is not a valid address."""


class UnknownEntityError(AddressError):
    """An address whose uuid names no stored entity."""


class BadPathError(AddressError):
    """An address whose path does not exist in the referenced entity."""


class UnknownFunctionError(LedgerError, KeyError):
    """No function is registered under the given name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class FunctionRegistrationError(LedgerError, TypeError):
    """A function cannot be registered (missing type hints, bad options)."""


class ActorError(LedgerError, ValueError):
    """``actor``: who runs executions must be a non-empty string."""


class InputValidationError(LedgerError, ValueError):
    """Arguments of an execution failed validation; nothing was recorded."""


class NotReexecutableError(LedgerError, ValueError):
    """The execution exists but cannot be run again: it failed, or its ``execution.completed``
    holds no ``arguments`` (recorded before executions kept them, or an argument had no JSON form)."""


class ExecutionError(LedgerError, RuntimeError):
    """A function could not be run to completion (crashed or timed-out child)."""


class UnstorableValueError(LedgerError, TypeError):
    """A field value the log cannot hold as JSON (an arbitrary object, a set, nesting too deep).

    Found while sealing a batch, so nothing of it was written.
    """


class ReturnTypeError(LedgerError, TypeError):
    """A function returned a value that does not match its return type hint."""


class DigestError(LedgerError, ValueError):
    """A saved ledger digest that cannot be read (bad JSON, missing or wrong fields)."""


class ExecutorError(LedgerError, ValueError):
    """``CallableRegistry.map`` cannot run on the given executor (e.g. memory:// across processes)."""


class ReactionError(LedgerError, ValueError):
    """A subscription or follower that cannot be set up (``ledger.reactions``, ``Ledger.follow``):
    ``on()`` with nothing to match, a follower name already following on this ledger, an event
    that cannot be recorded."""


class ProofError(LedgerError, ValueError):
    """A Merkle proof, tree head or signed note that does not check out (``ledger.proofs``).

    Raised for a bad signature, a malformed note, key or proof, a proof that does not lead to
    the head's root, a log that does not extend a head kept earlier, and a position or size the
    log cannot prove; the message names the argument or the check that failed.
    """


class FollowerHeldError(ReactionError):
    """Another follower (in this or another process) holds the name: a name is followed by one at a
    time, so no event is delivered twice. The hold ends with its holder (stopped, closed or dead)."""


class BatchCommitError(LedgerError):
    """A ``with led.batch():`` block's pending batches could not be appended together.

    The store refused the one transaction that held them (another writer appended to one
    of their lineages first: the cause is a ``ConcurrencyError``; or the database failed:
    a ``StoreError``), so none of them was recorded and the in-process index forgot them.
    ``execution_ids`` names the executions (completed or failed) that are not in the log,
    in the order they ran; ``batches`` how many batches were dropped in all (tree writes
    such as ``register`` count too). The objects those executions returned are not stored:
    re-read inputs from the ledger and run the executions again.
    """

    def __init__(self, message: str, execution_ids: list[UUID], batches: int) -> None:
        super().__init__(message)
        self.execution_ids = execution_ids
        self.batches = batches
