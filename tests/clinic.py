"""Registered functions that fail on personal inputs, and log readers, shared by the erasure tests
(``test_keys``, ``test_pg_keys``, ``test_sealed_failure``, ``test_key_audit``, ``test_analytics_cache``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

import ledger
from ledger import CallableRegistry, Ledger

from .models import Clinic, Grade, Patient


SECRET = "Yolanda Uniquely-Private"


OTHER = "Xavier Also-Private"


@CallableRegistry.register("trust_admit")
def admit(patient: Patient) -> Patient:
    raise ValueError("cannot admit " + patient.name)


@CallableRegistry.register("trust_pair")
def pair(first: Patient, second: Patient) -> int:
    raise ValueError(f"cannot pair {first.name} with {second.name}")


@CallableRegistry.register("trust_clinic")
def clinic_fails(clinic: Clinic) -> int:
    raise RuntimeError("first patient: " + clinic.patients[0].name)


@CallableRegistry.register("trust_by_name")
def by_name(name: str) -> int:
    raise KeyError("no record for " + name)


@CallableRegistry.register("trust_plain")
def plain_fails(grade: Grade) -> int:
    raise ValueError(f"bad course {grade.course}")


@CallableRegistry.register("trust_forked", isolation="process")
def forked_fails(patient: Patient) -> int:
    raise ValueError("forked cannot admit " + patient.name)


# ------------------------------------------------------------------ helpers
def _patient(led: Ledger, name: str = SECRET) -> Patient:
    p = Patient(name=name, email="someone@example.invalid", ward="north")
    led.registry.register_entity(p)
    return p


def _raw_states(led: Ledger) -> bytes:
    return b"".join(bytes(n.state) for n in led.store.iter_all())


def _payloads(led: Ledger, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(n.state) for n in led.store.iter_all() if n.topic == topic]


def _files(directory: Path) -> bytes:
    """Every byte of every file the SQLite store has (database, -wal, -shm)."""
    return b"".join(f.read_bytes() for f in directory.iterdir() if f.is_file())


def _fail(led: Ledger, function: str, /, **kwargs: Any) -> BaseException:
    ledger.set_default_ledger(led)
    try:
        with pytest.raises(Exception) as caught:
            CallableRegistry.execute(function, **kwargs)
        return caught.value
    finally:
        ledger.set_default_ledger(None)


def _schema(url: str) -> str:
    return url.rpartition("schema=")[2]
