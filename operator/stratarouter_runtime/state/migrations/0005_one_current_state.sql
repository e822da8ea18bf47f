-- The current state of an execution has one definition, the view current_states below, and every
-- reader uses it. Every write of a state (history checkpoints too) updates the executions row, so
-- the row alone says where its state is:
--   * executions.state, whole (state_base_step NULL) or a zstd delta against the checkpoint at
--     state_base_step (backends/pg_delta.py; the backend applies it);
--   * NULL after a history checkpoint: the checkpoint row at current_step (stored once, not twice).
-- The FAST checkpoints of 0004 (a new highest step inserted without touching the row, folded in by
-- every reader) are folded into their rows here, once, and their marks dropped. Measured when they
-- went: the row update costs a checkpoint 116 more WAL bytes (1,471 instead of 1,355), a fifth less
-- statement rate with fsync off and about a tenth less with fsync on (medians of 40 alternating
-- slices on a loaded 2-core machine; bench-sdk's ratios moved within their noise). In exchange no
-- reader probes the newest checkpoint of every execution it returns.

UPDATE executions e SET
    current_step = head.step,
    last_checkpoint_step = head.step,
    state = NULL,
    state_codec = head.codec,
    state_size = head.size_bytes,
    state_hash = head.hash,
    state_base_step = NULL,
    updated_at = greatest(e.updated_at, head.created_at)
FROM (
    SELECT DISTINCT ON (execution_id, execution_created_at)
           execution_id, execution_created_at, step, codec, size_bytes, hash, created_at, fast, seq
    FROM checkpoints
    ORDER BY execution_id, execution_created_at, step DESC
) head
WHERE head.execution_id = e.id AND head.execution_created_at = e.created_at
  AND head.fast AND head.seq > e.state_seq;

ALTER TABLE checkpoints DROP COLUMN fast;
ALTER TABLE executions DROP COLUMN state_seq;

CREATE VIEW current_states AS
SELECT e.id AS execution_id,
       e.current_step AS step,
       e.attempt,
       coalesce(e.state, c.state) AS state,
       CASE WHEN e.state IS NULL THEN c.codec ELSE e.state_codec END AS codec,
       e.state_size AS size_bytes,
       e.state_hash AS hash,
       e.state_base_step AS delta_base_step,
       CASE WHEN e.state_base_step IS NOT NULL THEN c.state END AS delta_base,
       CASE WHEN e.state_base_step IS NOT NULL THEN c.codec END AS delta_base_codec
FROM executions e
LEFT JOIN checkpoints c
  ON c.execution_id = e.id AND c.execution_created_at = e.created_at
 AND c.step = CASE WHEN e.state IS NULL THEN e.current_step ELSE e.state_base_step END;

-- The rules of backends/base.py (documented there), in SQL for every statement that applies them.
-- Fencing, base.admits: a call by attempt `writer` is admitted unless the stored attempt is newer.
CREATE FUNCTION strata_admits(stored integer, writer integer) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT stored <= coalesce(writer, stored) $$;

-- A write's status change, base.status_after_write: pending and recovering become running.
CREATE FUNCTION strata_status_after_write(status text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN status IN ('pending', 'recovering') THEN 'running' ELSE status END $$;

-- Retention, state/retention.py's steps_to_prune: after writing checkpoint `written` of an execution
-- that keeps `keep`, the steps to prune are its other checkpoints but the keep - 1 highest; a NULL
-- keep keeps all. STABLE: it reads the calling statement's snapshot (which need not see `written`).
CREATE FUNCTION strata_steps_beyond_retention(
    execution_id text, execution_created_at timestamptz, written bigint, keep integer
) RETURNS SETOF bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT c.step FROM checkpoints c
    WHERE $4 IS NOT NULL AND c.execution_id = $1 AND c.execution_created_at = $2 AND c.step <> $3
    ORDER BY c.step DESC
    OFFSET $4 - 1
$$;
