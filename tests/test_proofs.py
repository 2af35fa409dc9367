"""ledger.proofs alone: RFC 9162 hashing and proofs against the naive definitions, signed notes, keys."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import ProofError
from ledger.proofs import (
    EMPTY_ROOT,
    ConsistencyProof,
    InclusionProof,
    SigningKey,
    TreeHead,
    VerifierKey,
    consistency_path,
    cosign_note,
    inclusion_path,
    leaf_hash,
    node_hash,
    note_signers,
    root_of,
    verify_consistency,
    verify_inclusion,
)


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 as written: the recursive Merkle Tree Hash over raw leaves."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[n]) as written."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return naive_path(m, leaves[:k]) + [mth(leaves[k:])]
    return naive_path(m - k, leaves[k:]) + [mth(leaves[:k])]


def naive_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1 SUBPROOF(m, D[n], b) as written."""
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return naive_subproof(m, leaves[:k], whole) + [mth(leaves[k:])]
    return naive_subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def seals(n: int) -> list[bytes]:
    return [hashlib.sha256(b"record %d" % i).digest() for i in range(n)]


def node_source(leaves: list[bytes]):
    hashed = [leaf_hash(s) for s in leaves]

    def node(height: int, index: int) -> bytes:
        return root_of(hashed[index << height : (index + 1) << height])

    return node


def head_of(leaves: list[bytes]) -> TreeHead:
    return TreeHead(len(leaves), mth(leaves), "test.example/log")


class TestHashing:
    def test_the_empty_tree_and_one_leaf_follow_the_rfc(self) -> None:
        """The empty root is SHA-256 of nothing; one leaf's root is its leaf hash with the 0x00 prefix."""
        assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        assert root_of([]) == EMPTY_ROOT
        s = b"\x11" * 32
        assert root_of([leaf_hash(s)]) == hashlib.sha256(b"\x00" + s).digest()
        assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()

    @settings(max_examples=60, deadline=None)
    @given(st.integers(min_value=0, max_value=300))
    def test_the_iterative_root_equals_the_recursive_definition(self, n: int) -> None:
        """root_of over leaf hashes gives RFC 9162's recursive MTH for any size."""
        leaves = seals(n)
        assert root_of([leaf_hash(s) for s in leaves]) == mth(leaves)


class TestProofs:
    @settings(max_examples=60, deadline=None)
    @given(st.integers(min_value=1, max_value=200), st.data())
    def test_every_inclusion_proof_is_the_rfc_path_and_verifies(self, n: int, data: st.DataObject) -> None:
        """The audit path equals PATH(m, D[n]) and verifies against the root; a flipped byte fails."""
        leaves = seals(n)
        m = data.draw(st.integers(min_value=0, max_value=n - 1))
        path = inclusion_path(m, n, node_source(leaves))
        assert path == naive_path(m, leaves)
        proof = InclusionProof(m, leaf_hash(leaves[m]), tuple(path), n)
        head = head_of(leaves)
        verify_inclusion(proof, head)
        assert InclusionProof.from_json(proof.to_json()) == proof
        if path:
            i = data.draw(st.integers(min_value=0, max_value=len(path) - 1))
            bad = list(path)
            bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
            with pytest.raises(ProofError):
                verify_inclusion(InclusionProof(m, proof.leaf_hash, tuple(bad), n), head)
        with pytest.raises(ProofError):
            verify_inclusion(InclusionProof(m, leaf_hash(b"\x00" * 32), proof.path, n), head)
        with pytest.raises(ProofError):
            verify_inclusion(proof, TreeHead(n, bytes(32), head.origin))

    @settings(max_examples=60, deadline=None)
    @given(st.integers(min_value=1, max_value=200), st.data())
    def test_every_consistency_proof_is_the_rfc_proof_and_verifies(self, n: int, data: st.DataObject) -> None:
        """PROOF(m, D[n]) from the tiles' node source verifies; a flipped byte or another root fails."""
        leaves = seals(n)
        m = data.draw(st.integers(min_value=1, max_value=n))
        path = consistency_path(m, n, node_source(leaves))
        assert path == (naive_subproof(m, leaves, True) if m < n else [])
        proof = ConsistencyProof(m, n, tuple(path))
        old, new = head_of(leaves[:m]), head_of(leaves)
        verify_consistency(proof, old, new)
        assert ConsistencyProof.from_json(proof.to_json()) == proof
        if path:
            i = data.draw(st.integers(min_value=0, max_value=len(path) - 1))
            bad = list(path)
            bad[i] = bytes([bad[i][0] ^ 0x80]) + bad[i][1:]
            with pytest.raises(ProofError):
                verify_consistency(ConsistencyProof(m, n, tuple(bad)), old, new)
        forked = leaves[: m - 1] + [hashlib.sha256(b"forged").digest()]
        with pytest.raises(ProofError):
            verify_consistency(proof, head_of(forked), new)

    def test_bad_arguments_name_themselves(self) -> None:
        """Out-of-range indexes and sizes, malformed JSON: ProofError naming the value."""
        node = node_source(seals(4))
        with pytest.raises(ProofError, match="leaf index 4"):
            inclusion_path(4, 4, node)
        with pytest.raises(ProofError, match="old size 5"):
            consistency_path(5, 4, node)
        with pytest.raises(ProofError, match="leaf_hash"):
            InclusionProof.from_json('{"leaf_index": 0, "leaf_hash": "zz", "path": [], "size": 1}')
        with pytest.raises(ProofError, match="invalid JSON"):
            ConsistencyProof.from_json("{")


class TestNotes:
    def test_a_signed_head_round_trips_and_follows_the_c2sp_format(self, tmp_path) -> None:
        """Body: origin, size, base64 root; one em-dash signature line whose first 4 bytes are the key id."""
        key = SigningKey.generate("log.example")
        head = TreeHead(7, hashlib.sha256(b"r").digest(), "log.example/abc", position=9)
        note = head.sign(key)
        body, _, sig = note.partition("\n\n")
        assert body.split("\n") == ["log.example/abc", "7", __import__("base64").b64encode(head.root).decode()]
        assert sig.startswith("\u2014 log.example ")
        assert TreeHead.from_note(note, key.verifier) == TreeHead(7, head.root, "log.example/abc")
        key.save(tmp_path / "k.key")
        key.verifier.save(tmp_path / "k.pub")
        assert (tmp_path / "k.key").stat().st_mode & 0o077 == 0
        again = SigningKey.load(tmp_path / "k.key")
        assert again.verifier == VerifierKey.load(tmp_path / "k.pub") == key.verifier
        text = str(key.verifier)
        name, key_id, _ = text.split("+", 2)
        assert name == "log.example" and key_id == f"{key.key_id:08x}"

    def test_the_key_id_is_the_signed_note_hash(self) -> None:
        """Key id = first 4 bytes of SHA-256(name || \\n || 0x01 || public key)."""
        key = SigningKey.generate("x")
        expect = hashlib.sha256(b"x\n\x01" + key.verifier.public).digest()[:4]
        assert key.key_id == int.from_bytes(expect, "big")

    def test_a_tampered_or_foreign_note_is_refused(self) -> None:
        """An edited size, another key, a missing signature or junk: ProofError."""
        key, other = SigningKey.generate("log"), SigningKey.generate("log")
        note = TreeHead(3, bytes(32), "o").sign(key)
        with pytest.raises(ProofError, match="no valid signature"):
            TreeHead.from_note(note.replace("\n3\n", "\n4\n", 1), key.verifier)
        with pytest.raises(ProofError, match="no valid signature"):
            TreeHead.from_note(note, other.verifier)
        for junk in ("", "hello\n", "o\n3\n\n\nnot a signature\n", "o\nx\nAAAA\n\n\u2014 log AAAA\n"):
            with pytest.raises(ProofError):
                TreeHead.from_note(junk, key.verifier)
        with pytest.raises(ProofError, match="verifier"):
            VerifierKey.parse("log+00000000+" + str(key.verifier).split("+", 2)[2])

    def test_a_cosigned_note_still_verifies_for_the_log_and_names_the_witness(self) -> None:
        """A witness's line is appended; the log's signature still checks, and both are named."""
        log_key, witness = SigningKey.generate("log"), SigningKey.generate("witness")
        note = cosign_note(TreeHead(3, bytes(32), "o").sign(log_key), witness)
        assert TreeHead.from_note(note, log_key.verifier).size == 3
        assert note_signers(note, [log_key.verifier, witness.verifier]) == ["log", "witness"]
