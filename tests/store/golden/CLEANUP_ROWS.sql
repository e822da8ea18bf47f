WITH ex AS (
    DELETE FROM executions WHERE status = ANY($1::text[]) AND finished_at < $2 RETURNING id, created_at
), c AS (
    DELETE FROM checkpoints c USING ex WHERE c.execution_id = ex.id AND c.execution_created_at = ex.created_at
), v AS (
    DELETE FROM events v USING ex WHERE v.execution_id = ex.id AND v.execution_created_at = ex.created_at
), s AS (
    DELETE FROM snapshots s USING ex WHERE s.execution_id = ex.id
)
SELECT count(*) FROM ex
