"""The version of a function's code: one hash, computed the same way wherever it is needed.

The run record stores it (``function_version``), memoization keys on it, and a reader that
finds the source text somewhere (the OpenLineage export reads the recorded source file) can
prove the text is exactly the code that ran by hashing it again. One formula, here, so the
three can never drift apart.
"""

from __future__ import annotations

import hashlib

__all__ = ["source_version"]


def source_version(name: str, source: bytes, unpack: bool) -> str:
    """SHA-256 over the registered name, the source (decorators included) and ``unpack``,
    each part length-prefixed so no two different triples hash alike."""
    digest = hashlib.sha256()
    for part in (name.encode(), source, b"unpack" if unpack else b"keep"):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()
