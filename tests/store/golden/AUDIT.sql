SELECT seq, kind, step, attempt, at, size_bytes, hash, detail FROM events
WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM executions WHERE id = $1)
  AND seq > $2
UNION ALL
SELECT seq, 'checkpoint', step, attempt, created_at, size_bytes, hash, NULL FROM checkpoints
WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM executions WHERE id = $1)
  AND seq > $2
ORDER BY seq LIMIT $3
