"""Every SQL statement of the PostgreSQL backend (all parameterised; no string-built values).

Read the statements as they run in ``tests/store/golden/*.sql``: each file is one constant below,
rendered, and a test keeps them equal. Statements with common parts are built by :func:`_with`
from whole CTE bodies (each a complete, balanced statement), never from fragments of one.

The rules every statement shares are defined once, in the schema (migrations 0005):

* the current state is the view ``current_states``; every reader of it selects from that view;
* fencing is ``strata_admits(stored attempt, writer's attempt)``; a fenced write changes nothing and
  raises SQLSTATE SR001 (``strata_stale_attempt``, 0001);
* a write's status change is ``strata_status_after_write(status)``.

The audit trail of checkpoints costs no extra row per write: a checkpoint row *is* its audit row
(step, time, size, sha256, attempt, and a ``seq`` from the events sequence) while it lives; when
retention prunes it, or a rewrite of its step replaces it, the same statement moves that audit row
into ``events``. ``AUDIT`` reads both, ordered by ``seq``.

The durable write is ONE statement, i.e. one round trip and one commit: fence on the attempt, upsert
the execution row with the current state, and when it is a history checkpoint also write the
checkpoint (then the row's state is NULL: it is read from that checkpoint) and prune to the
retention. The backend first sends the form that assumes a new step (``WRITE_NEW``: no rewrite
probe), and the full form only when that hits a unique violation (the step exists).

Parameters of the WRITE family: $1 id, $2 step, $3 attempt (NULL: not fenced), $4 state, $5 codec,
$6 size, $7 sha256, $8 history?, $9 the manager's default retention (NULL: keep all), $10 must the
run exist? All return one row, ``keep``: the retention that applied (NULL: none).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Final


def _with(ctes: Sequence[tuple[str, str]], result: str) -> str:
    """``WITH name AS (body), ... result``: one statement from whole CTE bodies."""
    parts = [f"{name} AS (\n{textwrap.indent(body.strip(), '    ')}\n)" for name, body in ctes]
    return f"\nWITH {', '.join(parts)}\n{result.strip()}\n"


EXECUTION_COLUMNS: Final = (
    "id, status, attempt, current_step, last_checkpoint_step, created_at, updated_at, finished_at, "
    "error, labels, checkpoint_retention"
)
"""The columns of an Execution (``_execution`` in postgres.py reads them by name)."""

_AUDIT_COLUMNS: Final = "execution_id, execution_created_at, seq, kind, step, attempt, at, size_bytes, hash"
"""The columns of an ``events`` row that a checkpoint's audit row moves into."""

# -- the one-write family ----------------------------------------------------------------------

# A write that must find its run (WriteOp.must_exist: the writer started or claimed it before) never
# creates one: a missing row was deleted or renamed since, and the write is refused (SR001 with no
# current attempt). KEY SHARE keeps the row from being deleted or renamed until this commits; it
# does not block the upsert's own update, nor a concurrent writer's.
_UPSERT_EXECUTION: Final = """
INSERT INTO executions AS e (id, status, attempt, current_step, last_checkpoint_step,
                             state, state_codec, state_size, state_hash)
SELECT $1, 'running', coalesce($3::int, 1), $2::bigint, CASE WHEN $8::bool THEN $2::bigint END,
       CASE WHEN $8::bool THEN NULL ELSE $4::bytea END, $5::text, $6::int, $7::bytea
WHERE NOT $10::bool OR EXISTS (SELECT 1 FROM executions x WHERE x.id = $1 FOR KEY SHARE)
ON CONFLICT (id) DO UPDATE SET
    status = strata_status_after_write(e.status),
    attempt = greatest(e.attempt, EXCLUDED.attempt),
    current_step = EXCLUDED.current_step,
    last_checkpoint_step = coalesce(EXCLUDED.last_checkpoint_step, e.last_checkpoint_step),
    state = EXCLUDED.state,
    state_codec = EXCLUDED.state_codec,
    state_size = EXCLUDED.state_size,
    state_hash = EXCLUDED.state_hash,
    state_base_step = NULL,
    updated_at = now()
WHERE strata_admits(e.attempt, $3::int)
RETURNING e.created_at, e.attempt, coalesce(e.checkpoint_retention, $9::int) AS keep
"""
"""CTE ``ex``: the execution row becomes the newest state (NULL there for a history checkpoint)."""

# A step written again replaces its checkpoint in place (a new step is a plain INSERT, cheaper than
# ON CONFLICT). The replaced version is read locked, so concurrent rewriters see each other's
# versions; two writers racing on one *new* step make the loser hit a unique violation, and the
# backend re-runs its statement, which then takes this path.
_REWRITE_CHECKPOINT: Final = """
UPDATE checkpoints c SET seq = nextval('events_seq'), attempt = ex.attempt, created_at = now(),
                         codec = $5::text, size_bytes = $6::int, hash = $7::bytea, state = $4::bytea
FROM ex, (
    SELECT o.seq, o.attempt, o.created_at, o.size_bytes, o.hash FROM checkpoints o
    WHERE $8::bool AND o.execution_id = $1 AND o.execution_created_at = (SELECT created_at FROM ex)
      AND o.step = $2::bigint
    FOR UPDATE
) old
WHERE c.execution_id = $1 AND c.execution_created_at = ex.created_at AND c.step = $2::bigint
RETURNING old.seq, old.attempt, old.created_at, old.size_bytes, old.hash
"""
"""CTE ``rewritten``: the audit of the checkpoint a rewrite replaced."""

_SUPERSEDED_AUDIT: Final = f"""
INSERT INTO events ({_AUDIT_COLUMNS})
SELECT $1, (SELECT created_at FROM ex), seq, 'checkpoint', $2::bigint, attempt, created_at, size_bytes, hash
FROM rewritten
"""
"""CTE ``superseded``: the replaced checkpoint's audit row moves to events."""

_NEW_CHECKPOINT: Final = """
INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt, codec, size_bytes, hash, state)
SELECT $1, ex.created_at, $2::bigint, ex.attempt, $5::text, $6::int, $7::bytea, $4::bytea
FROM ex WHERE $8::bool AND NOT EXISTS (SELECT 1 FROM rewritten)
"""
"""CTE ``cp``: a history write at a step not stored yet."""

_OPTIMISTIC_CHECKPOINT: Final = """
INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt, codec, size_bytes, hash, state)
SELECT $1, ex.created_at, $2::bigint, ex.attempt, $5::text, $6::int, $7::bytea, $4::bytea
FROM ex WHERE $8::bool
"""
"""CTE ``cp`` of WRITE_NEW: the step is assumed new; a unique violation sends the full WRITE."""

# Retention is strata_steps_beyond_retention (0005), state/retention.py's rule in SQL; it scans
# nothing for an execution without a retention.
_PRUNE: Final = """
DELETE FROM checkpoints c
USING ex, strata_steps_beyond_retention(
    $1, ex.created_at, $2::bigint, CASE WHEN $8::bool THEN ex.keep END  -- a save prunes nothing
) b(step)
WHERE c.execution_id = $1 AND c.execution_created_at = ex.created_at AND c.step = b.step
RETURNING c.*
"""
"""CTE ``pruned``: one write's checkpoints beyond the retention."""

_PRUNED_AUDIT: Final = f"""
INSERT INTO events ({_AUDIT_COLUMNS})
SELECT execution_id, execution_created_at, seq, 'checkpoint', step, attempt, created_at, size_bytes, hash
FROM pruned
"""
"""CTE ``pruned_audit``: the audit rows of pruned checkpoints move to events."""

_WRITE_RESULT: Final = """
SELECT keep FROM ex
UNION ALL
SELECT strata_stale_attempt($1, $3::int) WHERE NOT EXISTS (SELECT 1 FROM ex)
"""

_REWRITE_CTES: Final = (
    ("ex", _UPSERT_EXECUTION),
    ("rewritten", _REWRITE_CHECKPOINT),
    ("superseded", _SUPERSEDED_AUDIT),
    ("cp", _NEW_CHECKPOINT),
)
_OPTIMISTIC_CTES: Final = (("ex", _UPSERT_EXECUTION), ("cp", _OPTIMISTIC_CHECKPOINT))
_PRUNE_CTES: Final = (("pruned", _PRUNE), ("pruned_audit", _PRUNED_AUDIT))

WRITE: Final = _with(_REWRITE_CTES, _WRITE_RESULT)
"""Any write, without retention: no prune step at all (it costs ~10% of a write even when idle)."""
WRITE_KEEP: Final = _with(_REWRITE_CTES + _PRUNE_CTES, _WRITE_RESULT)
"""Any write, with retention: also prunes history beyond the kept N."""
WRITE_NEW: Final = _with(_OPTIMISTIC_CTES, _WRITE_RESULT)
"""WRITE for a save or a *new* checkpoint step: no rewrite probe, so about a quarter less server time
per write. A step that exists already raises a unique violation (nothing written); the backend
then sends WRITE. Not for use inside a transaction (the violation would abort it)."""
WRITE_NEW_KEEP: Final = _with(_OPTIMISTIC_CTES + _PRUNE_CTES, _WRITE_RESULT)

# A save stored as a delta (pg_delta.py): $1 id, $2 step, $3 attempt (NULL: not fenced), $4 delta,
# $5 codec, $6 size, $7 sha256 of the whole state, $8 base step, $9 the base's sha256. Changes nothing
# (returns 0) unless the base checkpoint still has that digest; it is share-locked, so a concurrent
# rewrite or prune of it waits for this commit (and then rewrites the execution row too).
SAVE_DELTA: Final = _with(
    (
        (
            "base",
            """
SELECT 1 FROM executions e
JOIN checkpoints c ON c.execution_id = e.id AND c.execution_created_at = e.created_at
WHERE e.id = $1 AND c.step = $8::bigint AND c.hash = $9::bytea
FOR SHARE OF c
""",
        ),
        (
            "ex",
            """
UPDATE executions e SET
    status = strata_status_after_write(e.status),
    attempt = greatest(e.attempt, coalesce($3::int, 1)),
    current_step = $2::bigint,
    state = $4::bytea,
    state_codec = $5::text,
    state_size = $6::int,
    state_hash = $7::bytea,
    state_base_step = $8::bigint,
    updated_at = now()
WHERE e.id = $1 AND strata_admits(e.attempt, $3::int) AND EXISTS (SELECT 1 FROM base)
RETURNING 1
""",
        ),
    ),
    "SELECT count(*) FROM ex",
)

# -- the batch family --------------------------------------------------------------------------

# Many writes in one statement (batch flushes, group commit, transactions): the same effects as
# running WRITE for each, set-based. The caller folds the writes per execution ($1..$8 and $16, one
# row per execution: its last write, and one attempt and must_exist per execution) and lists every
# history write in order ($9..$14); $15 is the manager's default retention. With a retention, each
# execution has at most one history write in the batch, and it prunes as WRITE_KEEP does.
_BATCH_INPUT: Final = """
SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::bytea[], $5::text[], $6::int[], $7::bytea[],
                     $8::bigint[], $16::bool[])
    AS i(id, step, attempt, state, codec, size, hash, hist_step, must_exist)
"""
"""CTE ``i``: one row per execution of the batch."""

_BATCH_UPSERT_EXECUTIONS: Final = """
INSERT INTO executions AS e (id, status, attempt, current_step, last_checkpoint_step,
                             state, state_codec, state_size, state_hash)
SELECT id, 'running', coalesce(attempt, 1), step, hist_step, state, codec, size, hash FROM i
WHERE NOT i.must_exist OR EXISTS (SELECT 1 FROM executions x WHERE x.id = i.id FOR KEY SHARE)
ON CONFLICT (id) DO UPDATE SET
    status = strata_status_after_write(e.status),
    attempt = greatest(e.attempt, EXCLUDED.attempt),
    current_step = EXCLUDED.current_step,
    last_checkpoint_step = coalesce(EXCLUDED.last_checkpoint_step, e.last_checkpoint_step),
    state = EXCLUDED.state,
    state_codec = EXCLUDED.state_codec,
    state_size = EXCLUDED.state_size,
    state_hash = EXCLUDED.state_hash,
    state_base_step = NULL,
    updated_at = now()
WHERE strata_admits(e.attempt, (SELECT i.attempt FROM i WHERE i.id = e.id))
RETURNING e.id, e.created_at, e.attempt, coalesce(e.checkpoint_retention, $15::int) AS keep
"""
"""CTE ``ex``: _UPSERT_EXECUTION for every execution of the batch, its last write's state kept whole
in the row (history checkpoint or not)."""

_BATCH_HISTORY: Final = """
SELECT h.*, ex.created_at, ex.attempt, ex.keep, nextval('events_seq') AS seq
FROM unnest($9::text[], $10::bigint[], $11::bytea[], $12::text[], $13::int[], $14::bytea[])
     WITH ORDINALITY AS h(id, step, state, codec, size, hash, ord)
JOIN ex ON ex.id = h.id
ORDER BY h.ord
"""
"""CTE ``h``: every history write of the batch, in order, with its audit sequence number."""

_BATCH_NEWEST: Final = "SELECT DISTINCT ON (id, step) * FROM h ORDER BY id, step, ord DESC"
"""CTE ``newest``: the checkpoint each (execution, step) of the batch ends with."""

_BATCH_SUPERSEDED: Final = f"""
INSERT INTO events ({_AUDIT_COLUMNS})
SELECT h.id, h.created_at, h.seq, 'checkpoint', h.step, h.attempt, now(), h.size, h.hash
FROM h WHERE NOT EXISTS (SELECT 1 FROM newest n WHERE n.ord = h.ord)
"""
"""CTE ``superseded``: the audit rows of writes a later write of their step in the batch replaces."""

_BATCH_SUPERSEDED_STORED: Final = f"""
INSERT INTO events ({_AUDIT_COLUMNS})
SELECT c.execution_id, c.execution_created_at, c.seq, 'checkpoint', c.step, c.attempt, c.created_at,
       c.size_bytes, c.hash
FROM newest n JOIN checkpoints c
  ON c.execution_id = n.id AND c.execution_created_at = n.created_at AND c.step = n.step
FOR UPDATE OF c  -- the latest version, so concurrent rewriters never copy the same audit row
RETURNING execution_id, step, seq
"""
"""CTE ``superseded_stored``: the audit rows of stored checkpoints whose step the batch writes again."""

# A stored step is replaced only if its audit row was moved above (the version we locked); a step
# another writer created after this statement's snapshot is not, and the result then raises a unique
# violation (strata_step_raced) so the backend re-runs the statement.
_BATCH_CHECKPOINTS: Final = """
INSERT INTO checkpoints AS c (execution_id, execution_created_at, step, attempt,
                              codec, size_bytes, hash, state, seq)
SELECT n.id, n.created_at, n.step, n.attempt, n.codec, n.size, n.hash, n.state, n.seq FROM newest n
ON CONFLICT (execution_id, step, execution_created_at) DO UPDATE SET
    attempt = EXCLUDED.attempt, created_at = now(), codec = EXCLUDED.codec,
    size_bytes = EXCLUDED.size_bytes, hash = EXCLUDED.hash, state = EXCLUDED.state, seq = EXCLUDED.seq
WHERE EXISTS (SELECT 1 FROM superseded_stored o
              WHERE o.execution_id = c.execution_id AND o.step = c.step AND o.seq = c.seq)
RETURNING 1
"""
"""CTE ``cp``: the batch's newest checkpoints, new or replacing stored ones."""

# The backend sends a batch with a retention here only with at most one history write per execution,
# so each prunes as one write does.
_BATCH_PRUNE: Final = """
DELETE FROM checkpoints c
USING newest n, strata_steps_beyond_retention(n.id, n.created_at, n.step, n.keep) b(step)
WHERE c.execution_id = n.id AND c.execution_created_at = n.created_at AND c.step = b.step
RETURNING c.*
"""
"""CTE ``pruned``: the batch's checkpoints beyond the retention."""

_BATCH_RESULT: Final = """
SELECT id FROM ex WHERE keep IS NOT NULL
UNION ALL
SELECT strata_stale_attempt(i.id, i.attempt)::text FROM i
WHERE NOT EXISTS (SELECT 1 FROM ex WHERE ex.id = i.id)
UNION ALL
SELECT strata_step_raced()::text WHERE (SELECT count(*) FROM cp) < (SELECT count(*) FROM newest)
"""
"""The ids of the batch's executions that have a retention; SR001 for a fenced one."""

_BATCH_CTES: Final = (
    ("i", _BATCH_INPUT),
    ("ex", _BATCH_UPSERT_EXECUTIONS),
    ("h", _BATCH_HISTORY),
    ("newest", _BATCH_NEWEST),
    ("superseded", _BATCH_SUPERSEDED),
    ("superseded_stored", _BATCH_SUPERSEDED_STORED),
)

WRITE_BATCH: Final = _with((*_BATCH_CTES, ("cp", _BATCH_CHECKPOINTS)), _BATCH_RESULT)
"""Many writes, no retention."""
WRITE_BATCH_KEEP: Final = _with(
    (
        *_BATCH_CTES,
        ("cp", _BATCH_CHECKPOINTS),
        ("pruned", _BATCH_PRUNE),
        ("pruned_audit", _PRUNED_AUDIT),
    ),
    _BATCH_RESULT,
)
"""Many writes, with retention."""

WRITE_BATCH_NEW: Final = _with(
    (
        ("i", _BATCH_INPUT),
        ("ex", _BATCH_UPSERT_EXECUTIONS),
        (
            "cp",
            """
-- distinct new steps and no retention (the caller checks); a step that exists already raises a
-- unique violation (nothing written) and the backend sends WRITE_BATCH instead
INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt, codec, size_bytes, hash, state)
SELECT h.id, ex.created_at, h.step, ex.attempt, h.codec, h.size, h.hash, h.state
FROM unnest($9::text[], $10::bigint[], $11::bytea[], $12::text[], $13::int[], $14::bytea[])
     WITH ORDINALITY AS h(id, step, state, codec, size, hash, ord)
JOIN ex ON ex.id = h.id
ORDER BY h.ord
""",
        ),
    ),
    """
SELECT id FROM ex WHERE keep IS NOT NULL
UNION ALL
SELECT strata_stale_attempt(i.id, i.attempt)::text FROM i
WHERE NOT EXISTS (SELECT 1 FROM ex WHERE ex.id = i.id)
""",
)
"""WRITE_BATCH for the common case (distinct new steps, no retention), at a fraction of its server time."""

# -- reads -------------------------------------------------------------------------------------

LOAD: Final = """
SELECT step, attempt, state, codec, hash, delta_base, delta_base_codec
FROM current_states WHERE execution_id = $1
"""
"""The current state (the view ``current_states``); a delta comes with its base to apply it to."""

EXECUTIONS: Final = f"SELECT {EXECUTION_COLUMNS} FROM executions"
"""Executions; append WHERE and ORDER BY."""
GET_EXECUTION: Final = f"{EXECUTIONS} WHERE id = $1"

EXISTS: Final = "SELECT attempt FROM executions WHERE id = $1"

# $5 and $6: the worker id and instance of the starting manager (state/worker.py; NULL: none).
START: Final = _with(
    (
        (
            "ex",
            f"""
INSERT INTO executions AS e (id, status, attempt, labels, checkpoint_retention, worker_id, worker_instance)
VALUES ($1, 'running', $2::int, $3::jsonb, $4::int, $5::text, $6::uuid)
ON CONFLICT (id) DO UPDATE SET
    status = 'running',
    attempt = greatest(e.attempt, EXCLUDED.attempt),
    labels = coalesce(EXCLUDED.labels, e.labels),
    checkpoint_retention = coalesce(EXCLUDED.checkpoint_retention, e.checkpoint_retention),
    worker_id = EXCLUDED.worker_id, worker_instance = EXCLUDED.worker_instance,
    finished_at = NULL, error = NULL, updated_at = now()
RETURNING {EXECUTION_COLUMNS}
""",
        ),
        (
            "ev",
            """
INSERT INTO events (execution_id, execution_created_at, kind, step, attempt)
SELECT id, created_at, 'started', current_step, attempt FROM ex
""",
        ),
    ),
    "SELECT * FROM ex",
)

FINISH: Final = _with(
    (
        (
            "ex",
            f"""
UPDATE executions SET status = $2, error = $3, finished_at = now(), updated_at = now()
WHERE id = $1 AND strata_admits(attempt, $4::int)
RETURNING {EXECUTION_COLUMNS}
""",
        ),
        (
            "ev",
            """
INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, detail)
SELECT id, created_at, $2, current_step, attempt,
       CASE WHEN $3::text IS NULL THEN NULL ELSE jsonb_build_object('error', $3::text) END
FROM ex
""",
        ),
    ),
    "SELECT * FROM ex",
)

HISTORY: Final = """
SELECT step, attempt, created_at, codec, size_bytes, hash, state FROM checkpoints
WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM executions WHERE id = $1)
  AND step > $2
ORDER BY step LIMIT $3
"""

CHECKPOINT_AT: Final = """
SELECT c.step, c.attempt, c.created_at, c.codec, c.size_bytes, c.hash, c.state
FROM executions e JOIN checkpoints c ON c.execution_id = e.id AND c.execution_created_at = e.created_at
WHERE e.id = $1 AND c.step = coalesce($2::bigint, e.last_checkpoint_step)
"""
"""Checkpoint $2 of execution $1, or its last one when $2 is NULL."""

CHECKPOINTS_NEWEST_FIRST: Final = """
SELECT step, attempt, created_at, codec, size_bytes, hash, state FROM checkpoints
WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM executions WHERE id = $1)
  AND step <= $2
ORDER BY step DESC LIMIT $3
"""
"""Checkpoints at step $2 and below, newest first: where a corrupt current state falls back to."""

# The rewind applies only while the corrupt state at $2 is still current: a writer that moved the run
# on since has replaced it, and nothing changes (no row). Attempt and status stay as they are.
CORRUPT_FALLBACK: Final = _with(
    (
        (
            "ex",
            """
UPDATE executions e SET current_step = c.step, last_checkpoint_step = c.step, state = NULL,
    state_codec = c.codec, state_size = c.size_bytes, state_hash = c.hash, state_base_step = NULL,
    updated_at = now()
FROM checkpoints c
WHERE e.id = $1 AND e.current_step = $2::bigint
  AND c.execution_id = e.id AND c.execution_created_at = e.created_at AND c.step = $3::bigint
RETURNING e.id, e.created_at, e.attempt
""",
        ),
        (
            "ev",
            """
INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, detail)
SELECT id, created_at, 'corrupt_fallback', $3::bigint, attempt,
       jsonb_build_object('bad_step', $2::bigint, 'used_step', $3::bigint)
FROM ex
""",
        ),
    ),
    "SELECT id FROM ex",
)
"""A fallback from the corrupt state at step $2 to checkpoint $3: that checkpoint becomes the current
state (history is kept), with a ``corrupt_fallback`` audit event; the id, or no row."""

AUDIT: Final = """
SELECT seq, kind, step, attempt, at, size_bytes, hash, detail FROM events
WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM executions WHERE id = $1)
  AND seq > $2
UNION ALL
SELECT seq, 'checkpoint', step, attempt, created_at, size_bytes, hash, NULL FROM checkpoints
WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM executions WHERE id = $1)
  AND seq > $2
ORDER BY seq LIMIT $3
"""
"""The audit trail: events, and the live checkpoint rows that are their own audit rows."""

# $1 idle seconds, $2 limit, $3 the highest attempt, $4 the error of a run failed for being at it
# (attempt + 1 would overflow the column; the CASE never evaluates it for such a run), $5 and $6 the
# claiming worker's id and instance (NULL: none), $7 the instances of other workers still live
# (state/worker.py). A run of the claimer's own id but an older instance is its previous incarnation's,
# dead: claimed at once. Any other run only when idle for $1 and not run by a live instance.
CLAIM: Final = _with(
    (
        (
            "c",
            """
SELECT id, attempt < $3::int AS renewable FROM executions
WHERE status IN ('running', 'recovering')
  AND (worker_id = $5::text AND worker_instance <> $6::uuid
       OR updated_at <= now() - make_interval(secs => $1)
          AND NOT coalesce(worker_instance = ANY($7::uuid[]), false))
ORDER BY updated_at
LIMIT $2
FOR UPDATE SKIP LOCKED
""",
        ),
        (
            "ex",
            f"""
UPDATE executions e SET
    status = CASE WHEN c.renewable THEN 'recovering' ELSE 'failed' END,
    attempt = CASE WHEN c.renewable THEN e.attempt + 1 ELSE e.attempt END,
    error = CASE WHEN c.renewable THEN e.error ELSE $4::text END,
    finished_at = CASE WHEN c.renewable THEN e.finished_at ELSE now() END,
    worker_id = $5::text, worker_instance = $6::uuid,
    updated_at = now()
FROM c WHERE e.id = c.id
RETURNING {", ".join(f"e.{column}" for column in EXECUTION_COLUMNS.split(", "))}
""",
        ),
        (
            "ev",
            """
INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, detail)
SELECT id, created_at, CASE WHEN status = 'failed' THEN 'failed' ELSE 'recovering' END,
       CASE WHEN status = 'failed' THEN current_step ELSE last_checkpoint_step END, attempt,
       CASE WHEN status = 'failed' THEN jsonb_build_object('error', error) END
FROM ex
""",
        ),
    ),
    "SELECT * FROM ex ORDER BY updated_at, id",
)
"""Claim stalled executions for a new attempt (or fail those at the highest attempt)."""

# -- worker leases (state/worker.py) -----------------------------------------------------------

WORKER_LEASE: Final = """
SELECT instance, host, pid, renewed_at + make_interval(secs => lease_seconds) > now() AS unexpired
FROM workers WHERE worker_id = $1
"""
"""Who holds worker id $1."""

# $1 id, $2 instance, $3 host, $4 pid, $5 lease seconds, $6 the instance it takes over (NULL: none).
# No row returned: another instance holds the id (it took it after WORKER_LEASE was read).
TAKE_WORKER_LEASE: Final = """
INSERT INTO workers AS w (worker_id, instance, host, pid, lease_seconds)
VALUES ($1, $2::uuid, $3, $4::int, $5::float8)
ON CONFLICT (worker_id) DO UPDATE SET
    instance = EXCLUDED.instance, host = EXCLUDED.host, pid = EXCLUDED.pid,
    lease_seconds = EXCLUDED.lease_seconds, renewed_at = now()
WHERE w.instance IN ($2::uuid, $6::uuid)
RETURNING instance
"""
"""Take (or renew) the lease of worker id $1 for instance $2."""

RELEASE_WORKER_LEASE: Final = "DELETE FROM workers WHERE worker_id = $1 AND instance = $2::uuid"

UNEXPIRED_LEASES: Final = """
SELECT instance, host, pid FROM workers
WHERE renewed_at + make_interval(secs => lease_seconds) > now() AND instance IS DISTINCT FROM $1::uuid
"""
"""Other instances whose lease has not expired (the claimer tells which of them are live)."""

# -- snapshots ---------------------------------------------------------------------------------

SNAPSHOT_COLUMNS: Final = "name, execution_id, step, size_bytes, created_at"


def _snapshot_upsert(source: str) -> str:
    """Store (or replace) snapshot $2 of execution $1 from ``source`` (a VALUES or SELECT giving the
    snapshot's columns), record a ``snapshot`` audit event, and return the snapshot."""
    upsert = f"""
INSERT INTO snapshots AS s (execution_id, name, step, attempt, codec, size_bytes, hash, state)
{source.strip()}
ON CONFLICT (execution_id, name) DO UPDATE SET
    step = EXCLUDED.step, attempt = EXCLUDED.attempt, created_at = now(), codec = EXCLUDED.codec,
    size_bytes = EXCLUDED.size_bytes, hash = EXCLUDED.hash, state = EXCLUDED.state
RETURNING {SNAPSHOT_COLUMNS}, hash
"""
    event = """
INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, size_bytes, hash, detail)
SELECT s.execution_id, e.created_at, 'snapshot', s.step, e.attempt, s.size_bytes, s.hash,
       jsonb_build_object('snapshot', s.name)
FROM s JOIN executions e ON e.id = s.execution_id
"""
    return _with((("s", upsert), ("ev", event)), f"SELECT {SNAPSHOT_COLUMNS} FROM s")


SNAPSHOT_FROM_CURRENT: Final = _snapshot_upsert(
    """
SELECT execution_id, $2, step, attempt, codec, size_bytes, hash, state FROM current_states
WHERE execution_id = $1 AND state IS NOT NULL AND delta_base_step IS NULL
"""
)
"""A snapshot of the current state; no row for a delta (the backend resolves it: SNAPSHOT_FROM_VALUES)."""

SNAPSHOT_FROM_VALUES: Final = _snapshot_upsert("VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
"""A snapshot of a current state the backend resolved (a delta row): $3 step .. $8 state."""

SNAPSHOT_FROM_STEP: Final = _snapshot_upsert(
    """
SELECT c.execution_id, $2, c.step, c.attempt, c.codec, c.size_bytes, c.hash, c.state
FROM executions e JOIN checkpoints c ON c.execution_id = e.id AND c.execution_created_at = e.created_at
WHERE e.id = $1 AND c.step = $3
"""
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
    DELETE FROM checkpoints
    WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM executions WHERE id = $1)
      AND step > $2
    RETURNING *
)
INSERT INTO events ({_AUDIT_COLUMNS})
SELECT execution_id, execution_created_at, seq, 'checkpoint', step, attempt, created_at, size_bytes, hash
FROM dropped
"""
"""A restore's rewind: checkpoints after step $2 go, their audit rows move to events."""

RESTORE_EVENT: Final = """
INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, size_bytes, hash, detail)
SELECT id, created_at, 'restore', $2, attempt, $3, $4, jsonb_build_object('snapshot', $5::text)
FROM executions WHERE id = $1
"""

# -- executions as a whole ---------------------------------------------------------------------

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
    RETURNING id, created_at, attempt, current_step
), c AS (
    UPDATE checkpoints SET execution_id = $2
    WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM ex)
), v AS (
    UPDATE events SET execution_id = $2
    WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM ex)
), ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, detail)
    SELECT id, created_at, 'renamed', current_step, attempt, jsonb_build_object('from', $1::text) FROM ex
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

# Checkpoints ever made: one audit row each, a live checkpoint row or a moved one (kind checkpoint).
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

# -- forks -------------------------------------------------------------------------------------


def _fork(source: str, detail: str) -> str:
    """Start execution $2 (attempt $4, labels $5, retention $6, worker id $7 and instance $8, NULL: none)
    from ``source`` (a SELECT of one state: step, codec, size_bytes, hash, state): the state becomes its
    current state and its first history checkpoint, after a ``forked`` audit event whose detail is
    ``detail``. No row when $2 exists already or ``source`` finds nothing; the source is only read."""
    execution = f"""
INSERT INTO executions (id, status, attempt, current_step, last_checkpoint_step, labels, checkpoint_retention,
                        state_codec, state_size, state_hash, worker_id, worker_instance)
SELECT $2, 'running', $4::int, step, step, $5::jsonb, $6::int, codec, size_bytes, hash, $7::text, $8::uuid
FROM source
ON CONFLICT (id) DO NOTHING
RETURNING {EXECUTION_COLUMNS}
"""
    event = f"""
INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, size_bytes, hash, detail)
SELECT ex.id, ex.created_at, 'forked', source.step, ex.attempt, source.size_bytes, source.hash,
       {detail.strip()}
FROM ex, source
RETURNING execution_id, execution_created_at, step, attempt
"""
    # reads ev, so the checkpoint (its own audit row) takes its seq after the forked event's
    checkpoint = """
INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt, codec, size_bytes, hash, state)
SELECT ev.execution_id, ev.execution_created_at, ev.step, ev.attempt, source.codec, source.size_bytes,
       source.hash, source.state
FROM ev, source
"""
    return _with(
        (("source", source), ("ex", execution), ("ev", event), ("cp", checkpoint)), "SELECT * FROM ex"
    )


FORK_FROM_STEP: Final = _fork(
    """
SELECT c.step, c.codec, c.size_bytes, c.hash, c.state
FROM executions e JOIN checkpoints c ON c.execution_id = e.id AND c.execution_created_at = e.created_at
WHERE e.id = $1 AND c.step = coalesce($3::bigint, e.last_checkpoint_step)
""",
    "jsonb_build_object('execution', $1::text, 'step', source.step)",
)
"""Fork execution $1 at its history checkpoint $3 (NULL: its newest) into the new execution $2."""

FORK_FROM_SNAPSHOT: Final = _fork(
    "SELECT step, codec, size_bytes, hash, state FROM snapshots WHERE execution_id = $1 AND name = $3",
    "jsonb_build_object('execution', $1::text, 'step', source.step, 'snapshot', $3::text)",
)
"""Fork snapshot $3 of execution $1 (its stored copy: the execution and its checkpoint need not exist any
more) into the new execution $2."""
