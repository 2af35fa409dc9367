"""OpenLineage export (``Ledger.export_openlineage``, ``ledger export --openlineage``).

Every emitted line is validated by rebuilding it from ``openlineage-python``'s own models
(``openlineage.client.event_v2`` and the facet classes): a key the models do not know is
a TypeError, a bad runId, time or enum a ValueError, a facet whose schemaURL is not the
model's own a failed assertion, and what the models serialise must equal the line. The
spec's JSON schema file is not shipped by any package the registries here carry, so it
is not used.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    parent_run,
    processing_engine_run,
    source_code_job,
    source_code_location_job,
)
from openlineage.client.serde import Serde
from typer.testing import CliRunner

import ledger
from ledger import CallableRegistry, Ledger, errors
from ledger.cli import app
from projections.openlineage import OpenLineageQueryError, dataset_name, job_namespace, store_namespace
from tests.conftest import fresh_pg_url
from tests.models import Patient, Student, student

runner = CliRunner()
SECRET = "Quentin Never-In-Export"


@CallableRegistry.register("ol_mean")
def ol_mean(scores: list[float]) -> float:
    return sum(scores) / len(scores)


@CallableRegistry.register("ol_curve")
def ol_curve(st: Student, bonus: float) -> Student:
    st.grades[0].score += bonus
    return st


@CallableRegistry.register("ol_fail")
def ol_fail(st: Student) -> float:
    raise ValueError("no grades for " + st.name)


@CallableRegistry.register("ol_admit")
def ol_admit(patient: Patient) -> Patient:
    raise ValueError("cannot admit " + patient.name)


# ------------------------------------------------------------------ validation
def _facet(cls: type, data: dict[str, Any], **built: Any) -> Any:
    data = dict(data)
    producer, schema = data.pop("_producer"), data.pop("_schemaURL")
    facet = cls(**{**data, **built}, producer=producer)
    assert facet._schemaURL == schema, (cls.__name__, schema)
    return facet


def _column_lineage(data: dict[str, Any]) -> Any:
    cl = column_lineage_dataset

    def input_field(f: dict[str, Any]) -> Any:
        return cl.InputField(**{**f, "transformations": [cl.Transformation(**t) for t in f.get("transformations", [])]})

    fields = {
        name: cl.Fields(**{**spec, "inputFields": [input_field(f) for f in spec["inputFields"]]})
        for name, spec in data["fields"].items()
    }
    return _facet(cl.ColumnLineageDatasetFacet, {k: v for k, v in data.items() if k != "fields"}, fields=fields)


def _parent(data: dict[str, Any]) -> Any:
    return _facet(
        parent_run.ParentRunFacet,
        {k: v for k, v in data.items() if k not in ("run", "job")},
        run=parent_run.Run(**data["run"]),
        job=parent_run.Job(**data["job"]),
    )


_DATASET_FACETS = {
    "columnLineage": _column_lineage,
    "version": lambda d: _facet(dataset_version_dataset.DatasetVersionDatasetFacet, d),
}
_RUN_FACETS = {
    "errorMessage": lambda d: _facet(error_message_run.ErrorMessageRunFacet, d),
    "processing_engine": lambda d: _facet(processing_engine_run.ProcessingEngineRunFacet, d),
    "parent": _parent,
}
_JOB_FACETS = {
    "jobType": lambda d: _facet(job_type_job.JobTypeJobFacet, d),
    "sourceCodeLocation": lambda d: _facet(source_code_location_job.SourceCodeLocationJobFacet, d),
    "sourceCode": lambda d: _facet(source_code_job.SourceCodeJobFacet, d),
}


def _facets(table: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return {name: table[name](value) for name, value in data.items()}  # an unknown facet: KeyError


def _dataset(cls: type, data: dict[str, Any]) -> Any:
    data = dict(data)
    return cls(data.pop("namespace"), data.pop("name"), facets=_facets(_DATASET_FACETS, data.pop("facets", {})), **data)


def _pruned(value: Any) -> Any:
    """Empty facets / lists dropped: the models add ``inputFacets: {}`` and the like, the export leaves them out."""
    if isinstance(value, dict):
        pruned = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def validated(line: dict[str, Any]) -> RunEvent:
    """The line rebuilt from the OpenLineage models; it must serialise back to itself."""
    data = dict(line)
    run, job = data.pop("run"), data.pop("job")
    event = RunEvent(
        eventType=RunState(data.pop("eventType")),
        eventTime=data.pop("eventTime"),
        run=Run(runId=run["runId"], facets=_facets(_RUN_FACETS, run.get("facets", {}))),
        job=Job(namespace=job["namespace"], name=job["name"], facets=_facets(_JOB_FACETS, job.get("facets", {}))),
        producer=data.pop("producer"),
        inputs=[_dataset(InputDataset, d) for d in data.pop("inputs")],
        outputs=[_dataset(OutputDataset, d) for d in data.pop("outputs")],
    )
    assert event.schemaURL == data.pop("schemaURL")
    assert data == {}, f"keys the RunEvent model does not have: {sorted(data)}"
    assert _pruned(Serde.to_dict(event)) == _pruned(line)
    return event


def read_lines(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(text) for text in path.read_text().splitlines()]
    for line in lines:
        validated(line)
    return lines


# ------------------------------------------------------------------ fixtures
@pytest.fixture
def lg(durable_url: str) -> Iterator[Ledger]:
    led = ledger.connect(durable_url)
    yield led
    led.close()
    ledger.set_default_ledger(None)


def _pipeline() -> dict[str, Any]:
    s = student("Alice")
    s.promote_to_root()
    curved = CallableRegistry.execute("ol_curve", st=s, bonus=0.5)
    mean = CallableRegistry.execute("ol_mean", scores=[f"@{curved.ecs_id}.grades.0.score", f"@{s.lineage_id}.grades.1.score"])
    with pytest.raises(ValueError):
        CallableRegistry.execute("ol_fail", st=curved)
    return {"student": s, "curved": curved, "mean": mean}


def _executions(led: Ledger) -> list[tuple[Any, ...]]:
    return led.sql(
        "select execution_id, function_name, succeeded, recorded_at, duration_ms, position from executions order by position"
    ).fetchall()


class TestExport:
    def test_every_line_validates_and_each_run_starts_and_ends(self, lg: Ledger, tmp_path: Path) -> None:
        """Per execution: a START at its start, then COMPLETE or FAIL at its record's time, same runId."""
        _pipeline()
        done = lg.export_openlineage(tmp_path / "runs.ndjson")
        lines = read_lines(tmp_path / "runs.ndjson")
        executions = _executions(lg)
        assert (done.events, done.executions, done.last_position) == (6, 3, executions[-1][5])
        assert len(lines) == 2 * len(executions)
        for (execution_id, function, succeeded, recorded_at, duration_ms, _), start, end in zip(
            executions, lines[0::2], lines[1::2]
        ):
            assert start["run"]["runId"] == end["run"]["runId"] == execution_id
            assert start["eventType"] == "START" and end["eventType"] == ("COMPLETE" if succeeded else "FAIL")
            assert start["job"] == end["job"] and start["job"]["namespace"] == job_namespace(lg.url)
            assert start["job"]["namespace"] == "entity-ledger:" + store_namespace(lg.url)
            assert start["job"]["name"] == function
            began = datetime.fromisoformat(start["eventTime"])
            ended = datetime.fromisoformat(end["eventTime"])
            # the run record's own times: started before the function ran, finished before the record
            assert began <= ended <= recorded_at
            engine = end["run"]["facets"]["processing_engine"]
            assert engine["name"] == "entity-ledger" and engine["version"] == ledger.__version__
            location = end["job"]["facets"]["sourceCodeLocation"]
            assert location["path"] == __file__ and location["url"] == Path(__file__).as_uri()
            # this file still holds the code that ran: its text, which hashes to the recorded version
            code = end["job"]["facets"]["sourceCode"]
            assert code["language"] == "python" and "def " in code["sourceCode"]
            assert code["sourceCode"] in Path(__file__).read_text()

    def test_every_dataset_names_the_version_read_or_written_and_a_rerun_names_its_parent(
        self, lg: Ledger, tmp_path: Path
    ) -> None:
        """``version`` facets carry ecs_ids; a re-execution is its own run with a ``parent`` facet."""
        made = _pipeline()
        again = lg.reexecute(made["curved"].derived_from_execution_id)
        lg.export_openlineage(tmp_path / "runs.ndjson")
        lines = read_lines(tmp_path / "runs.ndjson")
        curve_end = lines[1]
        assert curve_end["inputs"][0]["facets"]["version"]["datasetVersion"] == str(made["student"].ecs_id)
        assert curve_end["outputs"][0]["facets"]["version"]["datasetVersion"] == str(made["curved"].ecs_id)
        rerun = [line for line in lines if line["run"]["runId"] == str(again.reexecution_id)]
        assert [line["eventType"] for line in rerun] == ["START", "COMPLETE"]
        parent = rerun[1]["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == str(made["curved"].derived_from_execution_id)
        assert parent["job"] == {"namespace": job_namespace(lg.url), "name": "ol_curve"}

    def test_datasets_are_the_entities_read_and_written(self, lg: Ledger, tmp_path: Path) -> None:
        """Inputs: the versions read and the entities addresses named; outputs: the entities written."""
        run = _pipeline()
        s, curved, mean = run["student"], run["curved"], run["mean"]
        lg.export_openlineage(tmp_path / "runs.ndjson")
        lines = read_lines(tmp_path / "runs.ndjson")
        namespace = store_namespace(lg.url)
        student_ds = dataset_name("tests.models:Student", str(s.lineage_id))
        grade0 = dataset_name("tests.models:Grade", str(curved.grades[0].lineage_id))
        grade1 = dataset_name("tests.models:Grade", str(s.grades[1].lineage_id))
        curve_end, mean_end, fail_end = lines[1], lines[3], lines[5]
        assert {d["namespace"] for line in lines for d in line["inputs"] + line["outputs"]} == {namespace}
        assert [d["name"] for d in curve_end["inputs"]] == [student_ds]
        assert [d["name"] for d in curve_end["outputs"]] == [student_ds]
        assert {d["name"] for d in mean_end["inputs"]} == {grade0, grade1, student_ds}
        (out,) = mean_end["outputs"]
        assert out["name"].endswith(f"/{mean.lineage_id}") and out["name"].startswith("ledger.outputs:result:")
        assert fail_end["outputs"] == [] and [d["name"] for d in fail_end["inputs"]] == [student_ds]

    def test_column_lineage_comes_from_field_provenance(self, lg: Ledger, tmp_path: Path) -> None:
        """The result field lists the two referenced paths, each in the dataset its address named."""
        run = _pipeline()
        s, curved = run["student"], run["curved"]
        lg.export_openlineage(tmp_path / "runs.ndjson")
        mean_end = read_lines(tmp_path / "runs.ndjson")[3]
        facet = mean_end["outputs"][0]["facets"]["columnLineage"]
        assert list(facet["fields"]) == ["result"]
        read = sorted((f["name"], f["field"]) for f in facet["fields"]["result"]["inputFields"])
        assert read == sorted([
            (dataset_name("tests.models:Student", str(curved.lineage_id)), "grades.0.score"),
            (dataset_name("tests.models:Student", str(s.lineage_id)), "grades.1.score"),
        ])
        curve_end = read_lines(tmp_path / "runs.ndjson")[1]
        assert "columnLineage" not in curve_end["outputs"][0]["facets"]  # an entity argument names no field

    def test_a_failure_carries_its_error_message_facet(self, lg: Ledger, tmp_path: Path) -> None:
        """FAIL has errorMessage: the error type and text, the Python traceback."""
        _pipeline()
        lg.export_openlineage(tmp_path / "runs.ndjson")
        fail = read_lines(tmp_path / "runs.ndjson")[5]
        error = fail["run"]["facets"]["errorMessage"]
        assert error["message"] == "ValueError: no grades for Alice" and error["programmingLanguage"] == "PYTHON"
        assert "Traceback" in error["stackTrace"] and "no grades for Alice" in error["stackTrace"]

    def test_since_exports_only_later_executions(self, lg: Ledger, tmp_path: Path) -> None:
        """--since POSITION continues a file; --since TIME keeps what was recorded from then on."""
        _pipeline()
        first = lg.export_openlineage(tmp_path / "a.ndjson")
        more = _pipeline()
        rest = lg.export_openlineage(tmp_path / "b.ndjson", since=first.last_position + 1)
        whole = lg.export_openlineage(tmp_path / "all.ndjson")
        assert rest.executions == 3 and whole.executions == 6
        joined = read_lines(tmp_path / "a.ndjson") + read_lines(tmp_path / "b.ndjson")
        assert joined == read_lines(tmp_path / "all.ndjson")
        executions = _executions(lg)
        at = executions[4][3]
        timed = lg.export_openlineage(tmp_path / "t.ndjson", since=at)
        assert [line["run"]["runId"] for line in read_lines(tmp_path / "t.ndjson")[::2]] == [e[0] for e in executions[4:]]
        assert timed.executions == 2 and more["mean"] is not None

    def test_bad_since_is_refused_and_writes_nothing(self, lg: Ledger, tmp_path: Path) -> None:
        """A naive time, a negative position or another type: OpenLineageQueryError, no file."""
        _pipeline()
        head = lg.store.head()
        for bad in (datetime(2026, 1, 1), -1, "12", 1.5):
            with pytest.raises(OpenLineageQueryError, match="since"):
                lg.export_openlineage(tmp_path / "x.ndjson", since=bad)
        assert not (tmp_path / "x.ndjson").exists() and lg.store.head() == head
        assert issubclass(OpenLineageQueryError, errors.LedgerError)

    def test_sealed_failure_text_is_exported_only_while_its_key_exists(self, lg: Ledger, tmp_path: Path) -> None:
        """A failure that read personal data: readable before erasure, never in the file after it."""
        p = Patient(name=SECRET, ward="north")
        lg.registry.register_entity(p)
        with pytest.raises(ValueError):
            CallableRegistry.execute("ol_admit", patient=p)
        lg.export_openlineage(tmp_path / "before.ndjson")
        assert SECRET in read_lines(tmp_path / "before.ndjson")[1]["run"]["facets"]["errorMessage"]["message"]
        lg.erase(p.lineage_id, reason="request")
        lg.export_openlineage(tmp_path / "after.ndjson")
        assert SECRET not in (tmp_path / "after.ndjson").read_text()
        error = read_lines(tmp_path / "after.ndjson")[1]["run"]["facets"]["errorMessage"]
        assert "<erased>" in error["message"]


class TestNamespace:
    def test_no_credentials_ever(self) -> None:
        """User and password leave the namespace; host, port, database and schema stay."""
        url = "postgresql://alice:s3cr%40t-pw@db.example.invalid:6543/audit?schema=school"
        assert store_namespace(url) == "postgresql://db.example.invalid:6543/audit?schema=school"
        assert store_namespace("postgresql://bob@[::1]/x") == "postgresql://[::1]:5432/x"

    def test_sqlite_and_memory(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A relative SQLite path becomes the absolute URL of the same file."""
        monkeypatch.chdir(tmp_path)
        assert store_namespace("sqlite:///a.db") == f"sqlite:///{tmp_path / 'a.db'}"
        assert store_namespace(f"sqlite:///{tmp_path / 'b.db'}") == f"sqlite:///{tmp_path / 'b.db'}"
        assert store_namespace("memory://") == "memory://"

    def test_a_postgresql_password_never_reaches_the_file(self, tmp_path: Path) -> None:
        """Exported from a PostgreSQL URL with a password (trust auth ignores it): not one byte of it in the file."""
        for base in fresh_pg_url():
            password = "Hunter2-Very-Secret"
            parts = urlsplit(base)  # whatever database, user and port LEDGER_TEST_PG names
            server = f"{parts.hostname}:{parts.port or 5432}"
            url = parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{server}").geturl()
            assert password in url and url != base
            led = ledger.connect(url)
            try:
                _pipeline()
                led.export_openlineage(tmp_path / "pg.ndjson")
            finally:
                led.close()
                ledger.set_default_ledger(None)
            text = (tmp_path / "pg.ndjson").read_text()
            lines = read_lines(tmp_path / "pg.ndjson")
            assert password not in text and "postgres:" not in text and len(lines) == 6
            schema = base.rpartition("schema=")[2]
            assert lines[1]["inputs"][0]["namespace"] == f"postgresql://{server}{parts.path}?schema={schema}"


class TestExportCommand:
    def test_writes_the_file_and_says_how_to_continue(self, durable_url: str, tmp_path: Path) -> None:
        """`ledger export --openlineage FILE` then `--since N` gives the rest; every line validates."""
        led = ledger.connect(durable_url)
        _pipeline()
        led.close()
        ledger.set_default_ledger(None)
        target = tmp_path / "runs.ndjson"
        result = runner.invoke(app, ["export", "--openlineage", str(target), "--db", durable_url, "--analytics", "memory"])
        assert result.exit_code == 0, result.output
        assert f"{target}: 6 OpenLineage events for 3 executions" in result.stdout
        assert len(read_lines(target)) == 6
        next_since = result.stdout.rpartition("--since ")[2].rstrip(")\n")
        again = runner.invoke(
            app, ["export", "--openlineage", str(target), "--since", next_since, "--db", durable_url, "--analytics", "memory"]
        )
        assert again.exit_code == 0 and "0 OpenLineage events for 0 executions" in again.stdout
        assert target.read_text() == ""

    def test_bad_options_are_one_line(self, durable_url: str, tmp_path: Path) -> None:
        """No target, --since without --openlineage, a bad --since: exit 1, one line, no traceback."""
        led = ledger.connect(durable_url)
        _pipeline()
        led.close()
        ledger.set_default_ledger(None)
        for args in (
            ["export"],
            ["export", "--parquet", str(tmp_path / "pq"), "--since", "3"],
            ["export", "--openlineage", str(tmp_path / "x"), "--since", "yesterday"],
        ):
            result = runner.invoke(app, [*args, "--db", durable_url, "--analytics", "memory"])
            assert result.exit_code == 1, (args, result.output)
            assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "x").exists()


class TestSourceCode:
    """The ``sourceCode`` job facet shows only code that provably ran."""

    def test_the_text_that_ran_is_shown_and_an_edited_file_is_not(self, tmp_path: Path) -> None:
        """A function in its own file: its source while the file is unchanged; nothing once it is edited."""
        (tmp_path / "olsrc.py").write_text(
            "from ledger import CallableRegistry\n\n\n"
            "@CallableRegistry.register('olsrc_double')\n"
            "def double(x: float) -> float:\n"
            "    return 2 * x\n"
        )
        url = f"sqlite:///{tmp_path / 'ol.db'}"
        code = (
            "import sys, ledger\n"
            f"sys.path.insert(0, {str(tmp_path)!r})\n"
            "import olsrc\n"
            f"led = ledger.connect({url!r})\n"
            "ledger.CallableRegistry.execute('olsrc_double', x=2.0)\n"
            "led.close()\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=300)

        def facet() -> dict[str, Any] | None:
            with Ledger(url, create=False) as led:
                led.export_openlineage(tmp_path / "runs.ndjson")
            end = read_lines(tmp_path / "runs.ndjson")[-1]
            found: dict[str, Any] | None = end["job"]["facets"].get("sourceCode")
            return found

        shown = facet()
        assert shown is not None and shown["sourceCode"] == (
            "@CallableRegistry.register('olsrc_double')\ndef double(x: float) -> float:\n    return 2 * x\n"
        )
        (tmp_path / "olsrc.py").write_text((tmp_path / "olsrc.py").read_text().replace("2 * x", "3 * x"))
        assert facet() is None  # the file no longer holds the code that ran: no text is shown

