WITH s AS (
    INSERT INTO snapshots AS s (execution_id, name, step, attempt, codec, size_bytes, hash, state)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (execution_id, name) DO UPDATE SET
        step = EXCLUDED.step, attempt = EXCLUDED.attempt, created_at = now(), codec = EXCLUDED.codec,
        size_bytes = EXCLUDED.size_bytes, hash = EXCLUDED.hash, state = EXCLUDED.state
    RETURNING name, execution_id, step, size_bytes, created_at, hash
), ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, size_bytes, hash, detail)
    SELECT s.execution_id, e.created_at, 'snapshot', s.step, e.attempt, s.size_bytes, s.hash,
           jsonb_build_object('snapshot', s.name)
    FROM s JOIN executions e ON e.id = s.execution_id
)
SELECT name, execution_id, step, size_bytes, created_at FROM s
