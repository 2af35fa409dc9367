"""Helpers shared by the analytics projection's tests (test_tables.py, test_analytics.py, test_lineage.py,
test_analytics_cache.py): the tables as rows, and a workload student."""

from __future__ import annotations

import duckdb

from projections.analytics import Analytics

from tools.workload import WGrade, WStudent


def table_rows(con: duckdb.DuckDBPyConnection, name: str) -> list[tuple]:
    return con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()


def all_tables(analytics: Analytics) -> dict[str, list[tuple]]:
    return {name: table_rows(analytics.con, name) for name in analytics.tables()}


def student(name: str = "Ada") -> WStudent:
    return WStudent(name=name, grades=[WGrade(course="math", score=3.0), WGrade(course="art", score=2.0)])
