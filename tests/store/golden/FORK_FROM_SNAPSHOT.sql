WITH source AS (
    SELECT step, codec, size_bytes, hash, state FROM snapshots WHERE execution_id = $1 AND name = $3
), ex AS (
    INSERT INTO executions (id, status, attempt, current_step, last_checkpoint_step, labels, checkpoint_retention,
                            state_codec, state_size, state_hash, worker_id, worker_instance)
    SELECT $2, 'running', $4::int, step, step, $5::jsonb, $6::int, codec, size_bytes, hash, $7::text, $8::uuid
    FROM source
    ON CONFLICT (id) DO NOTHING
    RETURNING id, status, attempt, current_step, last_checkpoint_step, created_at, updated_at, finished_at, error, labels, checkpoint_retention
), ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, size_bytes, hash, detail)
    SELECT ex.id, ex.created_at, 'forked', source.step, ex.attempt, source.size_bytes, source.hash,
           jsonb_build_object('execution', $1::text, 'step', source.step, 'snapshot', $3::text)
    FROM ex, source
    RETURNING execution_id, execution_created_at, step, attempt
), cp AS (
    INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt, codec, size_bytes, hash, state)
    SELECT ev.execution_id, ev.execution_created_at, ev.step, ev.attempt, source.codec, source.size_bytes,
           source.hash, source.state
    FROM ev, source
)
SELECT * FROM ex
