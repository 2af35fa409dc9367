"""The PostgreSQL append as one server-side function: one round trip per batch.

``PostgresBackend.append`` from Python needs two round trips under the events table's lock
(the head, then the sealed rows), and before that one per statement: the lock was held, and
every other writer waited, for all of them. ``ledger_append_v1`` does the same in the server:
the lock, the head and its chain link (from the index tracking row), the seal of each event
exactly as ``ledger.events.seal.seal_batch`` computes it (seal v2; ``tests/test_pg_append.py``
compares the bytes), the events, the version-index rows, the tracking row and the
notification. A tracking row that does not name the log's head (an index being rebuilt or
caught up) raises ``LDG01``; the caller then takes the Python path, which reads the head
itself. The function returns the head's link and every hash: the caller seals the batch again
with ``seal_batch`` before it commits (filling ``NewEvent.state``), and rolls back when the two
disagree, so a record the library would not have sealed so is never written.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FALLBACK_STATES", "FUNCTION", "create_append_function"]

#: The function's name (versioned: a changed body gets a new name, so old and new libraries
#: writing one schema each call their own).
FUNCTION = "ledger_append_v1"

#: SQLSTATEs after which the caller appends the Python way: the index does not name the
#: head (LDG01), a table or the function is missing (a schema of an older library).
FALLBACK_STATES = frozenset({"LDG01", "42P01", "42883"})

_BODY = """\
CREATE OR REPLACE FUNCTION {schema}.{fn}(
    p_streams uuid[],
    p_versions bigint[],
    p_topics text[],
    p_bodies bytea[],
    p_prev text[],          -- each event's stream head hash before this batch (NULL: a new stream)
    p_prev_in_batch int[],  -- 1-based index of the same stream's previous event in this batch, 0 if none
    p_v_ecs uuid[],         -- version rows: ecs_id, offset in the batch (0-based), tree root
    p_v_off int[],
    p_v_root uuid[],
    p_m_ecs uuid[],         -- earlier versions a new root's tree holds: member, root
    p_m_root uuid[],
    p_e_lineage uuid[],     -- erasure rows: lineage, offset
    p_e_off int[]
) RETURNS TABLE (first_position bigint, head_link text, hashes text[])
LANGUAGE plpgsql AS $fn$
DECLARE
    v_head bigint;
    v_max bigint;
    v_link text;
    v_head_link text;
    v_n int := coalesce(array_length(p_bodies, 1), 0);
    v_hashes text[] := '{{}}';
    v_states bytea[] := '{{}}';
    v_prev text;
    v_sealed bytea;
    v_hex text;
BEGIN
    PERFORM set_config('lock_timeout', '0', true);
    LOCK TABLE {events} IN EXCLUSIVE MODE;
    SELECT t.position, t.head_hash INTO v_head, v_link FROM {tracking} t WHERE t.name = {index_name};
    SELECT e.notification_id INTO v_max FROM {events} e ORDER BY e.notification_id DESC LIMIT 1;
    IF v_head IS NULL OR v_head IS DISTINCT FROM coalesce(v_max, 0) THEN
        RAISE EXCEPTION 'entity-ledger: the version index does not name the log head' USING ERRCODE = 'LDG01';
    END IF;
    v_head_link := v_link;
    FOR i IN 1 .. v_n LOOP
        v_prev := CASE WHEN p_prev_in_batch[i] > 0 THEN v_hashes[p_prev_in_batch[i]] ELSE p_prev[i] END;
        v_sealed := substring(p_bodies[i] FROM 1 FOR length(p_bodies[i]) - 1)
            || convert_to(
                ',"prev_hash":' || CASE WHEN v_prev IS NULL THEN 'null' ELSE '"' || v_prev || '"' END
                || ',"log_prev":"' || v_link || '","position":' || (v_head + i)::text,
                'UTF8');
        v_hex := encode(sha256(
            convert_to(E'entity-ledger seal v2\\n' || p_topics[i] || E'\\n' || replace(p_streams[i]::text, '-', '')
                       || E'\\n' || p_versions[i]::text || E'\\n', 'UTF8')
            || v_sealed || '\\x7d'::bytea), 'hex');
        v_states[i] := v_sealed || convert_to(',"hash":"' || v_hex || '"}}', 'UTF8');
        v_hashes[i] := v_hex;
        v_link := v_hex;
    END LOOP;
    INSERT INTO {events} (originator_id, originator_version, topic, state, notification_id)
        SELECT s, v, t, st, v_head + o
        FROM unnest(p_streams, p_versions, p_topics, v_states) WITH ORDINALITY AS x(s, v, t, st, o);
    INSERT INTO {versions} AS ix (ecs_id, position, root_ecs_id)
        SELECT e, v_head + 1 + o, r FROM unnest(p_v_ecs, p_v_off, p_v_root) AS x(e, o, r)
        ON CONFLICT (ecs_id) DO UPDATE SET root_ecs_id = coalesce(EXCLUDED.root_ecs_id, ix.root_ecs_id);
    UPDATE {versions} ix SET root_ecs_id = x.r
        FROM unnest(p_m_ecs, p_m_root) AS x(m, r) WHERE ix.ecs_id = x.m;
    INSERT INTO {erasures} (lineage_id, position)
        SELECT l, v_head + 1 + o FROM unnest(p_e_lineage, p_e_off) AS x(l, o)
        ON CONFLICT DO NOTHING;
    UPDATE {tracking} SET position = v_head + v_n, head_hash = v_link WHERE name = {index_name};
    PERFORM pg_notify({channel}, '');
    RETURN QUERY SELECT v_head + 1, v_head_link, v_hashes;
END
$fn$;
"""


def create_append_function(conn: Any, schema: str, events_table: str, channel: str, index_name: str) -> bool:
    """Create the append function in ``schema`` unless it is there; False where it cannot serve.

    Run under the schema-creation lock. The topic is the one text the function encodes
    itself (``convert_to(..., 'UTF8')``): on a server whose encoding is not UTF-8 it is not
    created, and appends take the Python path.
    """
    from psycopg import sql

    if conn.execute("SHOW server_encoding").fetchone()[0].upper() not in ("UTF8", "UTF-8"):
        return False
    present = conn.execute(
        "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname = %s",
        (schema, FUNCTION),
    ).fetchone()
    if present:
        return True
    s = sql.Identifier(schema)
    text = sql.SQL(_BODY).format(
        schema=s,
        fn=sql.Identifier(FUNCTION),
        events=sql.SQL("{}.{}").format(s, sql.Identifier(events_table)),
        versions=sql.SQL("{}.{}").format(s, sql.Identifier("ledger_version_positions")),
        erasures=sql.SQL("{}.{}").format(s, sql.Identifier("ledger_erasure_index")),
        tracking=sql.SQL("{}.{}").format(s, sql.Identifier("ledger_index_tracking")),
        index_name=sql.Literal(index_name),
        channel=sql.Literal(channel),
    )
    conn.execute(text)
    return True
