"""Signed tree heads and Merkle proofs over the log: what lets an outsider hold the ledger to account.

The seals (``ledger.events.seal``) are unkeyed SHA-256: whoever can write the store can drop its
tail, append something else and leave a log whose every seal checks. What catches that is a few
hundred bytes kept *outside* the store: a tree head, signed with a key the store never sees. This
module is everything needed to make and check one, and it needs no store (only ``hashlib``,
``cryptography`` and ``ledger.errors``), so an auditor can verify with it alone.

- The log is a Merkle tree in the sense of RFC 9162 section 2.1 (same hashing as RFC 6962): the
  leaves are the records' 32-byte seal hashes in position order; leaf hash
  ``SHA-256(0x00 || seal)``, interior node ``SHA-256(0x01 || left || right)``, a tree of n leaves
  split at the largest power of two below n; the empty tree's root is ``SHA-256("")``.
- An inclusion proof (RFC 9162 2.1.3) shows one leaf is in a tree of a given size and root; a
  consistency proof (2.1.4) shows a tree of size m is a prefix of one of size n. Both are
  O(log n) hashes. Builders take a ``node(height, index)`` callable returning the hash of the
  perfect subtree of ``2**height`` leaves starting at leaf ``index * 2**height``, so the same code
  serves an in-memory list (tests) and the store's tiles (``ledger.store.merkle``).
- A ``TreeHead`` is signed into a C2SP signed note whose body is a C2SP tlog checkpoint
  (``origin\\nsize\\nbase64(root)\\n``), the format of Go's checksum database and Sigstore's
  logs; keys are Ed25519 in the signed-note key formats (``SigningKey``, ``VerifierKey``).
  Anything with a ``name``, a ``key_id`` and a ``sign(message) -> bytes`` method can sign
  (``NoteSigner``): that is where a KMS or an HSM plugs in, so the private key need never be
  in this process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "ConsistencyProof",
    "InclusionProof",
    "NoteSigner",
    "SigningKey",
    "TreeHead",
    "VerifierKey",
    "consistency_path",
    "cosign_note",
    "inclusion_path",
    "leaf_hash",
    "node_hash",
    "note_signers",
    "root_of",
    "subtree_root",
    "verify_consistency",
    "verify_inclusion",
]

#: The root of a tree with no leaves (RFC 9162 2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()
_ED25519 = 0x01  # the signed-note algorithm byte of an Ed25519 key
_DASH = "\u2014"  # a signature line starts with an em dash and a space
_MAX_NOTE = 1 << 20  # a checkpoint is a few hundred bytes; refuse to parse a megabyte


def leaf_hash(seal: bytes) -> bytes:
    """The RFC 9162 hash of one leaf: ``SHA-256(0x00 || seal)``, where ``seal`` is a record's 32-byte seal hash."""
    return hashlib.sha256(b"\x00" + seal).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 hash of an interior node: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2): where RFC 9162 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """The root of the tree over ``leaf_hashes`` (already leaf-hashed), in O(n) hashes and O(log n) memory.

    Builds the right edge as it goes (a stack of perfect subtrees, their sizes strictly falling),
    then folds it right to left: the same root as the recursive definition, without its recursion.
    """
    stack: list[tuple[int, bytes]] = []  # (height, hash) of perfect subtrees, left to right
    for leaf in leaf_hashes:
        height, value = 0, leaf
        while stack and stack[-1][0] == height:
            value = node_hash(stack.pop()[1], value)
            height += 1
        stack.append((height, value))
    if not stack:
        return EMPTY_ROOT
    value = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        value = node_hash(left, value)
    return value


#: ``node(height, index)``: the hash of the perfect subtree of ``2**height`` leaves starting at leaf ``index << height``.
NodeSource = Callable[[int, int], bytes]


def subtree_root(lo: int, hi: int, node: NodeSource) -> bytes:
    """MTH(D[lo:hi]) for a range the RFC recursion reaches (``lo`` a multiple of the split size).

    A perfect aligned range is one ``node`` call; any other splits as RFC 9162 does, so a range
    costs O(log n) node calls.
    """
    n = hi - lo
    if n <= 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and lo % n == 0:
        height = n.bit_length() - 1
        return node(height, lo >> height)
    k = _split(n)
    return node_hash(subtree_root(lo, lo + k, node), subtree_root(lo + k, hi, node))


def inclusion_path(index: int, size: int, node: NodeSource) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves, leaf to root (RFC 9162 2.1.3.1)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of {size} leaves")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(subtree_root(lo + k, hi, node))
            hi = lo + k
        else:
            path.append(subtree_root(lo, lo + k, node))
            lo += k
    path.reverse()
    return path


def consistency_path(old_size: int, size: int, node: NodeSource) -> list[bytes]:
    """The consistency proof from the tree of ``old_size`` leaves to the one of ``size`` (RFC 9162 2.1.4.1).

    Empty when ``old_size`` is 0 or equals ``size`` (there is nothing to prove).
    """
    if not 0 <= old_size <= size:
        raise ProofError(f"old size {old_size} must be between 0 and the size {size}")
    if old_size in (0, size):
        return []
    path: list[bytes] = []
    lo, hi, whole = 0, size, True  # SUBPROOF(m, D[lo:hi], whole) with m = old_size - lo
    while True:
        m = old_size - lo
        if m == hi - lo:
            if not whole:
                path.append(subtree_root(lo, hi, node))
            break
        k = _split(hi - lo)
        if m <= k:
            path.append(subtree_root(lo + k, hi, node))
            hi = lo + k
        else:
            path.append(subtree_root(lo, lo + k, node))
            lo, whole = lo + k, False
    path.reverse()
    return path


def _hex32(value: Any, what: str) -> bytes:
    """A 32-byte hash from its hex text; anything else is a ``ProofError`` naming ``what``."""
    if not isinstance(value, str) or len(value) != 64:
        raise ProofError(f"{what}: expected 64 hex digits, got {str(value)[:80]!r}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ProofError(f"{what}: expected 64 hex digits, got {value[:80]!r}") from None


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError(f"{what}: expected an integer >= 0, got {str(value)[:80]!r}")
    return value


def _load_json(text: str | bytes, kind: str, keys: set[str]) -> dict[str, Any]:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProofError(f"text: not an {kind} proof, invalid JSON ({exc})") from None
    if not isinstance(data, dict) or not keys <= set(data):
        raise ProofError(f"text: not an {kind} proof; expected keys {', '.join(sorted(keys))}")
    return data


@dataclass(frozen=True)
class InclusionProof:
    """That the leaf ``leaf_hash`` is leaf ``leaf_index`` of the tree of ``size`` leaves.

    ``leaf_hash`` is the RFC 9162 leaf hash (``leaf_hash(seal)``), ``path`` the sibling subtree
    roots from the leaf up; ``position`` is where the record sits in the log (informative: on
    PostgreSQL, rolled-back positions are not leaves, so it can differ from ``leaf_index + 1``).
    """

    leaf_index: int
    leaf_hash: bytes
    path: tuple[bytes, ...]
    size: int
    position: int | None = None

    def to_json(self) -> str:
        """The proof as JSON, hashes in hex: what to hand over with the record."""
        data: dict[str, Any] = {
            "leaf_index": self.leaf_index,
            "leaf_hash": self.leaf_hash.hex(),
            "path": [p.hex() for p in self.path],
            "size": self.size,
        }
        if self.position is not None:
            data["position"] = self.position
        return orjson.dumps(data).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> InclusionProof:
        """Read a proof written by ``to_json``; anything else raises ``ProofError``."""
        data = _load_json(text, "inclusion", {"leaf_index", "leaf_hash", "path", "size"})
        path = data["path"]
        if not isinstance(path, list):
            raise ProofError("path: expected a list of hex hashes")
        position = data.get("position")
        return cls(
            leaf_index=_count(data["leaf_index"], "leaf_index"),
            leaf_hash=_hex32(data["leaf_hash"], "leaf_hash"),
            path=tuple(_hex32(p, f"path[{i}]") for i, p in enumerate(path)),
            size=_count(data["size"], "size"),
            position=None if position is None else _count(position, "position"),
        )


@dataclass(frozen=True)
class ConsistencyProof:
    """That the tree of ``old_size`` leaves is a prefix of the tree of ``size`` leaves."""

    old_size: int
    size: int
    path: tuple[bytes, ...]

    def to_json(self) -> str:
        return orjson.dumps({"old_size": self.old_size, "size": self.size, "path": [p.hex() for p in self.path]}).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> ConsistencyProof:
        """Read a proof written by ``to_json``; anything else raises ``ProofError``."""
        data = _load_json(text, "consistency", {"old_size", "size", "path"})
        path = data["path"]
        if not isinstance(path, list):
            raise ProofError("path: expected a list of hex hashes")
        return cls(
            old_size=_count(data["old_size"], "old_size"),
            size=_count(data["size"], "size"),
            path=tuple(_hex32(p, f"path[{i}]") for i, p in enumerate(path)),
        )


def verify_inclusion(proof: InclusionProof, head: TreeHead) -> None:
    """Check that ``proof`` leads from its leaf to ``head.root`` (RFC 9162 2.1.3.2); raises ``ProofError``."""
    if proof.size != head.size:
        raise ProofError(f"the proof is for a tree of {proof.size} leaves, the head has {head.size}")
    if not 0 <= proof.leaf_index < proof.size:
        raise ProofError(f"leaf index {proof.leaf_index} is not in a tree of {proof.size} leaves")
    fn, sn, r = proof.leaf_index, proof.size - 1, proof.leaf_hash
    for p in proof.path:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if r != head.root:
        raise ProofError(f"leaf {proof.leaf_index} does not lead to the head's root: the leaf, the path or the head is not what was proved")


def verify_consistency(proof: ConsistencyProof, old: TreeHead, new: TreeHead) -> None:
    """Check that the tree of ``old`` is a prefix of the tree of ``new`` (RFC 9162 2.1.4.2); raises ``ProofError``."""
    if (proof.old_size, proof.size) != (old.size, new.size):
        raise ProofError(f"the proof is from size {proof.old_size} to {proof.size}, the heads are {old.size} and {new.size}")
    if old.origin and new.origin and old.origin != new.origin:
        raise ProofError(f"the heads are of different logs: {old.origin!r} and {new.origin!r}")
    if old.size > new.size:
        raise ProofError(f"the old head ({old.size} leaves) is larger than the new one ({new.size})")
    if old.size == 0 or old.size == new.size:
        if proof.path:
            raise ProofError("a proof between equal sizes (or from the empty tree) must be empty")
        if old.size == new.size and old.root != new.root:
            raise ProofError(f"two different roots for the same size {old.size}: the log was rewritten (a fork)")
        return
    path = list(proof.path)
    if not path:
        raise ProofError("the consistency proof is empty")
    if old.size & (old.size - 1) == 0:
        path.insert(0, old.root)
    fn, sn = old.size - 1, new.size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old.root or sr != new.root:
        raise ProofError(
            f"the tree of {new.size} leaves does not extend the one of {old.size}: the log was rewritten, or the proof is not for these heads"
        )


# ---------------------------------------------------------------- keys (C2SP signed-note formats)
def _key_id(name: str, public: bytes) -> int:
    """The signed-note key id: the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key)."""
    return int.from_bytes(hashlib.sha256(name.encode() + b"\n" + bytes([_ED25519]) + public).digest()[:4], "big")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or "+" in name or any(c.isspace() for c in name) or not name.isprintable():
        raise ProofError(f"name: a key name is non-empty printable text without spaces or '+', got {name!r}")
    return name


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProofError(f"{what}: not base64") from None


@runtime_checkable
class NoteSigner(Protocol):
    """What ``TreeHead.sign`` needs from a key: a KMS or HSM client implements these three.

    ``sign`` receives the note body's bytes and returns the 64-byte Ed25519 signature; the
    private key never has to leave the KMS.
    """

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class VerifierKey:
    """An Ed25519 public key with its name: the text ``<name>+<8 hex key id>+<base64(0x01 || key)>``."""

    name: str
    public: bytes

    @property
    def key_id(self) -> int:
        return _key_id(self.name, self.public)

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id:08x}+{base64.b64encode(bytes([_ED25519]) + self.public).decode()}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Read the verifier key text; a malformed one (or a key id that does not match) raises ``ProofError``."""
        parts = text.strip().split("+", 2)  # base64 may hold '+' too
        if len(parts) != 3:
            raise ProofError(f"verifier: expected <name>+<key id>+<base64 key>, got {text.strip()[:80]!r}")
        name, hex_id, encoded = parts
        raw = _b64(encoded, "verifier")
        if len(raw) != 33 or raw[0] != _ED25519:
            raise ProofError("verifier: not an Ed25519 signed-note key (algorithm byte 0x01 and 32 bytes)")
        key = cls(_check_name(name), raw[1:])
        if hex_id.lower() != f"{key.key_id:08x}":
            raise ProofError(f"verifier: key id {hex_id!r} does not match the name and key ({key.key_id:08x})")
        return key

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(str(self) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VerifierKey:
        """Read a verifier key file; a missing or malformed one raises ``ProofError`` naming it."""
        return cls.parse(_read_key_file(path, "verifier"))


def _read_key_file(path: str | os.PathLike[str], what: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProofError(f"{what} {str(path)!r}: cannot read it ({exc.__class__.__name__})") from None


class SigningKey:
    """An Ed25519 signing key in the signed-note format ``PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>``.

    Kept outside the store, where an insider who can rewrite the log cannot reach it: a file
    readable by its owner only (``save``), or an environment variable (``from_text``); a KMS
    replaces this class altogether (``NoteSigner``).
    """

    def __init__(self, name: str, seed: bytes) -> None:
        if len(seed) != 32:
            raise ProofError("key: an Ed25519 seed is 32 bytes")
        self._name = _check_name(name)
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self._seed = seed
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.verifier = VerifierKey(self._name, self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> int:
        return self.verifier.key_id

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        return cls(name, os.urandom(32))

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def __str__(self) -> str:
        return f"PRIVATE+KEY+{self._name}+{self.key_id:08x}+{base64.b64encode(bytes([_ED25519]) + self._seed).decode()}"

    def __repr__(self) -> str:  # never the seed: keys end up in logs and tracebacks
        return f"SigningKey({self._name!r}, key_id={self.key_id:08x})"

    @classmethod
    def from_text(cls, text: str) -> SigningKey:
        """Read the signing key text; a malformed one raises ``ProofError`` (never quoting the secret)."""
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise ProofError("key: expected PRIVATE+KEY+<name>+<key id>+<base64 key>")
        raw = _b64(parts[4], "key")
        if len(raw) != 33 or raw[0] != _ED25519:
            raise ProofError("key: not an Ed25519 signed-note key (algorithm byte 0x01 and 32 bytes)")
        key = cls(parts[2], raw[1:])
        if parts[3].lower() != f"{key.key_id:08x}":
            raise ProofError(f"key: key id {parts[3]!r} does not match the name and key")
        return key

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key to a new file only its owner can read (an existing file is refused)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ProofError(f"key {str(path)!r}: the file exists; a signing key is never overwritten") from None
        with os.fdopen(fd, "w") as f:
            f.write(str(self) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        return cls.from_text(_read_key_file(path, "key"))


# ---------------------------------------------------------------- tree heads and signed notes
@dataclass(frozen=True)
class TreeHead:
    """The log as a Merkle tree at one moment: ``size`` leaves, their ``root``, the log's ``origin``.

    ``position`` is the log position of the last leaf, when known (it is not part of the signed
    checkpoint: a head read from a note has ``position`` None).
    """

    size: int
    root: bytes
    origin: str
    position: int | None = None

    def checkpoint(self) -> str:
        """The C2SP tlog checkpoint body: origin, size, base64 root, each line ending in a newline."""
        if not self.origin or "\n" in self.origin:
            raise ProofError(f"origin: a checkpoint origin is one non-empty line, got {self.origin!r}")
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    def sign(self, key: NoteSigner) -> str:
        """The head as a C2SP signed note signed by ``key`` (a ``SigningKey`` or any ``NoteSigner``)."""
        body = self.checkpoint()
        return body + "\n" + _signature_line(key, body.encode())

    @classmethod
    def from_note(cls, text: str, verifier: VerifierKey) -> TreeHead:
        """The head a signed note states, once ``verifier``'s signature on it checks.

        Other signatures (witnesses') are allowed and ignored; a note ``verifier`` did not sign,
        a bad signature or a malformed note or checkpoint raise ``ProofError``.
        """
        body, signatures = _open_note(text)
        if not any(_signed_by(verifier, body, line) for line in signatures):
            raise ProofError(f"note: no valid signature by {verifier.name!r} (key id {verifier.key_id:08x})")
        return cls.parse_checkpoint(body)

    @classmethod
    def parse_checkpoint(cls, body: str) -> TreeHead:
        """The head a checkpoint body states (unsigned: only for text whose signature was checked)."""
        lines = body.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise ProofError("note: a checkpoint has an origin, a size and a root hash, each on its own line")
        origin, size_text, root_text = lines[0], lines[1], lines[2]
        if not origin:
            raise ProofError("note: the checkpoint's origin line is empty")
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")) or len(size_text) > 19:
            raise ProofError(f"note: the checkpoint's size {size_text[:40]!r} is not a decimal number")
        root = _b64(root_text, "note: the checkpoint's root hash")
        if len(root) != 32:
            raise ProofError("note: the checkpoint's root hash is not 32 bytes")
        return cls(int(size_text), root, origin)


def _signature_line(key: NoteSigner, body: bytes) -> str:
    signature = key.sign(body)
    return f"{_DASH} {key.name} {base64.b64encode(key.key_id.to_bytes(4, 'big') + signature).decode()}\n"


def _open_note(text: str) -> tuple[str, list[str]]:
    """(body, signature lines) of a signed note; a malformed note raises ``ProofError``."""
    if not isinstance(text, str) or len(text) > _MAX_NOTE:
        raise ProofError("note: not a signed note (text of at most 1 MiB)")
    split = text.rfind("\n\n")
    if split < 0 or not text.endswith("\n"):
        raise ProofError("note: not a signed note (a body, an empty line, then signature lines)")
    body, signatures = text[: split + 1], text[split + 2 :].splitlines()
    if not signatures or not all(line.startswith(_DASH + " ") for line in signatures):
        raise ProofError(f"note: every line after the empty line must be a signature starting with {_DASH!r}")
    return body, signatures


def _signed_by(verifier: VerifierKey, body: str, line: str) -> bool:
    parts = line[2:].split(" ")
    if len(parts) != 2 or parts[0] != verifier.name:
        return False
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 68 and int.from_bytes(raw[:4], "big") == verifier.key_id and verifier.verify(body.encode(), raw[4:])


def note_signers(text: str, verifiers: Sequence[VerifierKey]) -> list[str]:
    """The names of ``verifiers`` with a valid signature on the note (a witness's cosignature among them)."""
    body, signatures = _open_note(text)
    return [v.name for v in verifiers if any(_signed_by(v, body, line) for line in signatures)]


def cosign_note(text: str, key: NoteSigner) -> str:
    """The note with one more signature line, ``key``'s, over the same body (a witness's cosignature)."""
    body, signatures = _open_note(text)
    return body + "\n" + "".join(line + "\n" for line in signatures) + _signature_line(key, body.encode())
