WITH ex AS (
    UPDATE executions e SET current_step = c.step, last_checkpoint_step = c.step, state = NULL,
        state_codec = c.codec, state_size = c.size_bytes, state_hash = c.hash, state_base_step = NULL,
        updated_at = now()
    FROM checkpoints c
    WHERE e.id = $1 AND e.current_step = $2::bigint
      AND c.execution_id = e.id AND c.execution_created_at = e.created_at AND c.step = $3::bigint
    RETURNING e.id, e.created_at, e.attempt
), ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, detail)
    SELECT id, created_at, 'corrupt_fallback', $3::bigint, attempt,
           jsonb_build_object('bad_step', $2::bigint, 'used_step', $3::bigint)
    FROM ex
)
SELECT id FROM ex
