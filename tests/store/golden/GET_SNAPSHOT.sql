SELECT name, execution_id, step, size_bytes, created_at FROM snapshots WHERE execution_id = $1 AND name = $2
