WITH ex AS (DELETE FROM executions WHERE id = $1 RETURNING id, created_at),
c AS (DELETE FROM checkpoints WHERE execution_id = $1),
v AS (DELETE FROM events WHERE execution_id = $1),
s AS (DELETE FROM snapshots WHERE execution_id = $1 AND NOT $2::bool)
SELECT count(*) FROM ex
