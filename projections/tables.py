"""The analytics tables: their DDL and the SQL that derives them from a page of raw events.

Every table is a pure function of the events in it, so a page can be applied
on its own: incremental catch-up and a rebuild from scratch run the same
statements over the same events and must give equal tables. DuckDB parses each
payload once (``json_transform`` into a struct) and does the unnesting; Python
only moves the raw bytes in through Arrow.

``events.payload`` is the stored JSON text as VARCHAR: DuckDB's JSON functions
and ``->>`` take it as it is, and declaring it JSON would make DuckDB validate
every payload a second time (measured: as long as parsing it).

Each table carries ``position`` (the event that produced the row), which is
what time travel of the lineage graph filters on and what a rebuild from a
position deletes.

Only the documented tables live in ``main`` (what ``SHOW TABLES`` lists); the
tracking row and the lineage graph's edge view live in the ``_ledger`` schema.
``LAYOUT`` numbers this arrangement: a file written with another one is rebuilt.
"""

from __future__ import annotations

from ledger.events.bodies import (
    ENTITY_ERASED,
    ENTITY_VERSION,
    EXECUTION_COMPLETED,
    EXECUTION_FAILED,
    EXECUTION_REEXECUTED,
    duckdb_struct,
)

__all__ = [
    "DDL",
    "DDL_PLAIN",
    "ERASE_FAILURES",
    "ERASE_OLD",
    "ERASURE_STRUCT",
    "COLUMNS",
    "EVENT_STRUCT",
    "EXECUTION_STRUCT",
    "GRAPH_EDGES",
    "INTERNAL_SCHEMA",
    "LAYOUT",
    "OTHER_STRUCT",
    "PAGE_SCRIPT",
    "PAGE_STATEMENTS",
    "REEXECUTION_STRUCT",
    "TABLES",
    "TRACKING",
    "TRACKING_DDL",
    "VERSION_STRUCT",
]

INTERNAL_SCHEMA = "_ledger"
LAYOUT = 6  # 1: tracking table in main, no layout column; 2: graph edges without their field path; 3: no memo columns, no reexecutions; 4: events without hash; 5: no run record

TABLES: dict[str, str] = {
    "events": """
        position BIGINT, stream_id VARCHAR, stream_version BIGINT, event_type VARCHAR,
        recorded_at TIMESTAMPTZ, payload VARCHAR, hash VARCHAR""",
    "entity_versions": """
        ecs_id VARCHAR, lineage_id VARCHAR, root_ecs_id VARCHAR, previous_ecs_id VARCHAR,
        entity_type VARCHAR, position BIGINT, recorded_at TIMESTAMPTZ, data JSON,
        children JSON, is_root BOOLEAN, cause VARCHAR, schema_version INTEGER, erased BOOLEAN,
        personal VARCHAR[]""",
    "executions": """
        execution_id VARCHAR, function_name VARCHAR, position BIGINT, recorded_at TIMESTAMPTZ,
        duration_ms DOUBLE, succeeded BOOLEAN, error_type VARCHAR, error_message VARCHAR,
        isolation VARCHAR, return_pattern VARCHAR, execution_ecs_id VARCHAR, sealed_with VARCHAR[],
        cache_hit BOOLEAN, reused_execution_id VARCHAR, function_version VARCHAR, actor VARCHAR,
        host VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, pid INTEGER, module VARCHAR,
        qualname VARCHAR, git_commit VARCHAR, git_dirty BOOLEAN, python_version VARCHAR,
        ledger_version VARCHAR, source_file VARCHAR""",
    "execution_arguments": """
        execution_id VARCHAR, name VARCHAR, value JSON, address VARCHAR, position BIGINT""",
    "execution_inputs": """
        execution_id VARCHAR, param_name VARCHAR, ecs_id VARCHAR, address VARCHAR, position BIGINT""",
    "execution_outputs": """
        execution_id VARCHAR, output_index INTEGER, ecs_id VARCHAR, lineage_id VARCHAR,
        semantic VARCHAR, position BIGINT""",
    "execution_configs": """
        execution_id VARCHAR, ecs_id VARCHAR, position BIGINT""",
    "lineage_edges": """
        source_ecs_id VARCHAR, target_ecs_id VARCHAR, kind VARCHAR, execution_id VARCHAR, position BIGINT""",
    "siblings": """
        execution_id VARCHAR, ecs_id VARCHAR, output_index INTEGER, position BIGINT""",
    "field_provenance": """
        address_ecs_id VARCHAR, path VARCHAR, source_ecs_id VARCHAR, execution_id VARCHAR,
        param_name VARCHAR, output_ecs_id VARCHAR, output_index INTEGER, position BIGINT""",
    "erasures": """
        lineage_id VARCHAR, reason VARCHAR, position BIGINT, recorded_at TIMESTAMPTZ""",
    "reexecutions": """
        execution_id VARCHAR, matches BOOLEAN, position BIGINT, recorded_at TIMESTAMPTZ,
        reexecution_id VARCHAR, function_name VARCHAR, duration_ms DOUBLE, error_type VARCHAR,
        differences JSON, recorded_error_type VARCHAR, function_version VARCHAR, actor VARCHAR,
        started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ""",
}


def _columns(definition: str) -> list[tuple[str, str]]:
    """``"a BIGINT, b VARCHAR[]"`` -> ``[("a", "BIGINT"), ("b", "VARCHAR[]")]`` (no type here has a comma)."""
    pairs = []
    for item in definition.split(","):
        name, _, kind = item.strip().partition(" ")
        pairs.append((name, kind.strip()))
    return pairs


#: Each documented table's columns and types, read from ``TABLES`` (what ``ledger sql --help`` lists).
COLUMNS: dict[str, list[tuple[str, str]]] = {name: _columns(cols) for name, cols in TABLES.items()}

# Config entities are inputs too (``execution_configs`` marks which).
# The lineage graph's edges in one shape: entity → entity (version, detach,
# attach), entity → execution (input, config), execution → entity (the
# output's semantic). Filters on source/target/position push down into each part.
GRAPH_EDGES = f"{INTERNAL_SCHEMA}.graph_edges"
# An input edge read by reference carries the address's path (``field``: "grades.0.score"
# of "@<uuid>.grades.0.score", from the entity the address names); other edges have none.
GRAPH_EDGES_VIEW = f"""CREATE VIEW IF NOT EXISTS {GRAPH_EDGES} AS
    SELECT source_ecs_id AS source, target_ecs_id AS target, kind, execution_id, position, NULL::VARCHAR AS field
    FROM main.lineage_edges WHERE kind <> 'execution'
    UNION ALL SELECT i.ecs_id, i.execution_id,
        CASE WHEN c.ecs_id IS NULL THEN 'input' ELSE 'config' END, i.execution_id, i.position,
        nullif(regexp_extract(i.address, '^@[0-9a-fA-F-]{{32,36}}\\.?(.*)$', 1), '')
    FROM main.execution_inputs i LEFT JOIN main.execution_configs c USING (execution_id, ecs_id)
    WHERE i.ecs_id IS NOT NULL
    UNION ALL SELECT execution_id, ecs_id, semantic, execution_id, position, NULL FROM main.execution_outputs"""

TRACKING = f"{INTERNAL_SCHEMA}.projection_tracking"

TRACKING_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TRACKING} ("
    "name VARCHAR PRIMARY KEY, position BIGINT NOT NULL, head_hash VARCHAR, layout INTEGER NOT NULL)"
)

# The JSON text columns are stored with zstd. In a DuckDB file, the default
# (dictionary + FSST, chosen per segment by analysing it) made writing a page cost
# three times as much as the page's parse, and zstd keeps those columns at a third of
# the size (measured on the workload mix: 146 MB → 76 MB for 200k events, catch-up
# into a file 1.35× faster). In-memory tables are not compressed either way. A DuckDB
# without zstd for strings (before 1.2) gets ``DDL_PLAIN``.
_ZSTD = {("events", "payload"), ("entity_versions", "data"), ("entity_versions", "children")}


def _create(name: str, columns: str, zstd: bool) -> str:
    for table, column in _ZSTD if zstd else ():
        if table == name:
            kind = "VARCHAR" if f"{column} VARCHAR" in columns else "JSON"
            columns = columns.replace(f"{column} {kind}", f"{column} {kind} USING COMPRESSION zstd", 1)
    return f"CREATE TABLE IF NOT EXISTS main.{name} ({columns})"


def _ddl(zstd: bool) -> list[str]:
    return (
        [f"CREATE SCHEMA IF NOT EXISTS {INTERNAL_SCHEMA}"]
        + [_create(name, cols, zstd) for name, cols in TABLES.items()]
        + [GRAPH_EDGES_VIEW, TRACKING_DDL]
    )


DDL = _ddl(zstd=True)
DDL_PLAIN = _ddl(zstd=False)

# What each event type's payload is parsed into, typed by the codec's event models.
# Each payload is parsed once, into the struct of its own type: one struct for every
# type (a key an event type does not have coming out NULL) cost a third more, since
# json_transform looks up every key of the struct in every payload. An event type
# this library does not know only gives ``events`` its time.
_VERSION_FIELDS = [
    "recorded_at", "ecs_id", "lineage_id", "tree_root", "previous_ecs_id", "entity_type",
    "values", "children", "is_root", "cause", "schema_version", "detached_from",
    "attached_to", "personal",
]
_EXECUTION_FIELDS = [
    "recorded_at", "execution_id", "function_name", "duration_ms", "error_type", "error_message",
    "isolation", "return_pattern", "execution_ecs_id", "inputs", "outputs", "config_ids",
    "sibling_group", "sealed_with", "cache_hit", "reused_execution_id", "arguments",
    "function_version", "actor", "host", "started_at", "finished_at", "pid", "module", "qualname",
    "git_commit", "git_dirty", "python_version", "ledger_version", "source_file",
]
_ERASURE_FIELDS = ["recorded_at", "lineage_id", "reason"]
VERSION_STRUCT = duckdb_struct(_VERSION_FIELDS)
EXECUTION_STRUCT = duckdb_struct(_EXECUTION_FIELDS)
ERASURE_STRUCT = duckdb_struct(_ERASURE_FIELDS)
_REEXECUTION_FIELDS = [
    "recorded_at", "execution_id", "reexecution_id", "function_name", "matches", "duration_ms", "error_type",
    "recorded_error_type", "function_version", "actor", "started_at", "finished_at",
]
REEXECUTION_STRUCT = duckdb_struct(_REEXECUTION_FIELDS)
OTHER_STRUCT = duckdb_struct(["recorded_at"])
#: All of them in one struct: what DuckDB's own ingest of the payloads is measured
#: against (``tools/bench/bench_read.py``).
EVENT_STRUCT = duckdb_struct(list(dict.fromkeys(_VERSION_FIELDS + _EXECUTION_FIELDS + _ERASURE_FIELDS)))

# The tombstone: an erased lineage's personal fields (stored as ciphertext, whose key
# is gone) read "<erased>"; its other fields stay as they were. A version is erased when
# its lineage has an erasure anywhere in the log: a page's own versions of a lineage
# erased so far (that page included) go in with it already (``PAGE_STATEMENTS``), and
# rows applied before an erasure of their lineage get it after (``ERASE_OLD``, and
# ``ERASE_FAILURES``: a failure sealed with an erased lineage's key can no longer be
# read), given the position from which erasures are new. Both scan the whole table, so
# they run once per transaction that applied an erasure, before it commits.
_ERASED_DATA = """CASE WHEN coalesce(len({personal}), 0) = 0 THEN {data}
               ELSE json_merge_patch({data}, to_json(map_from_entries(
                   list_transform({personal}, lambda k: {{'key': k, 'value': '<erased>'}})))) END"""
ERASE_OLD = f"""UPDATE entity_versions SET erased = true, data = {_ERASED_DATA.format(data="data", personal="personal")}
        WHERE NOT erased AND lineage_id IN (SELECT lineage_id FROM erasures WHERE position >= ?)"""

# Run in order over the staged page ``stage(position, stream_id, stream_version,
# event_type, payload, opened)``, whose rows are in position order. ``_v``, ``_x`` and
# ``_r`` hold the page's entity versions, executions (completed or failed) and erasures
# parsed, ``_o`` the time of any other event (the payload itself stays in ``stage``:
# copying it too cost as much as parsing it). ``opened`` is the decrypted message of a
# failure sealed with personal keys (``ledger/events/sealed_failure.py``; '<erased>' once
# a key is gone), NULL otherwise.
#
# Rows go in in position order without an ORDER BY where the source already is
# (DuckDB keeps insertion order, ``preserve_insertion_order``): sorting a page of
# payloads cost a third of the page. ``events`` pairs each staged row with its parsed
# time by place (POSITIONAL JOIN, no hashing) and fails loudly if the two ever disagree.
PAGE_STATEMENTS: list[str] = [
    f"""CREATE OR REPLACE TEMP TABLE _v AS
        SELECT position, json_transform(payload, '{VERSION_STRUCT}') AS e
        FROM stage WHERE event_type = '{ENTITY_VERSION}'""",
    f"""CREATE OR REPLACE TEMP TABLE _x AS
        SELECT position, event_type = '{EXECUTION_COMPLETED}' AS succeeded,
               json_transform(payload, '{EXECUTION_STRUCT}') AS e, opened
        FROM stage WHERE event_type IN ('{EXECUTION_COMPLETED}', '{EXECUTION_FAILED}')""",
    f"""CREATE OR REPLACE TEMP TABLE _r AS
        SELECT position, json_transform(payload, '{ERASURE_STRUCT}') AS e
        FROM stage WHERE event_type = '{ENTITY_ERASED}'""",
    f"""CREATE OR REPLACE TEMP TABLE _q AS
        SELECT position, json_transform(payload, '{REEXECUTION_STRUCT}') AS e, payload
        FROM stage WHERE event_type = '{EXECUTION_REEXECUTED}'""",
    f"""CREATE OR REPLACE TEMP TABLE _o AS
        SELECT position, json_transform(payload, '{OTHER_STRUCT}') AS e
        FROM stage WHERE event_type NOT IN
            ('{ENTITY_VERSION}', '{EXECUTION_COMPLETED}', '{EXECUTION_FAILED}', '{ENTITY_ERASED}', '{EXECUTION_REEXECUTED}')""",
    """INSERT INTO events
        SELECT s.position, s.stream_id::UUID::VARCHAR, s.stream_version, s.event_type,
               CASE WHEN p.position = s.position THEN p.recorded_at
                    ELSE error('analytics: staged and parsed rows out of step at position ' || s.position) END,
               s.payload, s.hash
        FROM stage s POSITIONAL JOIN (
            SELECT position, e.recorded_at FROM _v UNION ALL SELECT position, e.recorded_at FROM _x
            UNION ALL SELECT position, e.recorded_at FROM _r UNION ALL SELECT position, e.recorded_at FROM _q
            UNION ALL SELECT position, e.recorded_at FROM _o
            ORDER BY position) p""",
    """INSERT INTO erasures SELECT e.lineage_id, e.reason, position, e.recorded_at FROM _r ORDER BY position""",
    """INSERT INTO reexecutions
        SELECT e.execution_id, e.matches, position, e.recorded_at, e.reexecution_id, e.function_name,
               e.duration_ms, e.error_type, json_extract(payload, '$.differences'), e.recorded_error_type,
               e.function_version, e.actor, e.started_at, e.finished_at
        FROM _q ORDER BY position""",
    # a version of a lineage erased so far (this page included) goes in with its tombstone
    f"""INSERT INTO entity_versions
        SELECT e.ecs_id, e.lineage_id, e.tree_root, e.previous_ecs_id, e.entity_type, position,
               e.recorded_at, CASE WHEN gone THEN {_ERASED_DATA.format(data="e.values", personal="e.personal")}
                                   ELSE e.values END,
               e.children, e.is_root, e.cause, e.schema_version, gone, e.personal
        FROM (SELECT position, e, coalesce(e.lineage_id IN (SELECT lineage_id FROM erasures), false) AS gone FROM _v)""",
    """INSERT INTO executions
        SELECT e.execution_id, e.function_name, position, e.recorded_at, e.duration_ms, succeeded,
               e.error_type, coalesce(opened, e.error_message), e.isolation, e.return_pattern,
               e.execution_ecs_id, e.sealed_with, coalesce(e.cache_hit, false), e.reused_execution_id,
               e.function_version, e.actor, e.host, e.started_at, e.finished_at, e.pid, e.module,
               e.qualname, e.git_commit, e.git_dirty, e.python_version, e.ledger_version, e.source_file
        FROM _x""",
    # One row per recorded argument, in the order called; ``address`` is the pinned reference
    # (a ``"@…"`` string) or the entity version (``{"$e": id}`` → ``"@<id>"``) it stands for.
    """INSERT INTO execution_arguments
        SELECT execution_id, name, value,
               CASE WHEN json_type(value) = 'VARCHAR' AND starts_with(value->>'$', '@')
                         AND NOT starts_with(value->>'$', '@@') THEN value->>'$'
                    WHEN json_type(value) = 'OBJECT' AND json_keys(value) = ['$e'] THEN '@' || (value->>'$."$e"')
               END, position
        FROM (SELECT position, execution_id, keys[i] AS name, json_extract(args, '$."' || keys[i] || '"') AS value, i
              FROM (SELECT position, e.execution_id AS execution_id, e.arguments AS args,
                           json_keys(e.arguments) AS keys, generate_subscripts(json_keys(e.arguments), 1) AS i
                    FROM _x WHERE e.arguments IS NOT NULL))
        ORDER BY position, i""",
    """INSERT INTO execution_inputs
        SELECT execution_id, i.param_name, i.ecs_id, i.address, position
        FROM (SELECT position, e.execution_id AS execution_id, unnest(e.inputs) AS i FROM _x)
        WHERE i.ecs_id IS NOT NULL OR i.address IS NOT NULL
        ORDER BY position""",
    """INSERT INTO execution_outputs
        SELECT execution_id, o.output_index, o.ecs_id, o.lineage_id, o.semantic, position
        FROM (SELECT position, e.execution_id AS execution_id, unnest(e.outputs) AS o FROM _x)
        ORDER BY position""",
    """INSERT INTO execution_configs
        SELECT execution_id, c, position
        FROM (SELECT position, e.execution_id AS execution_id, unnest(e.config_ids) AS c FROM _x)
        ORDER BY position""",
    """INSERT INTO siblings
        SELECT e.execution_id, e.sibling_group[i], (i - 1)::INTEGER, position
        FROM (SELECT position, e, generate_subscripts(e.sibling_group, 1) AS i FROM _x)
        ORDER BY position, i""",
    """INSERT INTO lineage_edges
        SELECT * FROM (
        SELECT e.previous_ecs_id AS s, e.ecs_id AS t, 'version' AS kind, NULL AS x, position
        FROM _v WHERE e.previous_ecs_id IS NOT NULL
        UNION ALL
        SELECT e.detached_from, e.ecs_id, 'detach', NULL, position
        FROM _v WHERE e.detached_from IS NOT NULL
        UNION ALL
        SELECT e.previous_ecs_id, e.attached_to, 'attach', NULL, position
        FROM _v WHERE e.attached_to IS NOT NULL AND e.previous_ecs_id IS NOT NULL
        UNION ALL
        SELECT i.ecs_id, o.ecs_id, 'execution', execution_id, position
        FROM (SELECT position, e.execution_id AS execution_id, unnest(e.inputs) AS i, e.outputs AS outs FROM _x)
             , unnest(outs) AS t(o)
        WHERE i.ecs_id IS NOT NULL
        ) ORDER BY position, kind, s, t""",
    # "@<uuid>.a.b.0" → address_ecs_id, path "a.b.0"; source_ecs_id is the entity the value was read from.
    """INSERT INTO field_provenance
        SELECT regexp_extract(i.address, '^@([0-9a-fA-F-]{32,36})', 1)::UUID::VARCHAR,
               nullif(regexp_extract(i.address, '^@[0-9a-fA-F-]{32,36}\\.?(.*)$', 1), ''),
               i.ecs_id, execution_id, i.param_name, o.ecs_id, o.output_index, position
        FROM (SELECT position, e.execution_id AS execution_id, unnest(e.inputs) AS i, e.outputs AS outs FROM _x)
             , unnest(outs) AS t(o)
        WHERE i.address IS NOT NULL
        ORDER BY position""",
]

# The page's statements as one script: one call into DuckDB per page, which releases the
# GIL once (each call waits for it again while the reader thread hashes the next page).
PAGE_SCRIPT = ";\n".join(PAGE_STATEMENTS)

ERASE_FAILURES = """UPDATE executions SET error_message = '<erased>'
        WHERE error_message IS DISTINCT FROM '<erased>'
          AND list_has_any(sealed_with, (SELECT list(lineage_id) FROM erasures WHERE position >= ?))"""
