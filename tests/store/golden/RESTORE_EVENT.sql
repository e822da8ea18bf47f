INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, size_bytes, hash, detail)
SELECT id, created_at, 'restore', $2, attempt, $3, $4, jsonb_build_object('snapshot', $5::text)
FROM executions WHERE id = $1
