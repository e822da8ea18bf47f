SELECT step, attempt, created_at, codec, size_bytes, hash, state FROM checkpoints
WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM executions WHERE id = $1)
  AND step > $2
ORDER BY step LIMIT $3
