SELECT c.step, c.attempt, c.created_at, c.codec, c.size_bytes, c.hash, c.state
FROM executions e JOIN checkpoints c ON c.execution_id = e.id AND c.execution_created_at = e.created_at
WHERE e.id = $1 AND c.step = coalesce($2::bigint, e.last_checkpoint_step)
