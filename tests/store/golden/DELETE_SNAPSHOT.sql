WITH s AS (DELETE FROM snapshots WHERE execution_id = $1 AND name = $2 RETURNING execution_id, step, name),
ev AS (
    INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, detail)
    SELECT s.execution_id, e.created_at, 'snapshot_deleted', s.step, e.attempt,
           jsonb_build_object('snapshot', s.name)
    FROM s JOIN executions e ON e.id = s.execution_id
)
SELECT count(*) FROM s
