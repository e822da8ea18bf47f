WITH ex AS (
    UPDATE executions SET id = $2, updated_at = now() WHERE id = $1
    RETURNING id, created_at, attempt, current_step
), c AS (
    UPDATE checkpoints SET execution_id = $2
    WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM ex)
), v AS (
    UPDATE events SET execution_id = $2
    WHERE execution_id = $1 AND execution_created_at = (SELECT created_at FROM ex)
), ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, detail)
    SELECT id, created_at, 'renamed', current_step, attempt, jsonb_build_object('from', $1::text) FROM ex
)
SELECT count(*) FROM ex
