"""``ledger keygen / head / prove / verify --head / cosign`` through typer's runner, on a SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from uuid import uuid4

from typer.testing import CliRunner

from ledger import Ledger
from ledger.cli import app
from ledger.events.seal import NewEvent
from ledger.proofs import InclusionProof, SigningKey, TreeHead, VerifierKey, note_signers, verify_inclusion

runner = CliRunner()


def fill(url: str, count: int) -> None:
    with Ledger(url) as led:
        led.store.append([NewEvent(uuid4(), 1, "test.note", b'{"n":%d}' % i, None) for i in range(count)])


def run(*args: str) -> tuple[int, str, str]:
    done = runner.invoke(app, list(args))
    return done.exit_code, done.stdout, done.stderr


class TestCommands:
    def test_keygen_head_prove_and_verify(self, tmp_path: Path) -> None:
        """A kept signed head verifies; a proof printed as JSON checks against it with no store."""
        url = f"sqlite:///{tmp_path / 'l.db'}"
        fill(url, 40)
        code, out, _ = run("keygen", "log.example", "--out", str(tmp_path / "log"))
        assert code == 0 and "log.example+" in out
        assert run("keygen", "log.example", "--out", str(tmp_path / "log"))[0] == 1  # never overwritten
        code, note, _ = run("head", "--db", url, "--key", str(tmp_path / "log.key"))
        assert code == 0
        head = TreeHead.from_note(note, VerifierKey.load(tmp_path / "log.pub"))
        assert head.size == 40
        (tmp_path / "h.note").write_text(note)
        code, out, _ = run("verify", "--db", url, "--head", str(tmp_path / "h.note"), "--verifier", str(tmp_path / "log.pub"))
        assert code == 0 and "extending the signed head of 40 records" in out
        code, out, _ = run("prove", "7", "--db", url, "--format", "json")
        proof = InclusionProof.from_json(out)
        assert (proof.leaf_index, proof.size, proof.position) == (6, 40, 7)
        verify_inclusion(proof, head)

    def test_the_key_may_come_from_the_environment(self, tmp_path: Path, monkeypatch) -> None:
        """$LEDGER_SIGNING_KEY holds the key's text when --key is not given."""
        url = f"sqlite:///{tmp_path / 'l.db'}"
        fill(url, 3)
        key = SigningKey.generate("env")
        monkeypatch.setenv("LEDGER_SIGNING_KEY", str(key))
        code, note, _ = run("head", "--db", url)
        assert code == 0 and TreeHead.from_note(note, key.verifier).size == 3

    def test_failures_are_one_line_and_exit_1(self, tmp_path: Path) -> None:
        """Bad position, size, note, verifier or missing key: exit 1, one line, no traceback."""
        url = f"sqlite:///{tmp_path / 'l.db'}"
        fill(url, 5)
        key = SigningKey.generate("log")
        key.verifier.save(tmp_path / "log.pub")
        (tmp_path / "junk.note").write_text("not a note\n")
        cases = [
            (("prove", "6", "--db", url), "position 6"),
            (("prove", "2", "--size", "9", "--db", url), "size 9"),
            (("verify", "--db", url, "--head", str(tmp_path / "junk.note"), "--verifier", str(tmp_path / "log.pub")), "note"),
            (("verify", "--db", url, "--head", str(tmp_path / "junk.note")), "--verifier"),
            (("head", "--db", url), "key"),
        ]
        for args, named in cases:
            code, _, err = run(*args)
            assert code == 1, args
            assert len(err.strip().splitlines()) == 1 and named in err and "Traceback" not in err, (args, err)

    def test_a_rewritten_log_fails_verify_against_the_kept_head(self, tmp_path: Path) -> None:
        """Tail dropped with sqlite3 (tree rows too), new records appended: verify --head exits 1."""
        url = f"sqlite:///{tmp_path / 'l.db'}"
        fill(url, 30)
        key = SigningKey.generate("log")
        key.verifier.save(tmp_path / "log.pub")
        with Ledger(url, create=False) as led:
            (tmp_path / "h.note").write_text(led.tree_head().sign(key))
        conn = sqlite3.connect(tmp_path / "l.db")
        conn.execute("DELETE FROM stored_events WHERE rowid > 25")
        conn.execute("DELETE FROM ledger_tree_tiles")
        conn.execute("UPDATE ledger_tree_state SET size = 0, position = 0")
        conn.commit()
        conn.close()
        fill(url, 10)
        assert run("verify", "--db", url)[0] == 0
        code, _, err = run("verify", "--db", url, "--head", str(tmp_path / "h.note"), "--verifier", str(tmp_path / "log.pub"))
        assert code == 1 and "differ from the head kept earlier" in err
        assert err.strip().count("\n") == 0 and err.startswith("FAILED: position "), err

    def test_several_problems_against_a_kept_head_are_still_one_line(self, tmp_path: Path) -> None:
        """Tail dropped, tree rows left: the head's problem first, the count of the others, in one line."""
        url = f"sqlite:///{tmp_path / 'l.db'}"
        fill(url, 30)
        key = SigningKey.generate("log")
        key.verifier.save(tmp_path / "log.pub")
        with Ledger(url) as led:  # a writable open stores the tree it serves the head from
            (tmp_path / "h.note").write_text(led.tree_head().sign(key))
        conn = sqlite3.connect(tmp_path / "l.db")
        conn.execute("DELETE FROM stored_events WHERE rowid > 25")
        conn.commit()
        conn.close()
        code, _, err = run("verify", "--db", url, "--head", str(tmp_path / "h.note"), "--verifier", str(tmp_path / "log.pub"))
        assert code == 1 and err.strip().count("\n") == 0, err
        assert err.startswith("FAILED: position 26: the log holds 25 records, fewer than the 30 of the head kept earlier"), err
        assert err.strip().endswith("(and 1 more: ledger verify without --head lists them)"), err


class TestWitness:
    def test_a_witness_cosigns_extensions_and_refuses_a_fork(self, tmp_path: Path) -> None:
        """First head: cosigned; a later head of the same log: cosigned with a proof; a forked log's head: refused."""
        url = f"sqlite:///{tmp_path / 'l.db'}"
        fill(url, 20)
        log_key, witness = SigningKey.generate("log"), SigningKey.generate("witness")
        log_key.verifier.save(tmp_path / "log.pub")
        witness.save(tmp_path / "w.key")
        state = tmp_path / "state"

        def head_note(name: str) -> Path:
            with Ledger(url, create=False) as led:
                (tmp_path / name).write_text(led.tree_head().sign(log_key))
            return tmp_path / name

        common = ("--key", str(tmp_path / "w.key"), "--verifier", str(tmp_path / "log.pub"), "--state", str(state), "--db", url)
        code, out, _ = run("cosign", str(head_note("a.note")), *common)
        assert code == 0 and note_signers(out, [log_key.verifier, witness.verifier]) == ["log", "witness"]
        fill(url, 7)
        second = head_note("b.note")
        code, out, _ = run("cosign", str(second), *common)
        assert code == 0 and TreeHead.from_note(out, witness.verifier).size == 27
        proof_file = tmp_path / "p.json"
        proof_file.write_text(run("prove", "--from-size", "27", "--db", url, "--format", "json")[1])
        conn = sqlite3.connect(tmp_path / "l.db")  # the fork: rewrite from record 21 on
        conn.execute("DELETE FROM stored_events WHERE rowid > 20")
        conn.execute("DELETE FROM ledger_tree_tiles")
        conn.execute("UPDATE ledger_tree_state SET size = 0, position = 0")
        conn.commit()
        conn.close()
        fill(url, 12)
        code, _, err = run("cosign", str(head_note("c.note")), *common)
        assert code == 1 and "does not extend" in err and len(err.strip().splitlines()) == 1
        assert TreeHead.from_note((state / next(p.name for p in state.iterdir())).read_text(), witness.verifier).size == 27
