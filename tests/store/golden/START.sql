WITH ex AS (
    INSERT INTO executions AS e (id, status, attempt, labels, checkpoint_retention)
    VALUES ($1, 'running', $2::int, $3::jsonb, $4::int)
    ON CONFLICT (id) DO UPDATE SET
        status = 'running',
        attempt = greatest(e.attempt, EXCLUDED.attempt),
        labels = coalesce(EXCLUDED.labels, e.labels),
        checkpoint_retention = coalesce(EXCLUDED.checkpoint_retention, e.checkpoint_retention),
        finished_at = NULL, error = NULL, updated_at = now()
    RETURNING id, status, attempt, current_step, last_checkpoint_step, created_at, updated_at, finished_at, error, labels, checkpoint_retention
), ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt)
    SELECT id, created_at, 'started', current_step, attempt FROM ex
)
SELECT * FROM ex
