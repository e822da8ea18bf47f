"""Every SQL statement of the PostgreSQL backend (all parameterised; no string-built values).

The current state lives in ``executions.state``, except right after a history checkpoint: then it is
NULL there and the state is read from the checkpoint row at ``current_step`` (stored once, not twice).

The audit trail of checkpoints costs no extra row per write: a checkpoint row *is* its audit row
(step, time, size, sha256, attempt, and a ``seq`` from the events sequence) while it lives; when
retention prunes it, or a rewrite of its step replaces it, the same statement moves that audit row
into ``events``. ``get_audit`` reads both, ordered by ``seq``.

The durable write is ONE statement (data-modifying CTEs), i.e. one round trip and one commit:
fence on the attempt, upsert the execution row with the current state, and when it is a history
checkpoint also write the checkpoint and prune to the retention.
A fenced write changes nothing and raises SQLSTATE SR001 (see 0001_initial.sql). The backend first
sends the cheap form that assumes a new step (WRITE_NEW, WRITE_BATCH_NEW: no rewrite probe), and the
full form only when that hits a unique violation (the step exists). A large save may instead be
stored as a delta against the newest checkpoint (SAVE_DELTA, ``state_base_step``; see pg_delta.py).

The common checkpoint, a running execution's new highest step, is cheaper still (FAST): one INSERT of
a checkpoint row marked ``fast``, with the executions row only share-locked as the attempt fence, not
rewritten. Readers fold it in: an execution's highest-step checkpoint, when fast and newer (``seq``)
than the row's ``state_seq``, is its current state, current and last checkpoint step, and liveness
(``_head``). Every other write of the row's state takes a new ``state_seq`` (after locking the row),
and a save absorbs the folded last checkpoint step; so the fold only ever looks at one row.

Parameters of WRITE: $1 id, $2 step, $3 attempt (NULL: not fenced), $4 state, $5 codec, $6 size,
$7 sha256, $8 history?, $9 the manager's default retention (NULL: keep all), $10 must the run exist?
"""

from __future__ import annotations

from typing import Final


def _highest(e: str, columns: str) -> str:
    """``LATERAL (...)``: ``columns`` of execution row ``e``'s highest-step checkpoint ``hc``, and
    ``ahead``: whether a FAST write made it after the row's state was last written."""
    return f"""LATERAL (
    SELECT {columns}, hc.fast AND hc.seq > {e}.state_seq AS ahead FROM checkpoints hc
    WHERE hc.execution_id = {e}.id AND hc.execution_created_at = {e}.created_at
    ORDER BY hc.step DESC LIMIT 1
)"""


def _head(e: str) -> str:
    """``LEFT JOIN ... h``: row ``e``'s highest-step checkpoint when it is ahead of the row
    (``h.head_step``, ``h.head_at``), else NULLs (the row is current)."""
    return f"LEFT JOIN {_highest(e, 'hc.step AS head_step, hc.created_at AS head_at')} h ON h.ahead"


def _execution_columns(e: str) -> str:
    """An Execution's columns from row ``e`` joined with ``_head(e)``."""
    return (
        f"{e}.id, {e}.status, {e}.attempt, coalesce(h.head_step, {e}.current_step) AS current_step, "
        f"coalesce(h.head_step, {e}.last_checkpoint_step) AS last_checkpoint_step, {e}.created_at, "
        f"greatest({e}.updated_at, h.head_at) AS updated_at, {e}.finished_at, {e}.error, {e}.labels, "
        f"{e}.checkpoint_retention"
    )


def _folded(cte: str) -> str:
    """CTE ``f``: the Execution of each row ``cte`` returned (``RETURNING *``), folded."""
    return f"f AS (SELECT {_execution_columns(cte)} FROM {cte} {_head(cte)})"


# The last checkpoint step a save keeps: the folded one (a FAST write may have made a newer one).
_ABSORBED_CHECKPOINT: Final = f"(SELECT CASE WHEN ahead THEN step END FROM {_highest('e', 'hc.step')} a)"

# The executions-row upsert of every whole-state write (WRITE and the batch forms): the row becomes
# the newest state (a new state_seq) and keeps the folded last checkpoint step of a save.
_EXECUTION_UPSERT: Final = f"""ON CONFLICT (id) DO UPDATE SET
        status = CASE WHEN e.status IN ('pending', 'recovering') THEN 'running' ELSE e.status END,
        attempt = greatest(e.attempt, EXCLUDED.attempt),
        current_step = EXCLUDED.current_step,
        last_checkpoint_step = coalesce(EXCLUDED.last_checkpoint_step, {_ABSORBED_CHECKPOINT},
                                        e.last_checkpoint_step),
        state_seq = nextval('events_seq'),
        state = EXCLUDED.state,
        state_codec = EXCLUDED.state_codec,
        state_size = EXCLUDED.state_size,
        state_hash = EXCLUDED.state_hash,
        state_base_step = NULL,
        updated_at = now()"""

# A write that must find its run (WriteOp.must_exist: the writer started or claimed it before) never
# creates one: a missing row was deleted or renamed since, and the write is refused (SR001 with no
# current attempt). KEY SHARE keeps the row from being deleted or renamed until this commits; it does
# not block the upsert's own update, nor a concurrent writer's.
_RUN_EXISTS: Final = "EXISTS (SELECT 1 FROM executions x WHERE x.id = {id} FOR KEY SHARE)"

_WRITE_EX: Final = f"""
WITH ex AS (
    INSERT INTO executions AS e (id, status, attempt, current_step, last_checkpoint_step,
                                 state, state_codec, state_size, state_hash)
    SELECT $1, 'running', coalesce($3::int, 1), $2::bigint, CASE WHEN $8::bool THEN $2::bigint END,
           CASE WHEN $8::bool THEN NULL ELSE $4::bytea END, $5::text, $6::int, $7::bytea
    WHERE NOT $10::bool OR {_RUN_EXISTS.format(id="$1")}
    {_EXECUTION_UPSERT}
    WHERE $3::int IS NULL OR e.attempt <= $3::int
    RETURNING e.created_at, e.attempt, coalesce(e.checkpoint_retention, $9::int) AS keep
"""

_WRITE_HEAD: Final = (
    _WRITE_EX
    + """), rewritten AS (
    -- A step written again replaces its checkpoint in place (a new step is a plain INSERT, cheaper
    -- than ON CONFLICT). The replaced version is read locked, so concurrent rewriters see each
    -- other's versions; two writers racing on one *new* step make the loser hit a unique violation,
    -- and the backend re-runs its statement, which then takes this path.
    UPDATE checkpoints c SET seq = nextval('events_seq'), fast = false, attempt = ex.attempt,
                             created_at = now(), codec = $5::text, size_bytes = $6::int, hash = $7::bytea,
                             state = $4::bytea
    FROM ex, (
        SELECT o.seq, o.attempt, o.created_at, o.size_bytes, o.hash FROM checkpoints o
        WHERE $8::bool AND o.execution_id = $1 AND o.execution_created_at = (SELECT created_at FROM ex)
          AND o.step = $2::bigint
        FOR UPDATE
    ) old
    WHERE c.execution_id = $1 AND c.execution_created_at = ex.created_at AND c.step = $2::bigint
    RETURNING old.seq, old.attempt, old.created_at, old.size_bytes, old.hash
), superseded AS (
    -- ... and its audit row moves to events
    INSERT INTO events (execution_id, execution_created_at, seq, kind, step, attempt, at, size_bytes, hash)
    SELECT $1, (SELECT created_at FROM ex), seq, 'checkpoint', $2::bigint, attempt, created_at,
           size_bytes, hash
    FROM rewritten
), cp AS (
    INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt,
                             codec, size_bytes, hash, state)
    SELECT $1, ex.created_at, $2::bigint, ex.attempt, $5::text, $6::int, $7::bytea, $4::bytea
    FROM ex WHERE $8::bool AND NOT EXISTS (SELECT 1 FROM rewritten)
"""
)

_NEW_HEAD: Final = (
    _WRITE_EX
    + """), cp AS (
    -- optimistic: the step is new (the common case); a unique violation sends the full WRITE
    INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt,
                             codec, size_bytes, hash, state)
    SELECT $1, ex.created_at, $2::bigint, ex.attempt, $5::text, $6::int, $7::bytea, $4::bytea
    FROM ex WHERE $8::bool
"""
)

_WRITE_PRUNE: Final = """), pruned AS (
    -- The threshold is NULL (nothing scanned, nothing deleted) unless this write keeps a retention.
    DELETE FROM checkpoints c
    WHERE c.execution_id = $1 AND c.execution_created_at = (SELECT created_at FROM ex)
      AND c.step <> $2::bigint
      AND c.step <= (
          SELECT o.step FROM checkpoints o
          WHERE $8::bool AND (SELECT keep FROM ex) IS NOT NULL
            AND o.execution_id = $1 AND o.execution_created_at = (SELECT created_at FROM ex)
            AND o.step <> $2::bigint
          ORDER BY o.step DESC
          OFFSET (SELECT keep - 1 FROM ex) LIMIT 1)
    RETURNING c.*
), pruned_audit AS (
    INSERT INTO events (execution_id, execution_created_at, seq, kind, step, attempt, at, size_bytes, hash)
    SELECT execution_id, execution_created_at, seq, 'checkpoint', step, attempt, created_at, size_bytes, hash
    FROM pruned
)
"""

_WRITE_TAIL: Final = """SELECT keep FROM ex
UNION ALL
SELECT strata_stale_attempt($1, $3::int) WHERE NOT EXISTS (SELECT 1 FROM ex)
"""

WRITE: Final = _WRITE_HEAD + ")\n" + _WRITE_TAIL
"""Without retention: no prune step at all (it costs ~10% of a write even when idle)."""
WRITE_KEEP: Final = _WRITE_HEAD + _WRITE_PRUNE + _WRITE_TAIL
"""With retention: also prunes history beyond the kept N. Both return the effective retention."""
WRITE_NEW: Final = _NEW_HEAD + ")\n" + _WRITE_TAIL
"""WRITE for a save or a *new* checkpoint step: no rewrite probe, so about a quarter less server time
per write. A step that exists already raises a unique violation (nothing written); the backend
then sends WRITE. Not for use inside a transaction (the violation would abort it)."""
WRITE_NEW_KEEP: Final = _NEW_HEAD + _WRITE_PRUNE + _WRITE_TAIL

# FAST writes a history checkpoint of a running execution of this attempt at a step above all its
# stored steps, and nothing otherwise (then the backend sends WRITE_NEW). The share lock on the row
# is the fence: an attempt bump (start, claim) waits for this commit, and a FAST write waiting on one
# re-checks the attempt. $1 id, $2 step, $3 attempt (NULL: not fenced), $4 state, $5 codec, $6 size,
# $7 sha256; only for executions without a retention (a plain INSERT: the CTE form of FAST_KEEP costs
# ~13% more server time).
_FAST_WHERE: Final = """e.id = $1 AND e.status = 'running' AND ($3::int IS NULL OR e.attempt = $3::int)
      AND NOT EXISTS (SELECT 1 FROM checkpoints o WHERE o.execution_id = $1
                      AND o.execution_created_at = e.created_at AND o.step >= $2::bigint)"""
_FAST_INSERT: Final = """INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt,
                             codec, size_bytes, hash, state, fast)
    SELECT $1, e.created_at, $2::bigint, e.attempt, $5::text, $6::int, $7::bytea, $4::bytea, true"""

FAST: Final = f"""
{_FAST_INSERT}
    FROM executions e
    WHERE {_FAST_WHERE} AND e.checkpoint_retention IS NULL
    FOR SHARE OF e"""
"""Status ``INSERT 0 1`` when written."""

FAST_KEEP: Final = f"""
WITH ex AS (
    SELECT e.created_at, e.attempt, coalesce(e.checkpoint_retention, $9::int) AS keep FROM executions e
    WHERE {_FAST_WHERE} AND $8::bool
    FOR SHARE OF e
), cp AS (
    {_FAST_INSERT}
    FROM ex e
{_WRITE_PRUNE}SELECT keep FROM ex"""
"""FAST with retention, on WRITE's first nine parameters: also prunes; a row (the retention) when written."""

# A save stored as a delta (pg_delta.py): $1 id, $2 step, $3 attempt (NULL: not fenced), $4 delta,
# $5 codec, $6 size, $7 sha256 of the whole state, $8 base step, $9 the base's sha256. Changes nothing
# (returns 0) unless the base checkpoint still has that digest; it is share-locked, so a concurrent
# rewrite or prune of it waits for this commit (and then rewrites the execution row too).
SAVE_DELTA: Final = f"""
WITH base AS (
    SELECT 1 FROM executions e JOIN checkpoints c
      ON c.execution_id = e.id AND c.execution_created_at = e.created_at
    WHERE e.id = $1 AND c.step = $8::bigint AND c.hash = $9::bytea
    FOR SHARE OF c
), ex AS (
    UPDATE executions e SET
        status = CASE WHEN e.status IN ('pending', 'recovering') THEN 'running' ELSE e.status END,
        attempt = greatest(e.attempt, coalesce($3::int, 1)),
        current_step = $2::bigint,
        last_checkpoint_step = coalesce({_ABSORBED_CHECKPOINT}, e.last_checkpoint_step),
        state_seq = nextval('events_seq'),
        state = $4::bytea,
        state_codec = $5::text,
        state_size = $6::int,
        state_hash = $7::bytea,
        state_base_step = $8::bigint,
        updated_at = now()
    WHERE e.id = $1 AND ($3::int IS NULL OR e.attempt <= $3::int) AND EXISTS (SELECT 1 FROM base)
    RETURNING 1
)
SELECT count(*) FROM ex
"""

# The current state: the folded head checkpoint, else executions.state, or the checkpoint row at
# current_step when that is NULL (a delta state, state_base_step set, is resolved by the backend).
_CURRENT: Final = f"""
FROM executions e {_head("e")}
LEFT JOIN checkpoints c
  ON (h.head_step IS NOT NULL OR e.state IS NULL) AND c.execution_id = e.id
 AND c.execution_created_at = e.created_at AND c.step = coalesce(h.head_step, e.current_step)
WHERE e.id = $1 AND (h.head_step IS NOT NULL OR e.state_base_step IS NULL)"""

LOAD: Final = f"""
SELECT CASE WHEN h.ahead THEN h.step ELSE e.current_step END,
       CASE WHEN h.ahead OR e.state IS NULL THEN h.state ELSE e.state END AS state,
       CASE WHEN h.ahead OR e.state IS NULL THEN h.codec ELSE e.state_codec END AS codec, e.attempt,
       CASE WHEN NOT h.ahead AND e.state IS NOT NULL THEN h.state END AS base, h.codec AS base_codec,
       e.state_hash,
       coalesce(h.ahead, false)
    OR coalesce(h.step = CASE WHEN e.state IS NULL THEN e.current_step ELSE e.state_base_step END, false)
    OR (e.state IS NULL AND e.current_step IS NULL)
    OR (e.state IS NOT NULL AND e.state_base_step IS NULL) AS resolved
FROM executions e LEFT JOIN {_highest("e", "hc.step, hc.state, hc.codec")} h ON true
WHERE e.id = $1"""
"""The current state, read with the one probe of the highest-step checkpoint (the fold's ``_head``):
the FAST head itself, the row's state, or the checkpoint the row points at (at ``current_step``, or
a delta's base) when that is the highest one; for a delta also its base (``base``, ``base_codec``).
``resolved`` false: the row points at a lower checkpoint (after a rewind); read LOAD_ROW instead."""

LOAD_ROW: Final = """
SELECT e.current_step, coalesce(e.state, c.state) AS state,
       CASE WHEN e.state IS NULL THEN c.codec ELSE e.state_codec END AS codec, e.attempt,
       CASE WHEN e.state IS NOT NULL THEN c.state END AS base, c.codec AS base_codec, e.state_hash
FROM executions e LEFT JOIN checkpoints c
  ON c.execution_id = e.id AND c.execution_created_at = e.created_at
 AND c.step = CASE WHEN e.state IS NULL THEN e.current_step ELSE e.state_base_step END
WHERE e.id = $1"""
"""LOAD's columns from the row's own pointers (valid when the FAST head is not ahead)."""

EXECUTIONS: Final = f"SELECT {_execution_columns('e')} FROM executions e {_head('e')}"
"""Executions, folded; append WHERE (unqualified executions columns) and ORDER BY."""
GET_EXECUTION: Final = f"{EXECUTIONS} WHERE e.id = $1"

EXISTS: Final = "SELECT attempt FROM executions WHERE id = $1"

START: Final = f"""
WITH ex AS (
    INSERT INTO executions AS e (id, status, attempt, labels, checkpoint_retention)
    VALUES ($1, 'running', $2::int, $3::jsonb, $4::int)
    ON CONFLICT (id) DO UPDATE SET
        status = 'running',
        attempt = greatest(e.attempt, EXCLUDED.attempt),
        labels = coalesce(EXCLUDED.labels, e.labels),
        checkpoint_retention = coalesce(EXCLUDED.checkpoint_retention, e.checkpoint_retention),
        finished_at = NULL, error = NULL, updated_at = now()
    RETURNING *
), {_folded("ex")}, ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt)
    SELECT id, created_at, 'started', current_step, attempt FROM f
)
SELECT * FROM f
"""

FINISH: Final = f"""
WITH ex AS (
    UPDATE executions SET status = $2, error = $3, finished_at = now(), updated_at = now()
    WHERE id = $1 AND ($4::int IS NULL OR attempt <= $4::int)
    RETURNING *
), {_folded("ex")}, ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, detail)
    SELECT id, created_at, $2, current_step, attempt,
           CASE WHEN $3::text IS NULL THEN NULL ELSE jsonb_build_object('error', $3::text) END FROM f
)
SELECT * FROM f
"""

_CREATED: Final = "(SELECT created_at FROM executions WHERE id = $1)"

HISTORY: Final = f"""
SELECT step, attempt, created_at, codec, size_bytes, state FROM checkpoints
WHERE execution_id = $1 AND execution_created_at = {_CREATED} AND step > $2
ORDER BY step LIMIT $3
"""

CHECKPOINT_AT: Final = f"""
SELECT c.step, c.attempt, c.created_at, c.codec, c.size_bytes, c.state
FROM executions e {_head("e")}
JOIN checkpoints c ON c.execution_id = e.id AND c.execution_created_at = e.created_at
WHERE e.id = $1 AND c.step = coalesce($2::bigint, h.head_step, e.last_checkpoint_step)
"""

AUDIT: Final = f"""
SELECT seq, kind, step, attempt, at, size_bytes, hash, detail FROM events
WHERE execution_id = $1 AND execution_created_at = {_CREATED} AND seq > $2
UNION ALL
SELECT seq, 'checkpoint', step, attempt, created_at, size_bytes, hash, NULL FROM checkpoints
WHERE execution_id = $1 AND execution_created_at = {_CREATED} AND seq > $2
ORDER BY seq LIMIT $3
"""

# Liveness is the folded updated_at. A FAST write holds a share lock, so it is skipped while in
# flight; one that commits between this statement's snapshot and its lock is not seen (the row did
# not change), a window of microseconds at the very end of recovery_timeout.
# $1 idle seconds, $2 limit, $3 the highest attempt, $4 the error of a run failed for being at it
# (attempt + 1 would overflow the column; the CASE never evaluates it for such a run).
CLAIM: Final = f"""
WITH c AS (
    SELECT e.id, e.attempt < $3::int AS renewable FROM executions e {_head("e")}
    WHERE e.status IN ('running', 'recovering')
      AND greatest(e.updated_at, h.head_at) <= now() - make_interval(secs => $1)
    ORDER BY greatest(e.updated_at, h.head_at)
    LIMIT $2
    FOR UPDATE OF e SKIP LOCKED
), ex AS (
    UPDATE executions e SET
        status = CASE WHEN c.renewable THEN 'recovering' ELSE 'failed' END,
        attempt = CASE WHEN c.renewable THEN e.attempt + 1 ELSE e.attempt END,
        error = CASE WHEN c.renewable THEN e.error ELSE $4::text END,
        finished_at = CASE WHEN c.renewable THEN e.finished_at ELSE now() END,
        updated_at = now()
    FROM c WHERE e.id = c.id
    RETURNING e.*
), {_folded("ex")}, ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, detail)
    SELECT id, created_at, CASE WHEN status = 'failed' THEN 'failed' ELSE 'recovering' END,
           CASE WHEN status = 'failed' THEN current_step ELSE last_checkpoint_step END, attempt,
           CASE WHEN status = 'failed' THEN jsonb_build_object('error', error) END
    FROM f
)
SELECT * FROM f ORDER BY updated_at, id
"""

SNAPSHOT_COLUMNS: Final = "name, execution_id, step, size_bytes, created_at"


def _snapshot_upsert(source: str) -> str:
    """Store (or replace) snapshot $2 of execution $1 from ``source`` (a VALUES or SELECT giving the
    snapshot's columns), record a ``snapshot`` audit event, and return the snapshot."""
    return f"""
WITH s AS (
    INSERT INTO snapshots AS s (execution_id, name, step, attempt, codec, size_bytes, hash, state)
    {source}
    ON CONFLICT (execution_id, name) DO UPDATE SET
        step = EXCLUDED.step, attempt = EXCLUDED.attempt, created_at = now(), codec = EXCLUDED.codec,
        size_bytes = EXCLUDED.size_bytes, hash = EXCLUDED.hash, state = EXCLUDED.state
    RETURNING {SNAPSHOT_COLUMNS}, hash
), ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, size_bytes, hash, detail)
    SELECT s.execution_id, e.created_at, 'snapshot', s.step, e.attempt, s.size_bytes, s.hash,
           jsonb_build_object('snapshot', s.name)
    FROM s JOIN executions e ON e.id = s.execution_id
)
SELECT {SNAPSHOT_COLUMNS} FROM s
"""


SNAPSHOT_FROM_CURRENT: Final = _snapshot_upsert(
    f"""SELECT e.id, $2, coalesce(h.head_step, e.current_step), e.attempt,
           coalesce(c.codec, e.state_codec), coalesce(c.size_bytes, e.state_size),
           coalesce(c.hash, e.state_hash), coalesce(c.state, e.state)
    {_CURRENT} AND coalesce(c.state, e.state) IS NOT NULL"""
)

SNAPSHOT_FROM_VALUES: Final = _snapshot_upsert("VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
"""A snapshot of a current state the backend resolved (a delta row): $3 step .. $8 state."""

SNAPSHOT_FROM_STEP: Final = _snapshot_upsert(
    """SELECT c.execution_id, $2, c.step, c.attempt, c.codec, c.size_bytes, c.hash, c.state
    FROM executions e JOIN checkpoints c ON c.execution_id = e.id AND c.execution_created_at = e.created_at
    WHERE e.id = $1 AND c.step = $3"""
)

GET_SNAPSHOT: Final = f"SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE execution_id = $1 AND name = $2"
SNAPSHOT_STATE: Final = (
    "SELECT step, codec, size_bytes, hash, state FROM snapshots WHERE execution_id = $1 AND name = $2"
)
LIST_SNAPSHOTS: Final = (
    f"SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE execution_id = $1 ORDER BY created_at, name"
)

DELETE_SNAPSHOT: Final = """
WITH s AS (DELETE FROM snapshots WHERE execution_id = $1 AND name = $2 RETURNING execution_id, step, name),
ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, detail)
    SELECT s.execution_id, e.created_at, 'snapshot_deleted', s.step, e.attempt,
           jsonb_build_object('snapshot', s.name)
    FROM s JOIN executions e ON e.id = s.execution_id
)
SELECT count(*) FROM s
"""

DROP_LATER_HISTORY: Final = f"""
WITH dropped AS (
    DELETE FROM checkpoints WHERE execution_id = $1 AND execution_created_at = {_CREATED} AND step > $2
    RETURNING *
)
INSERT INTO events (execution_id, execution_created_at, seq, kind, step, attempt, at, size_bytes, hash)
SELECT execution_id, execution_created_at, seq, 'checkpoint', step, attempt, created_at, size_bytes, hash
FROM dropped
"""

RESTORE_EVENT: Final = """
INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, size_bytes, hash, detail)
SELECT id, created_at, 'restore', $2, attempt, $3, $4, jsonb_build_object('snapshot', $5::text)
FROM executions WHERE id = $1
"""

DELETE_EXECUTION: Final = """
WITH ex AS (DELETE FROM executions WHERE id = $1 RETURNING id, created_at),
c AS (DELETE FROM checkpoints WHERE execution_id = $1),
v AS (DELETE FROM events WHERE execution_id = $1),
s AS (DELETE FROM snapshots WHERE execution_id = $1 AND NOT $2::bool)
SELECT count(*) FROM ex
"""

# Partition keys (execution_created_at) do not change, so every row stays in its partition. Renaming
# the key waits for fenced writes in flight (they hold KEY SHARE) and makes later ones find no row.
RENAME_EXECUTION: Final = """
WITH ex AS (
    UPDATE executions SET id = $2, updated_at = now() WHERE id = $1
    RETURNING id, created_at, attempt, current_step, state_seq
), c AS (
    UPDATE checkpoints SET execution_id = $2
    WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM ex)
), v AS (
    UPDATE events SET execution_id = $2
    WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM ex)
), ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, detail)
    -- the step of the renamed state: the folded one (this statement still sees the old id's rows)
    SELECT id, created_at, 'renamed',
           coalesce((SELECT CASE WHEN hc.fast AND hc.seq > ex.state_seq THEN hc.step END FROM checkpoints hc
                     WHERE hc.execution_id = $1 AND hc.execution_created_at = ex.created_at
                     ORDER BY hc.step DESC LIMIT 1), current_step),
           attempt, jsonb_build_object('from', $1::text)
    FROM ex
)
SELECT count(*) FROM ex
"""

CLEANUP_ROWS: Final = """
WITH ex AS (
    DELETE FROM executions WHERE status = ANY($1::text[]) AND finished_at < $2 RETURNING id, created_at
), c AS (
    DELETE FROM checkpoints c USING ex WHERE c.execution_id = ex.id AND c.execution_created_at = ex.created_at
), v AS (
    DELETE FROM events v USING ex WHERE v.execution_id = ex.id AND v.execution_created_at = ex.created_at
), s AS (
    DELETE FROM snapshots s USING ex WHERE s.execution_id = ex.id
)
SELECT count(*) FROM ex
"""

# A month may be dropped when no execution created in it is kept by this cleanup.
MONTH_BLOCKERS: Final = """
SELECT count(*) FROM executions
WHERE created_at >= $1 AND created_at < $2
  AND NOT (status = ANY($3::text[]) AND finished_at IS NOT NULL AND finished_at < $4)
"""

DELETE_MONTH: Final = """
WITH ex AS (DELETE FROM executions WHERE created_at >= $1 AND created_at < $2 RETURNING id),
s AS (DELETE FROM snapshots s USING ex WHERE s.execution_id = ex.id)
SELECT count(*) FROM ex
"""

LIST_PARTITIONS: Final = """
SELECT c.relname FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname = $1 AND p.relnamespace = current_schema()::regnamespace
"""

COUNTS: Final = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE status IN ('pending', 'running', 'recovering')) AS active,
       (SELECT count(*) FROM checkpoints)
     + (SELECT count(*) FROM events WHERE kind = 'checkpoint') AS checkpoints,
       (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('checkpoints'))
     + (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('events'))
     + pg_total_relation_size('executions') + pg_total_relation_size('snapshots') AS bytes
FROM executions
"""

# Many writes in one statement (batch flushes, group commit, transactions): the same effects as
# running WRITE for each, set-based. The caller folds the writes per execution ($1..$8 and $16, one
# row per execution: its last write, and one attempt and must_exist per execution) and lists every
# history write in order ($9..$14); $15 is the manager's default retention. With a retention, each
# execution has at most one history write in the batch, and it prunes as WRITE_KEEP does.
_BATCH_EX: Final = f"""
WITH i AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::bytea[], $5::text[], $6::int[], $7::bytea[],
                         $8::bigint[], $16::bool[])
        AS i(id, step, attempt, state, codec, size, hash, hist_step, must_exist)
), ex AS (
    INSERT INTO executions AS e (id, status, attempt, current_step, last_checkpoint_step,
                                 state, state_codec, state_size, state_hash)
    SELECT id, 'running', coalesce(attempt, 1), step, hist_step, state, codec, size, hash FROM i
    WHERE NOT i.must_exist OR {_RUN_EXISTS.format(id="i.id")}
    {_EXECUTION_UPSERT}
    WHERE e.attempt <= coalesce((SELECT i.attempt FROM i WHERE i.id = e.id), e.attempt)
    RETURNING e.id, e.created_at, e.attempt, coalesce(e.checkpoint_retention, $15::int) AS keep
"""

_BATCH_HEAD: Final = (
    _BATCH_EX
    + """), h AS (
    -- every history write of the batch, in order, with its audit sequence number
    SELECT h.*, ex.created_at, ex.attempt, ex.keep, nextval('events_seq') AS seq
    FROM unnest($9::text[], $10::bigint[], $11::bytea[], $12::text[], $13::int[], $14::bytea[])
         WITH ORDINALITY AS h(id, step, state, codec, size, hash, ord)
    JOIN ex ON ex.id = h.id
    ORDER BY h.ord
), newest AS (
    SELECT DISTINCT ON (id, step) * FROM h ORDER BY id, step, ord DESC
), superseded AS (
    -- audit rows of checkpoints this batch replaces: earlier writes of a step in the batch, and the
    -- stored checkpoint of a step written again
    INSERT INTO events (execution_id, execution_created_at, seq, kind, step, attempt, at, size_bytes, hash)
    SELECT h.id, h.created_at, h.seq, 'checkpoint', h.step, h.attempt, now(), h.size, h.hash
    FROM h WHERE NOT EXISTS (SELECT 1 FROM newest n WHERE n.ord = h.ord)
), superseded_stored AS (
    INSERT INTO events (execution_id, execution_created_at, seq, kind, step, attempt, at, size_bytes, hash)
    SELECT c.execution_id, c.execution_created_at, c.seq, 'checkpoint', c.step, c.attempt, c.created_at,
           c.size_bytes, c.hash
    FROM newest n JOIN checkpoints c
      ON c.execution_id = n.id AND c.execution_created_at = n.created_at AND c.step = n.step
    FOR UPDATE OF c  -- the latest version, so concurrent rewriters never copy the same audit row
    RETURNING execution_id, step, seq
"""
)

_BATCH_CP: Final = """cp AS (
    -- A stored step is replaced only if its audit row was moved above (the version we locked); a
    -- step another writer created after this statement's snapshot is not, and the check below
    -- then raises a unique violation so the backend re-runs the statement.
    INSERT INTO checkpoints AS c (execution_id, execution_created_at, step, attempt,
                                  codec, size_bytes, hash, state, seq)
    SELECT n.id, n.created_at, n.step, n.attempt, n.codec, n.size, n.hash, n.state, n.seq FROM to_write n
    ON CONFLICT (execution_id, step, execution_created_at) DO UPDATE SET
        attempt = EXCLUDED.attempt, created_at = now(), codec = EXCLUDED.codec,
        size_bytes = EXCLUDED.size_bytes, hash = EXCLUDED.hash, state = EXCLUDED.state, seq = EXCLUDED.seq,
        fast = false
    WHERE EXISTS (SELECT 1 FROM superseded_stored o
                  WHERE o.execution_id = c.execution_id AND o.step = c.step AND o.seq = c.seq)
    RETURNING 1
"""
"""The CTE writing the batch's ``to_write`` checkpoints (both batch forms; its closing parenthesis
is the next fragment's)."""

_BATCH_PRUNE: Final = f"""), ranked AS (
    -- as one write prunes: its new checkpoint stays, then the N-1 highest other steps (the backend
    -- sends a batch with a retention here only with at most one history write per execution)
    SELECT c.execution_id AS id, c.step,
           row_number() OVER (PARTITION BY c.execution_id ORDER BY c.step DESC) AS rn
    FROM newest n JOIN checkpoints c ON c.execution_id = n.id AND c.execution_created_at = n.created_at
    WHERE n.keep IS NOT NULL AND c.step <> n.step
), to_write AS (
    SELECT * FROM newest
), {_BATCH_CP}), pruned AS (
    DELETE FROM checkpoints c USING ranked r, ex
    WHERE r.id = ex.id AND r.rn > ex.keep - 1
      AND c.execution_id = r.id AND c.execution_created_at = ex.created_at AND c.step = r.step
    RETURNING c.*
), pruned_audit AS (
    INSERT INTO events (execution_id, execution_created_at, seq, kind, step, attempt, at, size_bytes, hash)
    SELECT execution_id, execution_created_at, seq, 'checkpoint', step, attempt, created_at, size_bytes, hash
    FROM pruned
"""

_BATCH_PLAIN: Final = f"""), to_write AS (
    SELECT * FROM newest
), {_BATCH_CP}"""

_BATCH_TAIL: Final = """)
SELECT id FROM ex WHERE keep IS NOT NULL
UNION ALL
SELECT strata_stale_attempt(i.id, i.attempt)::text FROM i
WHERE NOT EXISTS (SELECT 1 FROM ex WHERE ex.id = i.id)
UNION ALL
SELECT strata_step_raced()::text WHERE (SELECT count(*) FROM cp) < (SELECT count(*) FROM to_write)
"""

WRITE_BATCH: Final = _BATCH_HEAD + _BATCH_PLAIN + _BATCH_TAIL
WRITE_BATCH_KEEP: Final = _BATCH_HEAD + _BATCH_PRUNE + _BATCH_TAIL
"""Both return the ids of the batch's executions that have a retention."""

WRITE_BATCH_NEW: Final = (
    _BATCH_EX
    + """), cp AS (
    -- optimistic: distinct new steps and no retention (the caller checks); a step that exists already
    -- raises a unique violation (nothing written) and the backend sends WRITE_BATCH instead
    INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt,
                             codec, size_bytes, hash, state)
    SELECT h.id, ex.created_at, h.step, ex.attempt, h.codec, h.size, h.hash, h.state
    FROM unnest($9::text[], $10::bigint[], $11::bytea[], $12::text[], $13::int[], $14::bytea[])
         WITH ORDINALITY AS h(id, step, state, codec, size, hash, ord)
    JOIN ex ON ex.id = h.id
    ORDER BY h.ord
)
SELECT id FROM ex WHERE keep IS NOT NULL
UNION ALL
SELECT strata_stale_attempt(i.id, i.attempt)::text FROM i
WHERE NOT EXISTS (SELECT 1 FROM ex WHERE ex.id = i.id)
"""
)
"""WRITE_BATCH for the common case, at a fraction of its server time."""
