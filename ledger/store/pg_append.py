"""The PostgreSQL append as server-side functions: one round trip per batch, no table lock.

Writers no longer take ``LOCK TABLE … EXCLUSIVE`` (which serialised every writer's commit, and
with it the server's WAL flushes). ``ledger_append_v2`` instead:

- takes the schema's *write lock* in shared mode, held to commit (``pg_advisory_xact_lock_shared``):
  writers never wait for each other on it;
- takes a block of positions from the events table's sequence (under a short allocation lock,
  so a batch's positions are consecutive), seals each event at its position (seal v3:
  ``ledger.events.seal.seal_at``, no link to the record before it, which a concurrent writer may
  not have committed yet), inserts the events, the version-index rows and notifies.

Commits therefore overlap and come in any order. What keeps readers exact is the *high-water
mark* (``ledger_hwm_v1``): a reader takes the write lock in exclusive mode for an instant,
which is granted only once every writer that took a position before has committed or rolled
back, and reads the sequence while it holds it. Every position at or below it is final: a record there is
committed, and a hole is a rolled-back batch that will never fill. Readers that follow the log
(``EventStore.read_columns`` pages, ``head``) never read past it, so nothing is skipped or
seen twice.

The whole-log chain (seal v2's ``log_prev``) becomes *checkpoints* (``ledger_checkpoint_v1``):
a row per range of positions, hashing the previous checkpoint, the range and every record's
position and hash in it (``ledger.events.checkpoint``). Whichever writer crosses
``CHECKPOINT_EVERY`` positions past the last checkpoint (or last tried ``CHECKPOINT_SECONDS``
ago, or closes its store) makes the next one after its commit, in its own transaction, under a
try-lock (one checkpointer at a time; nobody waits for it). The mark it checkpoints up to is
taken first, in a transaction of its own, so the checkpoint's snapshot holds every record below
it whatever the server's isolation level.

``ledger_append_v1`` (seal v2 under the table lock) is replaced by a function that refuses: an
older library must not write v2 records into a log that has v3 ones.

``ledger_append_v3`` seals v4: each record also names its writer session and that session's
previous record, and the last checkpoint when its batch began (``seal.SessionLink``). The
session is the server connection; its chain lives in a setting of that connection
(``chain_setting``), which ``set_config`` moves at the end of each batch and which a rolled-back
transaction puts back, so the chain holds committed records only, in commit order, with no
lock between writers. ``ledger_append_v2`` (seal v3) is then replaced by a function that
refuses, as v1 was.
"""

from __future__ import annotations

import zlib
from typing import Any

__all__ = [
    "CHECKPOINT_EVERY",
    "CHECKPOINT_FUNCTION",
    "CHECKPOINT_SECONDS",
    "CHECKPOINT_MOST",
    "CHECKPOINTS",
    "FALLBACK_STATES",
    "FUNCTION",
    "HWM_FUNCTION",
    "LIVE_ROW",
    "create_append_function",
    "chain_setting",
    "lock_keys",
]

#: The function's name (versioned: a changed body gets a new name, so old and new libraries
#: writing one schema each call their own).
FUNCTION = "ledger_append_v3"
HWM_FUNCTION = "ledger_hwm_v1"
CHECKPOINT_FUNCTION = "ledger_checkpoint_v1"
#: Checkpoint rows: (hi, lo, records, hash, holes, made_at), one per range (lo, hi] of positions;
#: ``holes`` lists its positions without a record (rolled-back batches).
CHECKPOINTS = "ledger_checkpoints"
#: The tracking row that says from where every append writes its own index rows (its position:
#: the last record appended before; ``EventStore.catch_up_index`` indexes up to it only).
LIVE_ROW = "ledger_version_index:appends_index_after"
#: A writer makes a checkpoint when its batch ends this many positions past the last one.
CHECKPOINT_EVERY = 1000
#: ... or when the process last tried this many seconds ago (a quiet log's tail stays short).
CHECKPOINT_SECONDS = 1.0
#: At most this many positions per checkpoint row (the first one over a long upgraded log).
CHECKPOINT_MOST = 100_000

#: SQLSTATEs after which the caller appends the Python way: a table or the function is missing
#: (a schema of an older library, opened with create=False, or a function dropped by hand).
FALLBACK_STATES = frozenset({"42P01", "42883"})

# Advisory lock classes (the high 32 bits of a 64-bit key; the low 32 are a CRC of the events
# table's schema and name, so schemas sharing a database never wait for each other, and the key
# survives a dump and restore, which gives the table a new oid).
_WRITE_CLASS = 7245077  # shared by writers through commit; exclusive for an instant by readers
_ALLOCATE_CLASS = 7245078  # a batch's block of positions
_CHECKPOINT_CLASS = 7245079  # one checkpointer at a time (try-lock)


def lock_keys(schema: str, events_table: str) -> tuple[int, int, int]:
    """(write, allocate, checkpoint) advisory lock keys of an events table."""
    low = zlib.crc32(f"{schema}.{events_table}".encode())
    return (_WRITE_CLASS << 32) | low, (_ALLOCATE_CLASS << 32) | low, (_CHECKPOINT_CLASS << 32) | low


def chain_setting(schema: str, events_table: str) -> str:
    """The name of the connection setting that holds a writer session's chain for this events table
    (``"<session>:<last position>:<last hash>"``): one per schema, since a connection may write several."""
    return f"ledger.chain_{zlib.crc32(f'{schema}.{events_table}'.encode())}"


_APPEND = """\
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
) RETURNS TABLE (first_position bigint, hashes text[], checkpoint bigint, session text, session_after bigint, session_prev text)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_n int := coalesce(array_length(p_bodies, 1), 0);
    v_first bigint;
    v_hashes text[] := '{{}}';
    v_states bytea[] := '{{}}';
    v_prev text;
    v_sealed bytea;
    v_hex text;
    v_root_position bigint;
    v_chain text := current_setting({chain}, true);
    v_session text;
    v_after bigint := 0;
    v_sprev text;
    v_s_after bigint;
    v_s_prev text;
    v_checkpoint bigint;
BEGIN
    PERFORM pg_advisory_xact_lock_shared({write_lock});
    -- the writer session's chain (seal.SessionLink.parse): this connection's last committed record
    IF v_chain IS NULL OR v_chain = '' THEN
        v_session := replace(gen_random_uuid()::text, '-', '');
    ELSE
        v_session := split_part(v_chain, ':', 1);
        v_after := split_part(v_chain, ':', 2)::bigint;
        v_sprev := nullif(split_part(v_chain, ':', 3), '');
    END IF;
    v_s_after := v_after;
    v_s_prev := v_sprev;
    -- read before positions are taken: every checkpoint that exists ends below them
    v_checkpoint := coalesce((SELECT c.hi FROM {checkpoints} c ORDER BY c.hi DESC LIMIT 1), 0);
    -- a consecutive block: the allocation lock is a session lock, held for two statements; the
    -- handler gives it back if anything (a cancel, a timeout) interrupts them, or the connection
    -- would keep it and every other writer would wait for it forever
    BEGIN
        PERFORM pg_advisory_lock({allocate_lock});
        v_first := nextval('{sequence}');
        IF v_n > 1 THEN
            PERFORM setval('{sequence}', v_first + v_n - 1);
        END IF;
        PERFORM pg_advisory_unlock({allocate_lock});
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock({allocate_lock});
        RAISE;
    END;
    FOR i IN 1 .. v_n LOOP
        v_prev := CASE WHEN p_prev_in_batch[i] > 0 THEN v_hashes[p_prev_in_batch[i]] ELSE p_prev[i] END;
        v_sealed := substring(p_bodies[i] FROM 1 FOR length(p_bodies[i]) - 1)
            || convert_to(
                ',"prev_hash":' || CASE WHEN v_prev IS NULL THEN 'null' ELSE '"' || v_prev || '"' END
                || ',"session":"' || v_session || '","session_after":' || v_s_after::text
                || ',"session_prev":' || CASE WHEN v_s_prev IS NULL THEN 'null' ELSE '"' || v_s_prev || '"' END
                || ',"checkpoint":' || v_checkpoint::text
                || ',"position":' || (v_first + i - 1)::text,
                'UTF8');
        v_hex := encode(sha256(
            convert_to(E'entity-ledger seal v4\\n' || p_topics[i] || E'\\n' || replace(p_streams[i]::text, '-', '')
                       || E'\\n' || p_versions[i]::text || E'\\n', 'UTF8')
            || v_sealed || '\\x7d'::bytea), 'hex');
        v_states[i] := v_sealed || convert_to(',"hash":"' || v_hex || '"}}', 'UTF8');
        v_hashes[i] := v_hex;
        v_s_after := v_first + i - 1;
        v_s_prev := v_hex;
    END LOOP;
    -- the session's chain moves on with this batch; a rollback puts the setting back
    IF v_n > 0 THEN
        PERFORM set_config({chain}, v_session || ':' || v_s_after::text || ':' || v_s_prev, false);
    END IF;
    INSERT INTO {events} (originator_id, originator_version, topic, state, notification_id)
        SELECT s, v, t, st, v_first + o - 1
        FROM unnest(p_streams, p_versions, p_topics, v_states) WITH ORDINALITY AS x(s, v, t, st, o);
    -- each statement below only when it has rows: a statement that finds none still costs its plan
    IF cardinality(p_v_ecs) > 0 THEN
        INSERT INTO {versions} AS ix (ecs_id, position, root_ecs_id)
            SELECT e, v_first + o, r FROM unnest(p_v_ecs, p_v_off, p_v_root) AS x(e, o, r)
            ON CONFLICT (ecs_id) DO UPDATE SET root_ecs_id = coalesce(EXCLUDED.root_ecs_id, ix.root_ecs_id);
    END IF;
    -- a member's tree row names the latest tree holding it: never move it back to an older root
    -- (commits come in any order now)
    IF cardinality(p_m_ecs) > 0 THEN
        UPDATE {versions} ix SET root_ecs_id = x.r
            FROM unnest(p_m_ecs, p_m_root) AS x(m, r)
            WHERE ix.ecs_id = x.m
              AND NOT EXISTS (
                  SELECT 1 FROM {versions} cur, {versions} new
                  WHERE cur.ecs_id = ix.root_ecs_id AND new.ecs_id = x.r AND cur.position > new.position);
    END IF;
    IF cardinality(p_e_lineage) > 0 THEN
        INSERT INTO {erasures} (lineage_id, position)
            SELECT l, v_first + o FROM unnest(p_e_lineage, p_e_off) AS x(l, o)
            ON CONFLICT DO NOTHING;
    END IF;
    PERFORM pg_notify({channel}, '');
    RETURN QUERY SELECT v_first, v_hashes, v_checkpoint, v_session, v_after, v_sprev;
END
$fn$;
"""

_HWM = """\
CREATE OR REPLACE FUNCTION {schema}.{fn}() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_hwm bigint;
BEGIN
    -- granted once every writer holding the lock in shared mode (each one that took a
    -- position before) has committed or rolled back. The sequence is read while it is held:
    -- read after, a writer could take the lock and a position in between, and the mark would
    -- pass a position still in flight. Held for no longer than this (the handler gives it back
    -- if a cancel or timeout interrupts: a session keeping it would stop every writer).
    BEGIN
        PERFORM pg_advisory_lock({write_lock});
        SELECT CASE WHEN is_called THEN last_value ELSE 0 END INTO v_hwm FROM {sequence_rel};
        PERFORM pg_advisory_unlock({write_lock});
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock({write_lock});
        RAISE;
    END;
    RETURN v_hwm;
END
$fn$;
"""

_CHECKPOINT = """\
CREATE OR REPLACE FUNCTION {schema}.{fn}(p_min bigint, p_most bigint, p_hwm bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_lo bigint;
    v_prev text;
    v_hwm bigint;
    v_hi bigint;
    v_count bigint;
    v_hash text;
    v_holes bigint[] := '{{}}';
BEGIN
    IF NOT pg_try_advisory_xact_lock({checkpoint_lock}) THEN
        RETURN NULL;  -- another process is making one
    END IF;
    SELECT c.hi, c.hash INTO v_lo, v_prev FROM {checkpoints} c ORDER BY c.hi DESC LIMIT 1;
    v_lo := coalesce(v_lo, 0);
    v_prev := coalesce(v_prev, repeat('0', 64));
    -- p_hwm: a high-water mark taken by the caller in a transaction of its own that ended before
    -- this one began, so this transaction's snapshot holds every record at or below it whatever
    -- the isolation level (taken in here, a REPEATABLE READ snapshot would predate the wait)
    v_hwm := p_hwm;
    IF v_hwm - v_lo < greatest(p_min, 1) THEN
        RETURN NULL;
    END IF;
    v_hi := least(v_hwm, v_lo + p_most);
    -- ledger.events.checkpoint.checkpoint_hash, and each record's hash as link_hash reads it
    SELECT count(*), encode(sha256(convert_to(
               E'entity-ledger checkpoint v1\\n' || v_prev || E'\\n' || v_lo::text || E'\\n' || v_hi::text || E'\\n'
               || coalesce(string_agg(e.notification_id::text || ' ' || (
                   CASE WHEN length(e.state) >= 66
                             AND substring(e.state FROM length(e.state) - 1) = '\\x227d'::bytea
                             AND encode(substring(e.state FROM length(e.state) - 65 FOR 64), 'escape') ~ '^[0-9a-f]{{64}}$'
                        THEN encode(substring(e.state FROM length(e.state) - 65 FOR 64), 'escape')
                        ELSE encode(sha256(coalesce(e.state, ''::bytea)), 'hex') END) || E'\\n',
                   '' ORDER BY e.notification_id), ''),
               'UTF8')), 'hex')
        INTO v_count, v_hash
        FROM {events} e WHERE e.notification_id > v_lo AND e.notification_id <= v_hi;
    IF v_count < v_hi - v_lo THEN  -- the holes (rolled-back batches), so that verify can name a removed record
        SELECT coalesce(array_agg(g ORDER BY g), '{{}}') INTO v_holes FROM generate_series(v_lo + 1, v_hi) g
            WHERE NOT EXISTS (SELECT 1 FROM {events} e WHERE e.notification_id = g);
    END IF;
    INSERT INTO {checkpoints} (hi, lo, records, hash, holes) VALUES (v_hi, v_lo, v_count, v_hash, v_holes);
    RETURN v_hi;
END
$fn$;
"""

# What an older library calls: it would write seal v2 records, chained to whichever record it
# found last, into a log whose writers take positions concurrently.
_REFUSE_V1 = """\
CREATE OR REPLACE FUNCTION {schema}.ledger_append_v1(
    uuid[], bigint[], text[], bytea[], text[], int[], uuid[], int[], uuid[], uuid[], uuid[], uuid[], int[]
) RETURNS TABLE (first_position bigint, head_link text, hashes text[])
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'entity-ledger: this schema is written with seal v3 (concurrent PostgreSQL writers) by a newer entity-ledger; upgrade this one'
        USING ERRCODE = 'LDG03';
END
$fn$;
"""


# What the previous library calls: it would write seal v3 records (no writer session) into a log
# whose records are sealed v4.
_REFUSE_V2 = """\
CREATE OR REPLACE FUNCTION {schema}.ledger_append_v2(
    uuid[], bigint[], text[], bytea[], text[], int[], uuid[], int[], uuid[], uuid[], uuid[], uuid[], int[]
) RETURNS TABLE (first_position bigint, hashes text[], checkpoint bigint)
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'entity-ledger: this schema is written with seal v4 (writer sessions) by a newer entity-ledger; upgrade this one'
        USING ERRCODE = 'LDG03';
END
$fn$;
"""


def create_append_function(conn: Any, schema: str, events_table: str, channel: str, index_name: str) -> bool:
    """Create (or upgrade to) the append, high-water-mark and checkpoint functions in ``schema``.

    Run under the schema-creation lock; False where they cannot serve. The topic is the one
    text the append encodes itself (``convert_to(..., 'UTF8')``): on a server whose encoding
    is not UTF-8 nothing is created, and appends take the Python path.

    Upgrading a schema written by an older library (seal v2, positions given explicitly under
    the table lock) waits for its writers with that same lock, moves the sequence up to the
    last position, and records from where appends index themselves (``LIVE_ROW``).
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
    events = sql.SQL("{}.{}").format(s, sql.Identifier(events_table))
    qualified = f'"{schema}"."{events_table}"'
    sequence = conn.execute("SELECT pg_get_serial_sequence(%s, 'notification_id')", (qualified,)).fetchone()[0]
    write_lock, allocate_lock, checkpoint_lock = lock_keys(schema, events_table)
    checkpoints = sql.SQL("{}.{}").format(s, sql.Identifier(CHECKPOINTS))
    tracking = sql.SQL("{}.{}").format(s, sql.Identifier("ledger_index_tracking"))
    names = dict(
        schema=s,
        events=events,
        versions=sql.SQL("{}.{}").format(s, sql.Identifier("ledger_version_positions")),
        erasures=sql.SQL("{}.{}").format(s, sql.Identifier("ledger_erasure_index")),
        checkpoints=checkpoints,
        channel=sql.Literal(channel),
        write_lock=sql.Literal(write_lock),
        allocate_lock=sql.Literal(allocate_lock),
        checkpoint_lock=sql.Literal(checkpoint_lock),
        chain=sql.Literal(chain_setting(schema, events_table)),
        sequence=sql.SQL(sequence.replace("'", "''")),
        sequence_rel=sql.SQL(sequence),
    )
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (hi bigint PRIMARY KEY, lo bigint NOT NULL, records bigint NOT NULL, "
                "hash text NOT NULL, holes bigint[] NOT NULL DEFAULT '{{}}', made_at timestamptz NOT NULL DEFAULT now())"
            ).format(checkpoints)
        )
        # writers of the previous function (seal v3) hold the write lock, shared, to commit: wait for
        # them (before the table lock, the order they take the two in), so that no v3 record lands
        # above a v4 one; the old function then refuses
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (write_lock,))
        # an older library's writers hold this lock while they append (seal v2, explicit positions)
        conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(events))
        last = conn.execute(sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(events)).fetchone()[0]
        if last:
            conn.execute("SELECT setval(%s, greatest(%s, (SELECT last_value FROM " + sequence + ")))", (sequence, last))
        conn.execute(
            sql.SQL("INSERT INTO {} (name, position, head_hash) VALUES (%s, %s, 'v3') ON CONFLICT DO NOTHING").format(tracking),
            (LIVE_ROW, last),
        )
        conn.execute(sql.SQL(_HWM).format(fn=sql.Identifier(HWM_FUNCTION), **names))
        conn.execute(sql.SQL(_CHECKPOINT).format(fn=sql.Identifier(CHECKPOINT_FUNCTION), **names))
        conn.execute(sql.SQL(_APPEND).format(fn=sql.Identifier(FUNCTION), **names))
        conn.execute(sql.SQL(_REFUSE_V1).format(schema=s))
        conn.execute(sql.SQL(_REFUSE_V2).format(schema=s))
    return True
