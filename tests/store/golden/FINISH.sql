WITH ex AS (
    UPDATE executions SET status = $2, error = $3, finished_at = now(), updated_at = now()
    WHERE id = $1 AND strata_admits(attempt, $4::int)
    RETURNING id, status, attempt, current_step, last_checkpoint_step, created_at, updated_at, finished_at, error, labels, checkpoint_retention
), ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, detail)
    SELECT id, created_at, $2, current_step, attempt,
           CASE WHEN $3::text IS NULL THEN NULL ELSE jsonb_build_object('error', $3::text) END
    FROM ex
)
SELECT * FROM ex
