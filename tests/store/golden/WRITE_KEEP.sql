WITH ex AS (
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
), rewritten AS (
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
), superseded AS (
    INSERT INTO events (execution_id, execution_created_at, seq, kind, step, attempt, at, size_bytes, hash)
    SELECT $1, (SELECT created_at FROM ex), seq, 'checkpoint', $2::bigint, attempt, created_at, size_bytes, hash
    FROM rewritten
), cp AS (
    INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt, codec, size_bytes, hash, state)
    SELECT $1, ex.created_at, $2::bigint, ex.attempt, $5::text, $6::int, $7::bytea, $4::bytea
    FROM ex WHERE $8::bool AND NOT EXISTS (SELECT 1 FROM rewritten)
), pruned AS (
    DELETE FROM checkpoints c
    USING ex, strata_steps_beyond_retention(
        $1, ex.created_at, $2::bigint, CASE WHEN $8::bool THEN ex.keep END  -- a save prunes nothing
    ) b(step)
    WHERE c.execution_id = $1 AND c.execution_created_at = ex.created_at AND c.step = b.step
    RETURNING c.*
), pruned_audit AS (
    INSERT INTO events (execution_id, execution_created_at, seq, kind, step, attempt, at, size_bytes, hash)
    SELECT execution_id, execution_created_at, seq, 'checkpoint', step, attempt, created_at, size_bytes, hash
    FROM pruned
)
SELECT keep FROM ex
UNION ALL
SELECT strata_stale_attempt($1, $3::int) WHERE NOT EXISTS (SELECT 1 FROM ex)
