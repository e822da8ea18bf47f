WITH ex AS (
    INSERT INTO executions AS e (id, status, attempt, labels, checkpoint_retention, worker_id, worker_instance)
    VALUES ($1, 'running', $2::int, $3::jsonb, $4::int, $5::text, $6::uuid)
    ON CONFLICT (id) DO UPDATE SET
        status = 'running',
        attempt = greatest(e.attempt, EXCLUDED.attempt),
        labels = coalesce(EXCLUDED.labels, e.labels),
        checkpoint_retention = coalesce(EXCLUDED.checkpoint_retention, e.checkpoint_retention),
        worker_id = EXCLUDED.worker_id, worker_instance = EXCLUDED.worker_instance,
        finished_at = NULL, error = NULL, updated_at = now()
    RETURNING id, status, attempt, current_step, last_checkpoint_step, created_at, updated_at, finished_at, error, labels, checkpoint_retention
), ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt)
    SELECT id, created_at, 'started', current_step, attempt FROM ex
)
SELECT * FROM ex
