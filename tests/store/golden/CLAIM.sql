WITH c AS (
    SELECT id, attempt < $3::int AS renewable FROM executions
    WHERE status IN ('running', 'recovering')
      AND (worker_id = $5::text AND worker_instance <> $6::uuid
           OR updated_at <= now() - make_interval(secs => $1)
              AND NOT coalesce(worker_instance = ANY($7::uuid[]), false))
    ORDER BY updated_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), ex AS (
    UPDATE executions e SET
        status = CASE WHEN c.renewable THEN 'recovering' ELSE 'failed' END,
        attempt = CASE WHEN c.renewable THEN e.attempt + 1 ELSE e.attempt END,
        error = CASE WHEN c.renewable THEN e.error ELSE $4::text END,
        finished_at = CASE WHEN c.renewable THEN e.finished_at ELSE now() END,
        worker_id = $5::text, worker_instance = $6::uuid,
        updated_at = now()
    FROM c WHERE e.id = c.id
    RETURNING e.id, e.status, e.attempt, e.current_step, e.last_checkpoint_step, e.created_at, e.updated_at, e.finished_at, e.error, e.labels, e.checkpoint_retention
), ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, detail)
    SELECT id, created_at, CASE WHEN status = 'failed' THEN 'failed' ELSE 'recovering' END,
           CASE WHEN status = 'failed' THEN current_step ELSE last_checkpoint_step END, attempt,
           CASE WHEN status = 'failed' THEN jsonb_build_object('error', error) END
    FROM ex
)
SELECT * FROM ex ORDER BY updated_at, id
