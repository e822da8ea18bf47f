WITH dropped AS (
    DELETE FROM checkpoints
    WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM executions WHERE id = $1)
      AND step > $2
    RETURNING *
)
INSERT INTO events (execution_id, execution_created_at, seq, kind, step, attempt, at, size_bytes, hash)
SELECT execution_id, execution_created_at, seq, 'checkpoint', step, attempt, created_at, size_bytes, hash
FROM dropped
