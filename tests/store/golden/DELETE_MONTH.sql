WITH ex AS (DELETE FROM executions WHERE created_at >= $1 AND created_at < $2 RETURNING id),
s AS (DELETE FROM snapshots s USING ex WHERE s.execution_id = ex.id)
SELECT count(*) FROM ex
